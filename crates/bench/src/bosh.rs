//! The load generator's BOSH transport (XEP-0124 with XEP-0206), as a browser client such as
//! Converse.js (Strophe) uses it: `hold=1`, two HTTP/1.1 keep-alive connections, one long-poll
//! request held by the server at all times and at most one more carrying what the client has to
//! send, so never more than two requests in flight (`requests` = `hold` + 1, §6).

use crate::incoming::Incoming;
use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper::{header, Method, Request};
use hyper_util::rt::TokioIo;
use salon_xml::{ParserLimits, StreamEvent, StreamParser};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;
use tokio::net::TcpStream;

pub const NS_HTTPBIND: &str = "http://jabber.org/protocol/httpbind";
const NS_XBOSH: &str = "urn:xmpp:xbosh";

/// Longest the server may hold a request (`wait`, XEP-0124 §7.1); Strophe's default.
const WAIT_SECONDS: u64 = 60;
/// A request with no answer this long after `wait` has failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(WAIT_SECONDS + 15);
/// The largest response body read.
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// The most the client queues while both connections are busy; the server answers the held
/// request as soon as the second arrives, so this only fills when the server stops answering.
const MAX_PENDING_BYTES: usize = 1024 * 1024;

/// The connection back (none when it failed) and the response body.
type Answer = (Option<SendRequest<Full<Bytes>>>, Result<Bytes>);
/// A response `<body/>`'s attributes and its children as events.
type Parsed = (Vec<(String, String)>, Vec<Incoming>);
type Flight = Pin<Box<dyn Future<Output = Answer> + Send>>;

pub struct BoshClient {
    addr: SocketAddr,
    /// The HTTP/1.1 connections not carrying a request now.
    idle: Vec<SendRequest<Full<Bytes>>>,
    in_flight: FuturesUnordered<Flight>,
    path: String,
    host_header: String,
    sid: Option<String>,
    next_rid: u64,
    /// Stanzas waiting for a request to carry them.
    pending: String,
    /// A stream restart (XEP-0206 §5) to send, alone in its request, to this domain.
    restart: Option<String>,
    terminated: bool,
    parser_limits: ParserLimits,
    pub bytes_in: u64,
}

/// Path and `Host` header of `http://host:port/path`.
fn split_url(url: &str) -> Result<(String, String)> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("BOSH URL {url} must start with http:// (no TLS on loopback)"))?;
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    Ok((authority.to_string(), path.to_string()))
}

async fn http_connection(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| {
        if e.raw_os_error() == Some(24) {
            anyhow!("cannot connect to {addr}: {e} (raise `ulimit -n`)")
        } else {
            anyhow!("cannot connect to {addr}: {e}")
        }
    })?;
    tcp.set_nodelay(true).ok();
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .context("HTTP handshake")?;
    // The connection task ends when the sender is dropped or the server closes.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

impl BoshClient {
    /// Open the two HTTP connections; the session starts with [`BoshClient::create`].
    pub async fn connect(addr: SocketAddr, url: &str, parser_limits: ParserLimits) -> Result<Self> {
        let (host_header, path) = split_url(url)?;
        let idle = vec![http_connection(addr).await?, http_connection(addr).await?];
        Ok(BoshClient {
            addr,
            idle,
            in_flight: FuturesUnordered::new(),
            path,
            host_header,
            sid: None,
            // Any start below 2^53 (§14.1); leave room for a long run.
            next_rid: 1 + rand::random::<u32>() as u64,
            pending: String::new(),
            restart: None,
            terminated: false,
            parser_limits,
            bytes_in: 0,
        })
    }

    /// Send `body` on an idle connection; the answer comes out of `in_flight`. A keep-alive
    /// connection the server closed while idle (Salon after `http.header_read_timeout`) is
    /// replaced by a new one, and a request it refused unread is sent again on the new one,
    /// as browsers do: the server never saw it, so the rid is still unused.
    fn launch(&mut self, body: String) {
        let body = Bytes::from(body);
        let sender = self.idle.pop().expect("launch needs an idle connection");
        let (addr, path, host) = (self.addr, self.path.clone(), self.host_header.clone());
        self.in_flight.push(Box::pin(async move {
            let mut sender = Some(sender);
            let exchange = async {
                let mut fresh = false;
                loop {
                    let reusable = match sender.take() {
                        Some(mut s) if !s.is_closed() => s.ready().await.ok().map(|()| s),
                        _ => None,
                    };
                    let mut connection = match reusable {
                        Some(s) => s,
                        None => {
                            fresh = true;
                            http_connection(addr).await?
                        }
                    };
                    let request = Request::builder()
                        .method(Method::POST)
                        .uri(path.as_str())
                        .header(header::HOST, host.as_str())
                        .header(header::CONTENT_TYPE, "text/xml; charset=utf-8")
                        .body(Full::new(body.clone()))
                        .expect("a request from valid parts");
                    let response = match connection.send_request(request).await {
                        Ok(response) => response,
                        Err(e) if !fresh && (e.is_canceled() || e.is_closed()) => {
                            fresh = true;
                            continue;
                        }
                        Err(e) => return Err(anyhow!("BOSH request: {e}")),
                    };
                    sender = Some(connection);
                    let status = response.status();
                    let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                        .collect()
                        .await
                        .map_err(|e| anyhow!("reading a BOSH response: {e}"))?
                        .to_bytes();
                    if !status.is_success() {
                        bail!(
                            "BOSH request answered {status}: {}",
                            String::from_utf8_lossy(&body[..body.len().min(200)])
                        );
                    }
                    return Ok(body);
                }
            };
            let result = match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
                Ok(result) => result,
                Err(_) => Err(anyhow!(
                    "no answer to a BOSH request in {}s",
                    REQUEST_TIMEOUT.as_secs()
                )),
            };
            (sender, result)
        }));
    }

    fn rid(&mut self) -> u64 {
        let rid = self.next_rid;
        self.next_rid += 1;
        rid
    }

    /// XEP-0206 §4: create the session. The answer (with the stream features, on most
    /// servers) is returned as events.
    pub async fn create(&mut self, domain: &str) -> Result<Vec<Incoming>> {
        if self.sid.is_some() {
            bail!("the BOSH session exists already");
        }
        let rid = self.rid();
        let body = format!(
            "<body xmlns='{NS_HTTPBIND}' xmlns:xmpp='{NS_XBOSH}' content='text/xml; charset=utf-8' hold='1' rid='{rid}' to='{}' ver='1.6' wait='{WAIT_SECONDS}' xml:lang='en' xmpp:version='1.0'/>",
            salon_xml::escape(domain)
        );
        self.launch(body);
        let (sender, result) = self.in_flight.next().await.expect("one request in flight");
        self.idle.extend(sender);
        let (attributes, events) = self.parse(&result?)?;
        let sid = attributes
            .iter()
            .find(|(k, _)| k == "sid")
            .map(|(_, v)| v.clone())
            .ok_or_else(|| anyhow!("the BOSH session creation response has no sid"))?;
        self.sid = Some(sid);
        Ok(events)
    }

    pub fn has_session(&self) -> bool {
        self.sid.is_some()
    }

    /// XEP-0206 §5: restart the stream after SASL; sent alone in the next request.
    pub fn restart(&mut self, domain: &str) {
        self.restart = Some(domain.to_string());
        self.kick();
    }

    /// Queue serialised stanzas; they leave at once if a connection is free.
    pub fn send(&mut self, xml: &str) -> Result<()> {
        if self.terminated {
            bail!("the BOSH session has ended");
        }
        if self.pending.len() + xml.len() > MAX_PENDING_BYTES {
            bail!(
                "more than {MAX_PENDING_BYTES} bytes queued for BOSH: the server stopped answering"
            );
        }
        self.pending.push_str(xml);
        self.kick();
        Ok(())
    }

    /// Start what the rules allow: a restart or waiting stanzas on a free connection, and an
    /// empty long-poll when no request is out, so the server always holds one.
    fn kick(&mut self) {
        let Some(sid) = self.sid.clone() else {
            return;
        };
        while !self.idle.is_empty() && !self.terminated {
            let body = if let Some(domain) = self.restart.take() {
                let rid = self.rid();
                format!(
                    "<body xmlns='{NS_HTTPBIND}' xmlns:xmpp='{NS_XBOSH}' rid='{rid}' sid='{sid}' to='{}' xml:lang='en' xmpp:restart='true'/>",
                    salon_xml::escape(&domain)
                )
            } else if !self.pending.is_empty() || self.in_flight.is_empty() {
                let rid = self.rid();
                let payload = std::mem::take(&mut self.pending);
                format!("<body xmlns='{NS_HTTPBIND}' rid='{rid}' sid='{sid}'>{payload}</body>")
            } else {
                return;
            };
            self.launch(body);
        }
    }

    /// The next answer's events. Cancel-safe: requests live in `in_flight` until answered.
    pub async fn recv(&mut self) -> Result<Vec<Incoming>> {
        if self.sid.is_none() {
            bail!("no BOSH session");
        }
        loop {
            self.kick();
            let Some((sender, result)) = self.in_flight.next().await else {
                bail!("the BOSH session has ended");
            };
            self.idle.extend(sender);
            let body = result?;
            let (_, events) = self.parse(&body)?;
            if !events.is_empty() {
                // The next poll starts when the caller reads again, after it has acted on
                // these: a stream restart after SASL success then goes out alone, before any
                // poll, as Strophe sends it (ejabberd loses a restart that overtakes a poll).
                return Ok(events);
            }
        }
    }

    /// A response `<body/>`: its attributes, and its children as events (a `terminate` body
    /// ends with `Close`).
    fn parse(&mut self, body: &[u8]) -> Result<Parsed> {
        self.bytes_in += body.len() as u64;
        let mut parser = StreamParser::new(self.parser_limits.clone());
        let mut parsed = Vec::new();
        parser
            .feed(body, &mut parsed)
            .map_err(|e| anyhow!("server sent a bad BOSH body: {e}"))?;
        let mut attributes = None;
        let mut events = Vec::new();
        let mut complete = false;
        for event in parsed {
            match event {
                StreamEvent::StreamOpen {
                    namespace,
                    name,
                    attributes: attrs,
                    ..
                } => {
                    if name != "body" || namespace != NS_HTTPBIND {
                        bail!("the BOSH response is <{name} xmlns='{namespace}'>, not a <body/>");
                    }
                    attributes = Some(attrs);
                }
                StreamEvent::Stanza(element) => events.push(Incoming::Stanza(element)),
                StreamEvent::StreamClose => complete = true,
            }
        }
        let (Some(attributes), true) = (attributes, complete) else {
            bail!("the BOSH response is not a complete <body/>");
        };
        if attributes
            .iter()
            .any(|(k, v)| k == "type" && v == "terminate")
        {
            self.terminated = true;
            let condition = attributes
                .iter()
                .find(|(k, _)| k == "condition")
                .map(|(_, v)| v.as_str())
                .unwrap_or("none");
            if events.is_empty() && condition != "none" {
                bail!("the server ended the BOSH session: {condition}");
            }
            events.push(Incoming::Close);
        }
        Ok((attributes, events))
    }

    /// End the session (best effort: the caller bounds the wait).
    pub async fn close(&mut self) {
        let Some(sid) = self.sid.clone() else {
            return;
        };
        if self.terminated {
            return;
        }
        // Wait for a free connection (the server answers the held poll when this arrives).
        while self.idle.is_empty() {
            match self.in_flight.next().await {
                Some((Some(sender), _)) => self.idle.push(sender),
                Some((None, _)) => {}
                None => return,
            }
        }
        let rid = self.rid();
        let payload = std::mem::take(&mut self.pending);
        self.terminated = true;
        self.launch(format!(
            "<body xmlns='{NS_HTTPBIND}' rid='{rid}' sid='{sid}' type='terminate'>{payload}<presence xmlns='jabber:client' type='unavailable'/></body>"
        ));
        while let Some((_, result)) = self.in_flight.next().await {
            if result.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> BoshClient {
        BoshClient {
            addr: "127.0.0.1:9".parse().unwrap(),
            idle: Vec::new(),
            in_flight: FuturesUnordered::new(),
            path: "/http-bind".into(),
            host_header: "127.0.0.1:5280".into(),
            sid: None,
            next_rid: 1,
            pending: String::new(),
            restart: None,
            terminated: false,
            parser_limits: ParserLimits {
                max_stanza_bytes: 65536,
                max_depth: 16,
                max_attributes: 64,
                max_token_bytes: 65536,
            },
            bytes_in: 0,
        }
    }

    #[test]
    fn url_parts() {
        assert_eq!(
            split_url("http://127.0.0.1:5280/http-bind").unwrap(),
            ("127.0.0.1:5280".to_string(), "/http-bind".to_string())
        );
        assert!(split_url("https://127.0.0.1/http-bind").is_err());
    }

    #[test]
    fn response_bodies() {
        let mut c = client();
        let (attributes, events) = c
            .parse(b"<body xmlns='http://jabber.org/protocol/httpbind' sid='s1' xmlns:stream='http://etherx.jabber.org/streams'><stream:features/><message xmlns='jabber:client'><body>hi</body></message></body>")
            .unwrap();
        assert!(attributes.iter().any(|(k, v)| k == "sid" && v == "s1"));
        assert_eq!(events.len(), 2);
        let Incoming::Stanza(message) = &events[1] else {
            panic!("not a stanza")
        };
        assert_eq!(message.ns(), "jabber:client");
        // An empty terminate ends the session with a close.
        let (_, events) = c
            .parse(b"<body xmlns='http://jabber.org/protocol/httpbind' type='terminate'/>")
            .unwrap();
        assert!(matches!(events[..], [Incoming::Close]));
        assert!(c.terminated);
        assert!(c.send("<presence/>").is_err());
        // A terminate with a condition is an error; a truncated body too.
        assert!(c
            .parse(b"<body xmlns='http://jabber.org/protocol/httpbind' type='terminate' condition='item-not-found'/>")
            .is_err());
        assert!(c
            .parse(b"<body xmlns='http://jabber.org/protocol/httpbind'><message")
            .is_err());
        assert!(c.parse(b"<html/>").is_err());
    }
}
