//! A tokio-xmpp client for tests: tokio-xmpp's own `StanzaStream` (SCRAM, binding, XEP-0198,
//! parsing) driven from the test's task, plus the waiting helpers the tests share.
//!
//! Why not `tokio_xmpp::Client`: in tokio-xmpp 6.0.0 its receive half returns `Pending` without
//! registering a waker when the send half holds their shared lock (`StanzaReceiver::poll_next`
//! uses `try_lock`). A stanza that arrives while the test is sending can then sit unread for
//! good, which made these tests fail about one run in thirty on a loaded machine. Owning the
//! `StanzaStream` in one task has no such lock.

#![allow(dead_code)]

use futures::StreamExt;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;
use tokio_xmpp::connect::{DnsConfig, TcpServerConnector};
use tokio_xmpp::jid::Jid;
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::stanzastream::{Event, StanzaStage, StanzaState, StanzaStream, StreamEvent};
use tokio_xmpp::xmlstream::Timeouts;
use tokio_xmpp::Stanza;

/// How long any one expected stanza may take.
pub const WAIT: Duration = Duration::from_secs(15);

/// Open a stream for `jid` to the server at `c2s` without waiting for it to come up.
pub fn open(c2s: SocketAddr, jid: &str, password: &str) -> StanzaStream {
    StanzaStream::new_c2s(
        TcpServerConnector::from(DnsConfig::addr(&c2s.to_string())),
        Jid::from_str(jid).expect("test JID"),
        password.to_string(),
        Timeouts::tight(),
        16,
    )
}

/// Whether the stream got online (bound a resource) within `within`.
pub async fn comes_online(stream: &mut StanzaStream, within: Duration) -> bool {
    tokio::time::timeout(within, async {
        while let Some(event) = stream.next().await {
            if let Event::Stream(StreamEvent::Reset { .. }) = event {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false)
}

pub struct XmppClient {
    stream: StanzaStream,
    /// Stanzas read while waiting for something else, in arrival order.
    held: VecDeque<Stanza>,
    /// The JID the server bound.
    pub jid: Jid,
    next_id: u64,
}

impl XmppClient {
    /// Log in and wait until the server has bound a resource.
    pub async fn login(c2s: SocketAddr, jid: &str, password: &str) -> XmppClient {
        let mut stream = open(c2s, jid, password);
        let bound = tokio::time::timeout(WAIT, async {
            loop {
                match stream.next().await {
                    Some(Event::Stream(StreamEvent::Reset { bound_jid, .. })) => return bound_jid,
                    Some(_) => {}
                    None => panic!("{jid}: stream ended before getting online"),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{jid} did not get online"));
        XmppClient {
            stream,
            held: VecDeque::new(),
            jid: bound,
            next_id: 0,
        }
    }

    /// Send a stanza and wait until it is written to the connection.
    pub async fn send(&mut self, stanza: impl Into<Stanza>) {
        let mut token = self.stream.send(Box::new(stanza.into())).await;
        match tokio::time::timeout(WAIT, token.wait_for(StanzaStage::Sent)).await {
            Ok(Some(StanzaState::Sent { .. } | StanzaState::Acked { .. })) => {}
            other => panic!("stanza not sent: {other:?}"),
        }
    }

    /// The next stanza matching `wanted`; others are kept for later calls.
    pub async fn expect<T>(
        &mut self,
        what: &str,
        mut wanted: impl FnMut(&Stanza) -> Option<T>,
    ) -> T {
        for index in 0..self.held.len() {
            if let Some(found) = wanted(&self.held[index]) {
                self.held.remove(index);
                return found;
            }
        }
        tokio::time::timeout(WAIT, async {
            loop {
                match self.stream.next().await {
                    Some(Event::Stanza(stanza)) => match wanted(&stanza) {
                        Some(found) => return found,
                        None => self.held.push_back(stanza),
                    },
                    Some(Event::Stream(StreamEvent::Reset { .. })) => {
                        panic!("stream reset (state lost) while waiting for {what}")
                    }
                    Some(Event::Stream(_)) => {}
                    None => panic!("stream ended while waiting for {what}"),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
    }

    /// Send an IQ get and wait for its result or error.
    pub async fn get(&mut self, to: &str, payload: Element) -> Iq {
        self.request(to, payload, false).await
    }

    /// Send an IQ set and wait for its result or error.
    pub async fn set(&mut self, to: &str, payload: Element) -> Iq {
        self.request(to, payload, true).await
    }

    async fn request(&mut self, to: &str, payload: Element, set: bool) -> Iq {
        self.next_id += 1;
        let id = format!("test-iq-{}", self.next_id);
        let to = Some(Jid::from_str(to).expect("test JID"));
        let iq = if set {
            Iq::Set {
                from: None,
                to,
                id: id.clone(),
                payload,
            }
        } else {
            Iq::Get {
                from: None,
                to,
                id: id.clone(),
                payload,
            }
        };
        self.send(iq).await;
        self.expect(&format!("the answer to IQ {id}"), |stanza| match stanza {
            Stanza::Iq(iq @ (Iq::Result { id: got, .. } | Iq::Error { id: got, .. }))
                if *got == id =>
            {
                Some(iq.clone())
            }
            _ => None,
        })
        .await
    }
}
