//! Federation: streams with other XMPP servers (RFC 6120 server-to-server), authenticated by
//! certificate (SASL EXTERNAL, XEP-0178) or Server Dialback (XEP-0220), found through DNS SRV
//! (XEP-0368 for direct TLS). Fills the core's [`RemoteRouter`] slot: stanzas for other domains
//! come here and leave on one outgoing stream per (local domain, remote domain); stanzas from
//! peers arrive on incoming streams and are routed like any other once their `from` is checked.
//!
//! Files: `stream.rs` (XML over TCP/TLS), `dns.rs` (where a domain's server is), `cert.rs`
//! (certificate checks and TLS settings), `dialback.rs` (keys and verification), `outgoing.rs`
//! (connecting, authenticating, the per-domain queue), `multiplex.rs` (other local domains on
//! an authenticated outgoing stream, XEP-0220 §8), `incoming.rs` (the listener).

pub mod cert;
pub mod dialback;
pub mod dns;
pub mod incoming;
pub mod multiplex;
pub mod outgoing;
pub mod stream;

use crate::config::{S2sConfig, S2sPolicy};
use crate::remote::RemoteRouter;
use crate::server::Server;
use crate::stanza::{self, StanzaCondition, StanzaError};
use bytes::Bytes;
use dashmap::DashMap;
use minidom::Element;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

pub use incoming::accept_loop;

/// A stanza waiting for its outgoing stream.
pub enum Queued {
    Element(Element),
    /// Serialised in `jabber:client` (a room's fan-out).
    Serialized(Bytes),
}

impl Queued {
    fn into_element(self) -> Option<Element> {
        match self {
            Queued::Element(element) => Some(element),
            Queued::Serialized(bytes) => {
                salon_xml::parse_stored(std::str::from_utf8(&bytes).ok()?, stanza::ns::CLIENT)
            }
        }
    }
}

/// The outgoing stream of one (local, remote) pair, as senders see it.
#[derive(Clone)]
struct Link {
    id: u64,
    queue: tokio::sync::mpsc::Sender<Queued>,
}

/// The federation module's state, in the server's extension slots.
pub struct S2s {
    server: Weak<Server>,
    pub config: S2sConfig,
    pub certificates: cert::Certificates,
    /// The secret dialback keys are made from (XEP-0220 §4), new at every start.
    secret: [u8; 32],
    links: DashMap<(String, String), Link>,
    /// Per remote domain, an authenticated outgoing stream that carries other local domains
    /// too (XEP-0220 §8 multiplexing); one at a time.
    pub(crate) carriers: DashMap<String, multiplex::Carrier>,
    /// For SRV lookups (`dns.rs`).
    resolver: Option<hickory_resolver::TokioResolver>,
    next_link: AtomicU64,
    /// Incoming streams now, in all and per authenticated remote domain.
    pub(crate) incoming: std::sync::atomic::AtomicUsize,
    pub(crate) incoming_per_domain: DashMap<String, usize>,
    /// Stanzas accepted per remote domain in the last second.
    pub(crate) rate: crate::limits::RateWindow<String>,
    /// Pings in flight on outgoing streams, by IQ id: the remote domain and who waits for the
    /// answer (at most one per link, so bounded by `max_outgoing`).
    pub(crate) pending_pings: DashMap<String, (String, tokio::sync::oneshot::Sender<()>)>,
}

/// Turn federation on for `server` when its configuration has an `[s2s]` section.
pub fn install(server: &Arc<Server>) -> anyhow::Result<()> {
    let Some(config) = server.config.s2s.clone() else {
        return Ok(());
    };
    let certificates = cert::Certificates::new(&server.tls, config.ca_file.as_deref())?;
    let mut secret = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut secret);
    let s2s = Arc::new(S2s {
        server: Arc::downgrade(server),
        resolver: dns::resolver(config.nameserver),
        rate: crate::limits::RateWindow::new(
            config.stanzas_per_second as usize,
            Duration::from_secs(1),
        ),
        config,
        certificates,
        secret,
        links: DashMap::new(),
        carriers: DashMap::new(),
        next_link: AtomicU64::new(1),
        incoming: Default::default(),
        incoming_per_domain: DashMap::new(),
        pending_pings: DashMap::new(),
    });
    server.extensions.insert_arc(s2s.clone());
    let _ = server.remote.set(s2s);
    Ok(())
}

impl S2s {
    pub(crate) fn server(&self) -> Option<Arc<Server>> {
        self.server.upgrade()
    }

    /// Whether `domain` is one of ours (each hosted domain has its own links).
    pub(crate) fn is_hosted(&self, domain: &str) -> bool {
        self.server().is_some_and(|server| {
            server.is_local_user_host(domain) || server.router.service(domain).is_some()
        })
    }

    pub(crate) fn policy(&self, domain: &str) -> S2sPolicy {
        self.config.policy_for(domain)
    }

    pub(crate) fn dialback_key(&self, receiving: &str, originating: &str, id: &str) -> String {
        dialback::key(&self.secret, receiving, originating, id)
    }

    pub(crate) fn enqueue(&self, item: Queued, from_domain: &str, to_domain: &str) {
        if self.policy(to_domain) == S2sPolicy::Refuse {
            self.bounce(
                item,
                StanzaError::new(stanza::ErrorType::Cancel, StanzaCondition::NotAllowed)
                    .with_text(format!("this server does not federate with {to_domain}")),
            );
            return;
        }
        let key = (from_domain.to_string(), to_domain.to_string());
        // Each domain pair costs a task and a connection: bounded, however many domains local
        // users write to.
        if !self.links.contains_key(&key) && self.links.len() >= self.config.max_outgoing {
            self.bounce(
                item,
                StanzaError::new(stanza::ErrorType::Wait, StanzaCondition::ResourceConstraint)
                    .with_text("too many servers being reached at once; try again later"),
            );
            return;
        }
        let mut item = item;
        // Twice at most: a link whose task just ended is replaced once.
        for _ in 0..2 {
            let link = self
                .links
                .entry(key.clone())
                .or_insert_with(|| self.open_link(from_domain, to_domain))
                .clone();
            match link.queue.try_send(item) {
                Ok(()) => return,
                Err(tokio::sync::mpsc::error::TrySendError::Full(back)) => {
                    self.bounce(
                        back,
                        StanzaError::new(
                            stanza::ErrorType::Wait,
                            StanzaCondition::ResourceConstraint,
                        )
                        .with_text(format!("too many stanzas waiting for {to_domain}")),
                    );
                    return;
                }
                Err(tokio::sync::mpsc::error::TrySendError::Closed(back)) => {
                    self.links.remove_if(&key, |_, l| l.id == link.id);
                    item = back;
                }
            }
        }
        self.bounce(
            item,
            StanzaError::new(
                stanza::ErrorType::Wait,
                StanzaCondition::RemoteServerTimeout,
            ),
        );
    }

    fn open_link(&self, local: &str, remote: &str) -> Link {
        let id = self.next_link.fetch_add(1, Ordering::Relaxed);
        let (queue, receiver) = tokio::sync::mpsc::channel(self.config.queue_stanzas);
        if let Some(s2s) = self
            .server()
            .and_then(|server| server.extensions.get::<S2s>())
        {
            tokio::spawn(outgoing::run_link(
                s2s,
                id,
                local.to_string(),
                remote.to_string(),
                receiver,
            ));
        }
        Link { id, queue }
    }

    /// The link task ended: forget it unless it was replaced already.
    pub(crate) fn link_ended(&self, local: &str, remote: &str, id: u64) {
        self.links
            .remove_if(&(local.to_string(), remote.to_string()), |_, l| l.id == id);
    }

    /// Send an error back to the local sender of a stanza that cannot go out.
    pub(crate) fn bounce(&self, item: Queued, error: StanzaError) {
        let (Some(server), Some(stanza)) = (self.server(), item.into_element()) else {
            return;
        };
        server.metrics.s2s_bounced(error.condition.name());
        server.bounce(&stanza, error);
    }
}

impl S2s {
    /// An IQ result or error from `remote` answering one of our pings: the waiting link is told,
    /// and the stanza goes no further (`true`).
    pub(crate) fn ping_answered(&self, stanza: &minidom::Element, remote: &str) -> bool {
        let answer =
            stanza.name() == "iq" && matches!(stanza.attr("type"), Some("result" | "error"));
        let Some(id) = stanza.attr("id").filter(|_| answer) else {
            return false;
        };
        match self
            .pending_pings
            .remove_if(id, |_, (domain, _)| domain == remote)
        {
            Some((_, (_, waiter))) => {
                let _ = waiter.send(());
                true
            }
            None => false,
        }
    }

    /// Metrics of the server this module serves, when it is still there.
    pub(crate) fn count(&self, count: impl FnOnce(&crate::metrics::Metrics)) {
        if let Some(server) = self.server() {
            count(&server.metrics);
        }
    }
}

impl RemoteRouter for S2s {
    fn send(&self, stanza: Element, from_domain: &str, to_domain: &str) {
        self.enqueue(Queued::Element(stanza), from_domain, to_domain);
    }

    fn send_serialized(&self, stanza: Bytes, from_domain: &str, to_domain: &str) {
        self.enqueue(Queued::Serialized(stanza), from_domain, to_domain);
    }
}
