//! XMPP over BOSH (XEP-0124 with XEP-0206): sessions made of long-polled HTTP requests, the RID
//! window with replay of recent responses, `hold`/`wait`, stream restarts after SASL, an
//! inactivity timeout, and a limit on requests in flight. The session behind it is the same
//! one TCP and WebSocket use; this module only turns HTTP bodies into elements and back.

use crate::{ClientAddress, WebState};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use dashmap::DashMap;
use salon_server::session::{parser_limits, ConnectionGuard, ReadError, Transport};
use salon_server::stanza::{ns, StreamCondition};
use salon_xml::{ParserLimits, StreamEvent, StreamParser, TreeLimits};
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify};

pub const NS_HTTPBIND: &str = "http://jabber.org/protocol/httpbind";
pub const NS_XBOSH: &str = "urn:xmpp:xbosh";

/// Requests the server holds at most at once (`hold`); the client may use one more.
const MAX_HOLD: usize = 2;

/// How many answered requests are kept for replay (XEP-0124 §14.3).
const REPLAY_WINDOW: u64 = 4;

/// All BOSH sessions, by sid.
#[derive(Default)]
pub struct BoshSessions {
    sessions: DashMap<String, Arc<BoshSession>>,
}

struct Shared {
    /// The highest rid processed.
    last_rid: u64,
    /// Elements waiting for a request to carry them.
    outgoing: Vec<String>,
    /// Recent responses, for replay when a request is retried (shared with the response
    /// that carried them, not copied).
    answered: BTreeMap<u64, Bytes>,
    /// Requests currently held, by rid.
    held: VecDeque<u64>,
    /// Requests that arrived ahead of their predecessors and wait for them, by rid. With
    /// `held`, at most `hold` + 1 (the `requests` the session announced): without this bound a
    /// client could park any number of requests on one early rid.
    early: Vec<u64>,
    terminated: bool,
    last_activity: Instant,
}

struct BoshSession {
    sid: String,
    host: String,
    wait: Duration,
    inactivity: Duration,
    hold: usize,
    inbound: mpsc::Sender<Vec<StreamEvent>>,
    shared: Mutex<Shared>,
    changed: Notify,
}

/// Build a `<body/>` wrapper around elements.
fn body(attributes: &str, elements: &[String]) -> String {
    let header = format!(
        "<body xmlns='{NS_HTTPBIND}' xmlns:xmpp='{NS_XBOSH}' xmlns:stream='{}'{attributes}>",
        ns::STREAM
    );
    let payload: usize = elements.iter().map(String::len).sum();
    let mut text = String::with_capacity(header.len() + payload + "</body>".len());
    text.push_str(&header);
    for element in elements {
        text.push_str(element);
    }
    text.push_str("</body>");
    text
}

fn terminate(condition: &str) -> String {
    body(&format!(" type='terminate' condition='{condition}'"), &[])
}

fn xml_response(status: StatusCode, text: impl Into<Bytes>) -> Response {
    let text: Bytes = text.into();
    (
        status,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        text,
    )
        .into_response()
}

/// A request's `<body/>` attributes and the elements it carries.
type BoshRequest = (Vec<(String, String)>, Vec<minidom::Element>);

/// Parse a request body into its `<body/>` attributes and child elements.
pub(crate) fn parse_request(
    text: &[u8],
    limits: &ParserLimits,
    tree_limits: TreeLimits,
) -> Result<BoshRequest, String> {
    if let Some(attributes) = empty_poll(text) {
        if attributes.len() <= limits.max_attributes {
            return Ok((attributes, Vec::new()));
        }
    }
    parse_with_parser(text, limits, tree_limits)
}

fn parse_with_parser(
    text: &[u8],
    limits: &ParserLimits,
    tree_limits: TreeLimits,
) -> Result<BoshRequest, String> {
    let mut parser = StreamParser::new(limits.clone()).with_tree_limits(tree_limits);
    let mut events = Vec::new();
    parser.feed(text, &mut events).map_err(|e| e.to_string())?;
    let mut attributes = None;
    let mut children = Vec::new();
    let mut closed = false;
    for event in events {
        match event {
            StreamEvent::StreamOpen {
                namespace,
                name,
                attributes: attrs,
                ..
            } => {
                if name != "body" || namespace != NS_HTTPBIND {
                    return Err("the request is not a BOSH <body/>".into());
                }
                attributes = Some(attrs);
            }
            StreamEvent::Stanza(element) => children.push(element),
            StreamEvent::StreamClose => closed = true,
        }
    }
    match (attributes, closed) {
        (Some(attributes), true) => Ok((attributes, children)),
        _ => Err("the request body is not a complete <body/> element".into()),
    }
}

/// The attributes of an empty request, the long-poll most BOSH traffic is made of
/// (`<body rid='…' sid='…' xmlns='http://jabber.org/protocol/httpbind'/>`), read without
/// building an XML parser: the parser's setup was most of the cost of such a request. Only the
/// plainest form qualifies (unprefixed ASCII attribute names, values with no markup, entity or
/// control character, the BOSH namespace declared, nothing else); `None` sends the body to
/// the full parser, which accepts or refuses it as before.
fn empty_poll(text: &[u8]) -> Option<Vec<(String, String)>> {
    let is_space = |c: char| matches!(c, ' ' | '\t' | '\r' | '\n');
    let text = std::str::from_utf8(text).ok()?.trim_matches(is_space);
    let inner = text.strip_prefix("<body")?;
    let mut rest = inner
        .strip_suffix("/>")
        .or_else(|| inner.strip_suffix("></body>"))?;
    let mut attributes: Vec<(String, String)> = Vec::new();
    let mut namespace_declared = false;
    loop {
        let trimmed = rest.trim_start_matches(is_space);
        if trimmed.is_empty() {
            break;
        }
        // Attributes are separated from the name and from each other by white space.
        if trimmed.len() == rest.len() {
            return None;
        }
        let (name, after) = trimmed.split_once('=')?;
        let plain_name = name.as_bytes().first()?.is_ascii_alphabetic()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !plain_name {
            return None;
        }
        let quote = after.chars().next().filter(|q| matches!(q, '\'' | '"'))?;
        let (value, tail) = after[1..].split_once(quote)?;
        if value
            .bytes()
            .any(|b| matches!(b, b'<' | b'&' | b'\'' | b'"') || b < 0x20)
        {
            return None;
        }
        rest = tail;
        if name == "xmlns" {
            if value != NS_HTTPBIND || namespace_declared {
                return None;
            }
            namespace_declared = true;
        } else if attributes.iter().any(|(k, _)| k == name) {
            return None;
        } else {
            attributes.push((name.to_string(), value.to_string()));
        }
    }
    namespace_declared.then_some(attributes)
}

fn attribute<'a>(attributes: &'a [(String, String)], name: &str) -> Option<&'a str> {
    attributes
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

pub async fn request(
    State(state): State<WebState>,
    client: ClientAddress,
    payload: Bytes,
) -> Response {
    let limits = parser_limits(&state.server);
    let tree_limits = state.server.config.limits.tree_limits();
    let (attributes, children) = match parse_request(&payload, &limits, tree_limits) {
        Ok(parsed) => parsed,
        Err(why) => {
            tracing::info!(peer = %client.ip, error = %why, "bad BOSH request");
            return xml_response(StatusCode::BAD_REQUEST, terminate("bad-request"));
        }
    };
    let Some(rid) = attribute(&attributes, "rid").and_then(|r| r.parse::<u64>().ok()) else {
        return xml_response(StatusCode::BAD_REQUEST, terminate("bad-request"));
    };
    match attribute(&attributes, "sid") {
        None => create_session(state, client, &attributes, rid).await,
        Some(sid) => {
            let session = state.bosh.sessions.get(sid).map(|s| s.clone());
            match session {
                Some(session) => session.handle(rid, &attributes, children).await,
                None => xml_response(StatusCode::NOT_FOUND, terminate("item-not-found")),
            }
        }
    }
}

/// XEP-0124 §7.1 / XEP-0206 §3: a new session.
async fn create_session(
    state: WebState,
    client: ClientAddress,
    attributes: &[(String, String)],
    rid: u64,
) -> Response {
    let server = state.server.clone();
    let host = attribute(attributes, "to")
        .unwrap_or(&server.config.domain)
        .to_string();
    if !server.is_local_user_host(&host) {
        return xml_response(StatusCode::OK, terminate("host-unknown"));
    }
    let Some(guard) = ConnectionGuard::admit(&server, client.ip) else {
        return xml_response(StatusCode::OK, terminate("policy-violation"));
    };
    let max_wait = server.config.http.bosh_max_wait;
    let inactivity = server.config.http.bosh_inactivity;
    let wait = attribute(attributes, "wait")
        .and_then(|w| w.parse::<u64>().ok())
        .unwrap_or(max_wait)
        .clamp(1, max_wait);
    let hold = attribute(attributes, "hold")
        .and_then(|h| h.parse::<usize>().ok())
        .unwrap_or(1)
        .clamp(1, MAX_HOLD);
    let sid = format!("{:032x}", rand::random::<u128>());
    let (inbound, receiver) = mpsc::channel(16);
    let session = Arc::new(BoshSession {
        sid: sid.clone(),
        host: host.clone(),
        wait: Duration::from_secs(wait),
        inactivity: Duration::from_secs(inactivity),
        hold,
        inbound,
        shared: Mutex::new(Shared {
            last_rid: rid,
            outgoing: Vec::new(),
            answered: BTreeMap::new(),
            held: VecDeque::new(),
            early: Vec::new(),
            terminated: false,
            last_activity: Instant::now(),
        }),
        changed: Notify::new(),
    });
    state.bosh.sessions.insert(sid.clone(), session.clone());
    let secure =
        client.secure || (client.ip.is_loopback() && server.config.http.loopback_is_secure);
    let transport = BoshTransport {
        session: session.clone(),
        receiver,
        current: Vec::new(),
        pending: Vec::new(),
        peer: client.ip,
        secure,
        idle_timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
        registry: state.bosh.clone(),
        _guard: guard,
    };
    // The sid stays reachable as long as its transport lives: when a resumption hands the
    // transport to an older session, that session's task owns it, not this one.
    tokio::spawn(salon_server::session::run(server, Box::new(transport)));
    // The stream opens at once; its features travel in this first response.
    session.open_stream().await;
    let elements = session.wait_for_output(rid).await;
    let attributes = format!(
        " sid='{}' wait='{wait}' requests='{}' hold='{hold}' inactivity='{inactivity}' polling='1' ver='1.11' from='{}' authid='{}' xmpp:version='1.0' xmpp:restartlogic='true' secure='{secure}'",
        session.sid,
        hold + 1,
        salon_xml::escape(&host),
        session.sid,
    );
    let text = Bytes::from(body(&attributes, &elements));
    session.remember(rid, &text);
    xml_response(StatusCode::OK, text)
}

impl BoshSession {
    /// What the session sees when a BOSH stream starts or restarts: the header a TCP client
    /// would have sent (XEP-0206 has none on the wire).
    fn stream_open(&self) -> StreamEvent {
        StreamEvent::StreamOpen {
            namespace: ns::STREAM.to_string(),
            name: "stream".to_string(),
            attributes: vec![
                ("to".into(), self.host.clone()),
                ("version".into(), "1.0".into()),
            ],
            default_namespace: Some(ns::CLIENT.to_string()),
        }
    }

    async fn open_stream(&self) {
        let _ = self.inbound.send(vec![self.stream_open()]).await;
    }

    fn remember(&self, rid: u64, text: &Bytes) {
        if let Ok(mut shared) = self.shared.lock() {
            shared.answered.insert(rid, text.clone());
            while shared.answered.len() as u64 > REPLAY_WINDOW {
                shared.answered.pop_first();
            }
        }
    }

    async fn handle(
        self: Arc<Self>,
        rid: u64,
        attributes: &[(String, String)],
        children: Vec<minidom::Element>,
    ) -> Response {
        // RID checks (XEP-0124 §14): replay an answered request, refuse one outside the window,
        // and let one that arrived early wait for its predecessors. Rids are compared with
        // checked arithmetic: a session started near 2^64 must not see its window wrap to 0.
        let deadline = Instant::now() + self.wait;
        let mut early: Option<EarlyRequest> = None;
        loop {
            let waiter = self.changed.notified();
            {
                let Ok(mut shared) = self.shared.lock() else {
                    return xml_response(StatusCode::OK, terminate("internal-server-error"));
                };
                shared.last_activity = Instant::now();
                if shared.terminated {
                    return xml_response(StatusCode::OK, terminate("item-not-found"));
                }
                if rid <= shared.last_rid {
                    return match shared.answered.get(&rid) {
                        Some(text) => xml_response(StatusCode::OK, text.clone()),
                        None => xml_response(StatusCode::OK, terminate("item-not-found")),
                    };
                }
                let window_end = shared.last_rid.saturating_add(self.hold as u64 + 1);
                if rid > window_end {
                    tracing::info!(sid = %self.sid, rid, last = shared.last_rid, "BOSH rid outside the window");
                    shared.terminated = true;
                    drop(shared);
                    self.changed.notify_waiters();
                    let _ = self.inbound.try_send(vec![StreamEvent::StreamClose]);
                    return xml_response(StatusCode::OK, terminate("item-not-found"));
                }
                let waiting_here = usize::from(early.is_some());
                let in_flight = shared.held.len() + shared.early.len() - waiting_here;
                if in_flight > self.hold || (early.is_none() && shared.early.contains(&rid)) {
                    // More requests in flight than the session allows (`requests` = hold + 1),
                    // or a second request with an rid already waiting.
                    return xml_response(StatusCode::OK, terminate("policy-violation"));
                }
                if shared.last_rid.checked_add(1) == Some(rid) {
                    shared.last_rid = rid;
                    shared.held.push_back(rid);
                    break;
                }
                if early.is_none() {
                    shared.early.push(rid);
                    early = Some(EarlyRequest {
                        session: self.clone(),
                        rid,
                    });
                }
            }
            if Instant::now() >= deadline {
                return xml_response(StatusCode::OK, terminate("item-not-found"));
            }
            let _ = tokio::time::timeout_at(deadline.into(), waiter).await;
        }
        drop(early);
        self.changed.notify_waiters();
        let mut events = Vec::new();
        if matches!(
            attribute(attributes, "xmpp:restart")
                .or_else(|| attribute(attributes, &format!("{{{NS_XBOSH}}}restart"))),
            Some("true" | "1")
        ) {
            events.push(self.stream_open());
        }
        events.extend(children.into_iter().map(StreamEvent::Stanza));
        let terminating = attribute(attributes, "type") == Some("terminate");
        if terminating {
            events.push(StreamEvent::StreamClose);
        }
        if !events.is_empty() && self.inbound.send(events).await.is_err() {
            return xml_response(StatusCode::OK, terminate("item-not-found"));
        }
        let elements = if terminating {
            Vec::new()
        } else {
            self.wait_for_output(rid).await
        };
        let terminated = self.shared.lock().map(|s| s.terminated).unwrap_or(true);
        let text = Bytes::from(if terminating || (terminated && elements.is_empty()) {
            terminate_with(&elements)
        } else if terminated {
            body(
                " type='terminate' condition='remote-stream-error'",
                &elements,
            )
        } else {
            body("", &elements)
        });
        self.remember(rid, &text);
        xml_response(StatusCode::OK, text)
    }

    /// Hold request `rid` until there is something to send, `wait` passes, or a newer request
    /// means this one must go back (so at most `hold` requests are held).
    async fn wait_for_output(&self, rid: u64) -> Vec<String> {
        let deadline = Instant::now() + self.wait;
        loop {
            let waiter = self.changed.notified();
            {
                let Ok(mut shared) = self.shared.lock() else {
                    return Vec::new();
                };
                let newer = shared.held.iter().filter(|r| **r > rid).count();
                if !shared.outgoing.is_empty()
                    || shared.terminated
                    || newer >= self.hold
                    || Instant::now() >= deadline
                {
                    shared.held.retain(|r| *r != rid);
                    shared.last_activity = Instant::now();
                    return std::mem::take(&mut shared.outgoing);
                }
            }
            let _ = tokio::time::timeout_at(deadline.into(), waiter).await;
        }
    }
}

/// An early request's place in `Shared::early`, given back however its handler ends (answered,
/// refused, or dropped when the client closes the connection).
struct EarlyRequest {
    session: Arc<BoshSession>,
    rid: u64,
}

impl Drop for EarlyRequest {
    fn drop(&mut self) {
        if let Ok(mut shared) = self.session.shared.lock() {
            if let Some(at) = shared.early.iter().position(|r| *r == self.rid) {
                shared.early.swap_remove(at);
            }
        }
    }
}

fn terminate_with(elements: &[String]) -> String {
    body(" type='terminate'", elements)
}

struct BoshTransport {
    session: Arc<BoshSession>,
    receiver: mpsc::Receiver<Vec<StreamEvent>>,
    current: Vec<u8>,
    pending: Vec<String>,
    peer: IpAddr,
    secure: bool,
    /// Wakes the session to check for inactivity.
    idle_timer: std::pin::Pin<Box<tokio::time::Sleep>>,
    /// Where the sid is registered; it is removed when the transport goes.
    registry: Arc<BoshSessions>,
    _guard: ConnectionGuard,
}

impl Drop for BoshTransport {
    fn drop(&mut self) {
        self.registry
            .sessions
            .remove_if(&self.session.sid, |_, s| Arc::ptr_eq(s, &self.session));
    }
}

#[async_trait::async_trait]
impl Transport for BoshTransport {
    fn poll_read_events(
        &mut self,
        cx: &mut Context<'_>,
        events: &mut Vec<StreamEvent>,
    ) -> Poll<Result<(), ReadError>> {
        match self.receiver.poll_recv(cx) {
            // Elements arrive parsed, each within the stanza limit (`parse_request`).
            Poll::Ready(Some(mut batch)) => {
                events.append(&mut batch);
                return Poll::Ready(Ok(()));
            }
            Poll::Ready(None) => return Poll::Ready(Err(ReadError::Closed)),
            Poll::Pending => {}
        }
        loop {
            // The session ends after `inactivity` seconds with no request held or made. While
            // a request is held, look again every second: nothing wakes this task when the
            // last held request is answered.
            let idle_deadline = {
                let Ok(shared) = self.session.shared.lock() else {
                    return Poll::Ready(Err(ReadError::Closed));
                };
                if shared.terminated {
                    return Poll::Ready(Err(ReadError::Closed));
                }
                if shared.held.is_empty() {
                    Some(shared.last_activity + self.session.inactivity)
                } else {
                    None
                }
            };
            let now = Instant::now();
            if idle_deadline.is_some_and(|at| now >= at) {
                tracing::debug!(sid = %self.session.sid, "BOSH session inactive; closing");
                return Poll::Ready(Err(ReadError::Closed));
            }
            // The timer only ever fires at or before the deadline; firing early just means
            // looking again.
            match idle_deadline {
                Some(at) if self.idle_timer.deadline() != at.into() => {
                    self.idle_timer.as_mut().reset(at.into());
                }
                None if self.idle_timer.is_elapsed() => {
                    let at = now + Duration::from_secs(1);
                    self.idle_timer.as_mut().reset(at.into());
                }
                _ => {}
            }
            if self.idle_timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }

    fn out(&mut self) -> &mut Vec<u8> {
        &mut self.current
    }

    fn end_element(&mut self) {
        let bytes = std::mem::take(&mut self.current);
        if !bytes.is_empty() {
            // Serialised stanzas are UTF-8 already: keep the buffer rather than copy it.
            let text = String::from_utf8(bytes)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
            self.pending.push(text);
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        {
            let mut shared = self
                .session
                .shared
                .lock()
                .map_err(|_| io::Error::other("poisoned"))?;
            if shared.terminated {
                return Err(io::ErrorKind::NotConnected.into());
            }
            shared.outgoing.append(&mut self.pending);
        }
        self.session.changed.notify_waiters();
        Ok(())
    }

    fn stream_header(&self, _from: &str, _id: &str, _to: Option<&str>) -> String {
        // BOSH carries the stream header's information in the session creation response.
        String::new()
    }

    fn stream_footer(&self) -> &'static str {
        ""
    }

    fn restart(&mut self) {}

    fn is_secure(&self) -> bool {
        self.secure
    }

    fn peer_ip(&self) -> IpAddr {
        self.peer
    }

    fn check_header(
        &self,
        _: &str,
        _: &str,
        _: Option<&str>,
    ) -> Option<(StreamCondition, &'static str)> {
        None
    }

    async fn close(&mut self) {
        if let Ok(mut shared) = self.session.shared.lock() {
            shared.terminated = true;
        }
        self.session.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the shortcut reads is what the parser reads; what it does not take, the parser
    /// decides on.
    #[test]
    fn empty_polls_read_as_the_parser_reads_them() {
        let limits = ParserLimits::default();
        let parsed = |text: &str| {
            parse_with_parser(text.as_bytes(), &limits, TreeLimits::default()).map(
                |(mut attributes, children)| {
                    attributes.sort();
                    (attributes, children.len())
                },
            )
        };
        for taken in [
            "<body rid='10' xmlns='http://jabber.org/protocol/httpbind' sid='ab12'/>",
            "<body xmlns=\"http://jabber.org/protocol/httpbind\" rid=\"11\" sid=\"x\"></body>",
            " <body\n rid='12'  sid='s' xmlns='http://jabber.org/protocol/httpbind' type='terminate' />\r\n",
            "<body rid='1>' xmlns='http://jabber.org/protocol/httpbind'/>",
        ] {
            let mut fast = empty_poll(taken.as_bytes()).unwrap_or_else(|| panic!("{taken}"));
            fast.sort();
            assert_eq!(Ok((fast, 0)), parsed(taken), "{taken}");
        }
        for left in [
            "<body rid='1' sid='s'/>",
            "<body rid='1' xmlns='urn:other'/>",
            "<body rid='1' xmlns='http://jabber.org/protocol/httpbind' rid='2'/>",
            "<body rid='&amp;' xmlns='http://jabber.org/protocol/httpbind'/>",
            "<body rid='1' xmpp:restart='true' xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh'/>",
            "<body rid='1' xml:lang='en' xmlns='http://jabber.org/protocol/httpbind'/>",
            "<bodyx rid='1' xmlns='http://jabber.org/protocol/httpbind'/>",
            "<body rid='1'xmlns='http://jabber.org/protocol/httpbind'/>",
            "<body rid = '1' xmlns='http://jabber.org/protocol/httpbind'/>",
            "<body rid='1' xmlns='http://jabber.org/protocol/httpbind'/></body>",
            "<body rid='1 xmlns='http://jabber.org/protocol/httpbind'/>",
            "<?xml version='1.0'?><body rid='1' xmlns='http://jabber.org/protocol/httpbind'/>",
            "<body rid='1' xmlns='http://jabber.org/protocol/httpbind'><presence/></body>",
            "<body rid='1\t' xmlns='http://jabber.org/protocol/httpbind'/>",
            "<body/>",
        ] {
            assert_eq!(empty_poll(left.as_bytes()), None, "{left}");
        }
        // Past the attribute limit, the parser refuses as before.
        let few = ParserLimits {
            max_attributes: 1,
            ..ParserLimits::default()
        };
        let poll = b"<body rid='1' sid='s' xmlns='http://jabber.org/protocol/httpbind'/>";
        assert!(parse_request(poll, &few, TreeLimits::default()).is_err());
    }
}
