//! XMPP over WebSocket (RFC 7395): the `xmpp` subprotocol, one element per text message,
//! `<open/>`/`<close/>` framing, a message size limit, and pings that keep idle connections
//! alive. This transport only moves elements; the session logic is the same as for TCP.

use crate::ws_frame::{self, FrameError, Reader, Received, HEADER_ROOM};
use crate::{ClientAddress, WebState};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use salon_server::session::{parser_limits, ConnectionGuard, ReadError, Transport};
use salon_server::session_handle::DirectWrite;
use salon_server::stanza::{ns, StreamCondition};
use salon_xml::{StreamEvent, StreamParseError, StreamParser};
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tungstenite::protocol::frame::coding::{CloseCode, Control, OpCode};

pub const NS_FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";

/// Wraps the frames so that elements without their own `xmlns` are in `jabber:client`.
const WRAPPER: &str = "<stream xmlns='jabber:client'>";

/// How long, and how much, a closing connection keeps reading so that its last words arrive.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1024 * 1024;

/// Bytes a connection may keep between reads for a frame that has not fully arrived, beyond
/// the message limit (the frame header).
const FRAME_HEADER_MAX: usize = 14;

thread_local! {
    /// Shared by every WebSocket served on this worker thread and used only within one poll,
    /// as for TCP: an idle connection holds no read buffer of its own.
    static READ_BUFFER: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0u8; 16 * 1024].into_boxed_slice());
}

fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case(token))
}

/// The opening handshake (RFC 6455 §4.2), then the session over the upgraded connection.
pub async fn upgrade(
    State(state): State<WebState>,
    client: ClientAddress,
    mut request: Request,
) -> Response {
    let headers = request.headers();
    if !has_token(headers, header::CONNECTION, "upgrade")
        || !has_token(headers, header::UPGRADE, "websocket")
    {
        return (
            StatusCode::UPGRADE_REQUIRED,
            [(header::UPGRADE, "websocket")],
            "this is a WebSocket endpoint (RFC 7395)\n",
        )
            .into_response();
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION) != Some(&HeaderValue::from_static("13")) {
        return (
            StatusCode::UPGRADE_REQUIRED,
            [(header::SEC_WEBSOCKET_VERSION, "13")],
            "WebSocket version 13 (RFC 6455) is required\n",
        )
            .into_response();
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return (StatusCode::BAD_REQUEST, "Sec-WebSocket-Key is missing\n").into_response();
    };
    let accept = ws_frame::accept_key(key.as_bytes());
    // RFC 7395 §3.2: the client must offer the `xmpp` subprotocol.
    if !has_token(headers, header::SEC_WEBSOCKET_PROTOCOL, "xmpp") {
        return (
            StatusCode::BAD_REQUEST,
            "the xmpp WebSocket subprotocol is required\n",
        )
            .into_response();
    }
    let Some(on_upgrade) = request
        .extensions_mut()
        .remove::<hyper::upgrade::OnUpgrade>()
    else {
        return (
            StatusCode::BAD_REQUEST,
            "this connection cannot be upgraded\n",
        )
            .into_response();
    };
    let server = state.server.clone();
    let Some(guard) = ConnectionGuard::admit(&server, client.ip) else {
        tracing::warn!(peer = %client.ip, "too many connections from this address; WebSocket refused");
        return (StatusCode::TOO_MANY_REQUESTS, "too many connections\n").into_response();
    };
    let secure =
        client.secure || (client.ip.is_loopback() && state.server.config.http.loopback_is_secure);
    tokio::spawn(async move {
        let _guard = guard;
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                tracing::debug!(peer = %client.ip, error = %e, "WebSocket upgrade failed");
                return;
            }
        };
        let (upgraded, shared) = crate::ws_direct::share_plain_socket(upgraded);
        let mut transport = WebSocketTransport::new(upgraded, &server, client.ip, secure);
        transport.lendable = shared
            .map(|socket| Arc::new(crate::ws_direct::FrameWriter(socket)) as Arc<dyn DirectWrite>);
        salon_server::session::run(server, Box::new(transport)).await;
    });
    (
        StatusCode::SWITCHING_PROTOCOLS,
        [
            (header::CONNECTION, HeaderValue::from_static("upgrade")),
            (header::UPGRADE, HeaderValue::from_static("websocket")),
            (
                header::SEC_WEBSOCKET_ACCEPT,
                HeaderValue::from_str(&accept).expect("base64 is a valid header value"),
            ),
            (
                header::SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_static("xmpp"),
            ),
        ],
    )
        .into_response()
}

type Io = crate::ws_direct::WsIo;

pub struct WebSocketTransport {
    io: Io,
    parser: StreamParser,
    frames: Reader,
    max_message: usize,
    /// Whole frames waiting for the next flush, written with one system call; the element
    /// being written is the tail after `element_start`.
    outgoing: Vec<u8>,
    element_start: Option<usize>,
    /// Bytes of `outgoing` already written by a flush that did not finish.
    written: usize,
    /// Pongs and keepalive pings, written when no element frame is half-written.
    control: Vec<u8>,
    peer: IpAddr,
    secure: bool,
    ping: tokio::time::Interval,
    /// How long a frame or a fragmented message may take to arrive once begun, and since when
    /// the current one has been arriving: a client trickling one byte at a time (slowloris)
    /// would otherwise hold the connection forever. Checked at each keepalive tick.
    message_timeout: Duration,
    midway_since: Option<tokio::time::Instant>,
    /// What the closing frame says, when not a normal closure.
    close_code: Option<(CloseCode, &'static str)>,
    /// A writer for the plain TCP socket under the connection, which the session may lend to
    /// delivering tasks (`crate::ws_direct`), and whether it is lent now: pongs and pings wait.
    lendable: Option<Arc<dyn DirectWrite>>,
    lent: bool,
}

impl WebSocketTransport {
    fn new(io: Io, server: &Arc<salon_server::Server>, peer: IpAddr, secure: bool) -> Self {
        let period = Duration::from_secs(server.config.http.websocket_ping_interval.max(1));
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut transport = WebSocketTransport {
            io,
            parser: StreamParser::new(parser_limits(server))
                .with_tree_limits(server.config.limits.tree_limits()),
            frames: Reader::default(),
            // RFC 7395 §3.3.3: a message is one element, so one larger than a stanza may be
            // can be refused as soon as that much of it has come (fragmented or not), without
            // buffering up to the larger HTTP limit first.
            max_message: server
                .config
                .http
                .max_websocket_message
                .min(server.config.limits.max_stanza_bytes),
            outgoing: Vec::new(),
            element_start: None,
            written: 0,
            control: Vec::new(),
            peer,
            secure,
            ping,
            message_timeout: Duration::from_secs(server.config.http.idle_timeout),
            midway_since: None,
            close_code: None,
            lendable: None,
            lent: false,
        };
        transport.restart();
        transport
    }

    /// A framing error: close with its code (RFC 6455 §7.4.1). A message over the stanza
    /// limit is the client's fault: a policy-violation stream error, then close code 1009
    /// (message too big); so is one that takes too long to arrive (close code 1008).
    fn frame_error(&mut self, error: FrameError) -> ReadError {
        tracing::info!(peer = %self.peer, reason = error.reason, "WebSocket framing error");
        self.close_code = Some((error.code, error.reason));
        match error.code {
            CloseCode::Size => ReadError::Parse(StreamParseError::PolicyViolation(
                "the WebSocket message is larger than this server accepts".into(),
            )),
            CloseCode::Policy => ReadError::Parse(StreamParseError::PolicyViolation(
                "the WebSocket message took too long to arrive".into(),
            )),
            CloseCode::Unsupported => ReadError::Parse(StreamParseError::NotWellFormed(
                "XMPP over WebSocket uses text messages".into(),
            )),
            _ => ReadError::Io(io::Error::new(io::ErrorKind::InvalidData, error.reason)),
        }
    }

    /// Parse one WebSocket message: exactly one complete element (RFC 7395 §3.3.3).
    fn parse_message(
        parser: &mut StreamParser,
        text: &[u8],
        events: &mut Vec<StreamEvent>,
    ) -> Result<(), ReadError> {
        if std::str::from_utf8(text).is_err() {
            return Err(ReadError::Parse(StreamParseError::NotWellFormed(
                "a WebSocket text message must be UTF-8".into(),
            )));
        }
        let first = events.len();
        parser.feed(text, events).map_err(ReadError::Parse)?;
        if parser.in_stanza() {
            return Err(ReadError::Parse(StreamParseError::NotWellFormed(
                "a WebSocket message must hold one complete element".into(),
            )));
        }
        let mut kept = first;
        for i in first..events.len() {
            let event = std::mem::replace(&mut events[i], StreamEvent::StreamClose);
            let event = match event {
                StreamEvent::Stanza(element) if element.is("open", NS_FRAMING) => {
                    StreamEvent::StreamOpen {
                        namespace: NS_FRAMING.to_string(),
                        name: "open".to_string(),
                        attributes: element
                            .attrs()
                            .iter()
                            .map(|((_, name), value)| (name.to_string(), value.clone()))
                            .collect(),
                        default_namespace: Some(ns::CLIENT.to_string()),
                    }
                }
                StreamEvent::Stanza(element) if element.is("close", NS_FRAMING) => {
                    StreamEvent::StreamClose
                }
                StreamEvent::Stanza(element) => StreamEvent::Stanza(element),
                // The wrapper's own open and close are ours, not the client's.
                StreamEvent::StreamOpen { .. } | StreamEvent::StreamClose => continue,
            };
            events[kept] = event;
            kept += 1;
        }
        events.truncate(kept);
        Ok(())
    }

    /// Handle every whole frame at the front of `input`; returns the bytes used.
    fn take_frames(
        &mut self,
        input: &mut [u8],
        events: &mut Vec<StreamEvent>,
    ) -> Result<usize, ReadError> {
        let mut used = 0;
        loop {
            let next = self.frames.next(&mut input[used..], self.max_message);
            let (size, received) = match next {
                Ok(Some(frame)) => frame,
                Ok(None) => return Ok(used),
                Err(error) => return Err(self.frame_error(error)),
            };
            match received {
                Received::Text(text) => {
                    Self::parse_message(&mut self.parser, text, events)?;
                    self.frames.message_done();
                    // The next message's time starts when it does, not with this one's.
                    self.midway_since = None;
                }
                Received::Ping(payload) => {
                    if self.control.len() < 4 * 1024 {
                        ws_frame::push_frame(
                            &mut self.control,
                            OpCode::Control(Control::Pong),
                            payload,
                        );
                    }
                }
                Received::Close(_) => return Err(ReadError::Closed),
                Received::Pong | Received::Partial => {}
            }
            used += size;
        }
    }

    /// Read what the socket has (into the worker's buffer) and handle its whole frames,
    /// keeping an incomplete frame's bytes for the next read.
    fn poll_frames(
        &mut self,
        cx: &mut Context<'_>,
        events: &mut Vec<StreamEvent>,
    ) -> Poll<Result<(), ReadError>> {
        READ_BUFFER.with(|cell| {
            let mut buffer = cell.borrow_mut();
            let mut read = ReadBuf::new(&mut buffer[..]);
            match Pin::new(&mut self.io).poll_read(cx, &mut read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(ReadError::Io(e))),
                Poll::Ready(Ok(())) if read.filled().is_empty() => {
                    return Poll::Ready(Err(ReadError::Closed))
                }
                Poll::Ready(Ok(())) => {}
            }
            let filled = read.filled().len();
            let result = if self.frames.pending.is_empty() {
                let input = &mut buffer[..filled];
                self.take_frames(input, events).map(|used| {
                    self.frames.pending.extend_from_slice(&input[used..]);
                })
            } else {
                let mut input = std::mem::take(&mut self.frames.pending);
                input.extend_from_slice(&buffer[..filled]);
                self.take_frames(&mut input, events).map(|used| {
                    input.drain(..used);
                    self.frames.pending = input;
                })
            };
            if self.frames.pending.len() > self.max_message + FRAME_HEADER_MAX {
                return Poll::Ready(Err(self.frame_error(FrameError {
                    code: CloseCode::Size,
                    reason: "message too big",
                })));
            }
            if self.frames.pending.is_empty() {
                // Between frames, most often idle: keep no memory for it.
                self.frames.pending = Vec::new();
                if !self.parser.in_stanza() {
                    self.parser.release_temporaries();
                }
            }
            Poll::Ready(result)
        })
    }

    /// Write pending pongs and pings without waiting, unless an element frame is half-written
    /// (control frames may not go inside another frame). Errors end the stream.
    fn poll_write_control(&mut self, cx: &mut Context<'_>) -> Result<(), ReadError> {
        while !self.control.is_empty() && self.outgoing.is_empty() {
            match Pin::new(&mut self.io).poll_write(cx, &self.control) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Err(ReadError::Closed),
                Poll::Ready(Ok(n)) => {
                    self.control.drain(..n);
                }
                // The next read wake-up tries again.
                Poll::Pending => return Ok(()),
            }
        }
        if self.control.is_empty() && self.control.capacity() > 0 {
            self.control = Vec::new();
            if let Poll::Ready(Err(_)) = Pin::new(&mut self.io).poll_flush(cx) {
                return Err(ReadError::Closed);
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Transport for WebSocketTransport {
    fn poll_read_events(
        &mut self,
        cx: &mut Context<'_>,
        events: &mut Vec<StreamEvent>,
    ) -> Poll<Result<(), ReadError>> {
        let polled = loop {
            let first = events.len();
            match self.poll_frames(cx, events) {
                // Only control frames: read on. A fragment or part of a frame goes back to the
                // session with no events, so that its limits on unauthenticated peers count
                // the bytes held for it (`received_bytes`).
                Poll::Ready(Ok(())) if events.len() == first && !self.frames.is_midway() => {
                    continue
                }
                other => break other,
            }
        };
        if !self.frames.is_midway() {
            self.midway_since = None;
        } else if self.midway_since.is_none() {
            self.midway_since = Some(tokio::time::Instant::now());
        }
        if self.ping.poll_tick(cx).is_ready() {
            if self
                .midway_since
                .is_some_and(|since| since.elapsed() > self.message_timeout)
            {
                return Poll::Ready(Err(self.frame_error(FrameError {
                    code: CloseCode::Policy,
                    reason: "message not finished in time",
                })));
            }
            // A keepalive, best effort: a socket that cannot take it now is already behind,
            // and the next tick tries again.
            if self.control.is_empty() {
                ws_frame::push_frame(&mut self.control, OpCode::Control(Control::Ping), &[]);
            }
            // Register for the next tick.
            let _ = self.ping.poll_tick(cx);
        }
        if self.lent {
            // Delivering tasks write frames now: a control frame may not cut into theirs.
            // Hand the socket back to the session to write it (the session wakes on this).
            if !self.control.is_empty() && polled.is_pending() {
                return Poll::Ready(Ok(()));
            }
            return polled;
        }
        if let Err(e) = self.poll_write_control(cx) {
            return Poll::Ready(Err(e));
        }
        polled
    }

    fn direct_writer(&mut self) -> Option<Arc<dyn DirectWrite>> {
        let idle = self.outgoing.is_empty() && self.control.is_empty() && self.written == 0;
        let writer = self.lendable.as_ref().filter(|_| idle)?.clone();
        self.lent = true;
        Some(writer)
    }

    fn reclaim(&mut self, rest: Vec<u8>) {
        self.lent = false;
        // Already framed: the tail of a frame a direct write began.
        self.outgoing.splice(0..0, rest);
    }

    fn out(&mut self) -> &mut Vec<u8> {
        if self.element_start.is_none() {
            self.element_start = Some(self.outgoing.len());
            self.outgoing.resize(self.outgoing.len() + HEADER_ROOM, 0);
        }
        &mut self.outgoing
    }

    fn end_element(&mut self) {
        if let Some(start) = self.element_start.take() {
            ws_frame::finish_text_frame(&mut self.outgoing, start);
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.end_element();
        if !self.control.is_empty() && self.written == 0 {
            // A pong or ping waiting: it goes first, whole, before any element frame.
            let control = std::mem::take(&mut self.control);
            self.outgoing.splice(0..0, control);
        }
        while self.written < self.outgoing.len() {
            let n = self.io.write(&self.outgoing[self.written..]).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.written += n;
        }
        self.written = 0;
        // Idle connections hold no write buffer; a busy one reuses a small one.
        if self.outgoing.capacity() > 4096 {
            self.outgoing = Vec::new();
        } else {
            self.outgoing.clear();
        }
        self.io.flush().await
    }

    fn stream_header(&self, from: &str, id: &str, _to: Option<&str>) -> String {
        format!(
            "<open xmlns='{NS_FRAMING}' id='{id}' from='{}' version='1.0' xml:lang='en'/>",
            salon_xml::escape(from)
        )
    }

    fn stream_footer(&self) -> &'static str {
        "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>"
    }

    fn restart(&mut self) {
        self.parser.reset();
        let mut ignored = Vec::new();
        let _ = self.parser.feed(WRAPPER.as_bytes(), &mut ignored);
    }

    fn is_secure(&self) -> bool {
        self.secure
    }

    fn received_bytes(&self) -> Option<u64> {
        // Fragments and partial frames count as soon as they are held, not once parsed.
        Some(self.parser.bytes_fed() + self.frames.buffered() as u64)
    }

    fn peer_ip(&self) -> IpAddr {
        self.peer
    }

    fn check_header(
        &self,
        namespace: &str,
        name: &str,
        _default_namespace: Option<&str>,
    ) -> Option<(StreamCondition, &'static str)> {
        (name != "open" || namespace != NS_FRAMING).then_some((
            StreamCondition::InvalidNamespace,
            "WebSocket streams open with <open xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>",
        ))
    }

    async fn close(&mut self) {
        let (code, reason) = self.close_code.take().unwrap_or((CloseCode::Normal, ""));
        let mut payload = u16::from(code).to_be_bytes().to_vec();
        payload.extend_from_slice(reason.as_bytes());
        // Whatever was half-written is lost with the connection; the close frame goes last.
        self.element_start = None;
        self.written = 0;
        self.outgoing.clear();
        ws_frame::push_frame(
            &mut self.outgoing,
            OpCode::Control(Control::Close),
            &payload,
        );
        let _ = self.flush().await;
        let _ = self.io.shutdown().await;
        // A lingering close, as for TCP (`salon_server::session::tcp`): a client cut off
        // while it was still sending (a frame over the limit, a flood) has unread bytes here,
        // and closing a socket with unread input makes the kernel answer with a reset, which
        // destroys what the client has not read yet: the stream error and the close frame
        // with the code that says why. Read (and drop) what still comes, within bounds,
        // until the client closes its side.
        let drain = async {
            let mut scratch = [0u8; 4096];
            let mut drained = 0usize;
            while drained < LINGER_BYTES {
                match self.io.read(&mut scratch).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => drained += n,
                }
            }
        };
        let _ = tokio::time::timeout(LINGER_TIME, drain).await;
    }
}
