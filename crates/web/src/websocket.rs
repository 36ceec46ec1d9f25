//! XMPP over WebSocket (RFC 7395): the `xmpp` subprotocol, one element per text message,
//! `<open/>`/`<close/>` framing, a message size limit, and pings that keep idle connections
//! alive. This transport only moves elements; the session logic is the same as for TCP.

use crate::{ClientAddress, WebState};
use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use salon_server::session::{parser_limits, ConnectionGuard, ReadError, Transport};
use salon_server::stanza::{ns, StreamCondition};
use salon_xml::{StreamEvent, StreamParseError, StreamParser};
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

pub const NS_FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";

/// Wraps the frames so that elements without their own `xmlns` are in `jabber:client`.
const WRAPPER: &str = "<stream xmlns='jabber:client'>";

pub async fn upgrade(
    State(state): State<WebState>,
    client: ClientAddress,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    // RFC 7395 §3.2: the client must offer the `xmpp` subprotocol.
    let offers_xmpp = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == "xmpp");
    if !offers_xmpp {
        return (
            StatusCode::BAD_REQUEST,
            "the xmpp WebSocket subprotocol is required\n",
        )
            .into_response();
    }
    let server = state.server.clone();
    let Some(guard) = ConnectionGuard::admit(&server, client.ip) else {
        tracing::warn!(peer = %client.ip, "too many connections from this address; WebSocket refused");
        return (StatusCode::TOO_MANY_REQUESTS, "too many connections\n").into_response();
    };
    let secure =
        client.secure || (client.ip.is_loopback() && state.server.config.http.loopback_is_secure);
    let max_message = server.config.http.max_websocket_message;
    upgrade
        .protocols(["xmpp"])
        .max_message_size(max_message)
        .max_frame_size(max_message)
        // tungstenite's defaults (128 KiB each) would dwarf everything else an idle
        // connection holds; larger messages still arrive, the buffer grows for them.
        .read_buffer_size(8 * 1024)
        .write_buffer_size(8 * 1024)
        .on_upgrade(move |socket| async move {
            let _guard = guard;
            let transport = WebSocketTransport::new(socket, &server, client.ip, secure);
            salon_server::session::run(server, Box::new(transport)).await;
        })
}

pub struct WebSocketTransport {
    socket: WebSocket,
    parser: StreamParser,
    /// Elements waiting for the next flush, one WebSocket message each.
    pending: Vec<String>,
    current: Vec<u8>,
    peer: IpAddr,
    secure: bool,
    ping: tokio::time::Interval,
    /// What the closing frame says, when not a normal closure.
    close_frame: Option<CloseFrame>,
}

impl WebSocketTransport {
    fn new(
        socket: WebSocket,
        server: &Arc<salon_server::Server>,
        peer: IpAddr,
        secure: bool,
    ) -> Self {
        let period = Duration::from_secs(server.config.http.websocket_ping_interval.max(1));
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut transport = WebSocketTransport {
            socket,
            parser: StreamParser::new(parser_limits(server))
                .with_tree_limits(server.config.limits.tree_limits()),
            pending: Vec::new(),
            current: Vec::new(),
            peer,
            secure,
            ping,
            close_frame: None,
        };
        transport.restart();
        transport
    }

    /// An error from the WebSocket layer. A message over `http.max_websocket_message` is the
    /// client's fault: a policy-violation stream error, then close code 1009 (message too big).
    fn read_error(&mut self, error: axum::Error) -> ReadError {
        let error = error.into_inner();
        if let Some(tungstenite::Error::Capacity(capacity)) =
            error.downcast_ref::<tungstenite::Error>()
        {
            tracing::info!(peer = %self.peer, error = %capacity, "WebSocket message too large");
            self.close_frame = Some(CloseFrame {
                code: close_code::SIZE,
                reason: "message too big".into(),
            });
            return ReadError::Parse(StreamParseError::PolicyViolation(
                "the WebSocket message is larger than this server accepts".into(),
            ));
        }
        ReadError::Io(io::Error::other(error))
    }

    /// Parse one WebSocket message: exactly one complete element (RFC 7395 §3.3.3).
    fn parse_message(
        &mut self,
        text: &str,
        events: &mut Vec<StreamEvent>,
    ) -> Result<(), ReadError> {
        let mut parsed = Vec::new();
        self.parser
            .feed(text.as_bytes(), &mut parsed)
            .map_err(ReadError::Parse)?;
        if self.parser.in_stanza() {
            return Err(ReadError::Parse(StreamParseError::NotWellFormed(
                "a WebSocket message must hold one complete element".into(),
            )));
        }
        for event in parsed {
            match event {
                StreamEvent::Stanza(element) if element.is("open", NS_FRAMING) => {
                    events.push(StreamEvent::StreamOpen {
                        namespace: NS_FRAMING.to_string(),
                        name: "open".to_string(),
                        attributes: element
                            .attrs()
                            .iter()
                            .map(|((_, name), value)| (name.to_string(), value.clone()))
                            .collect(),
                        default_namespace: Some(ns::CLIENT.to_string()),
                    });
                }
                StreamEvent::Stanza(element) if element.is("close", NS_FRAMING) => {
                    events.push(StreamEvent::StreamClose);
                }
                StreamEvent::Stanza(element) => events.push(StreamEvent::Stanza(element)),
                // The wrapper's own open and close are ours, not the client's.
                StreamEvent::StreamOpen { .. } | StreamEvent::StreamClose => {}
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
        loop {
            let message = match self.socket.poll_next_unpin(cx) {
                Poll::Ready(message) => message,
                Poll::Pending => break,
            };
            return Poll::Ready(match message {
                Some(Ok(Message::Text(text))) => self.parse_message(text.as_str(), events),
                Some(Ok(Message::Binary(_))) => {
                    Err(ReadError::Parse(StreamParseError::NotWellFormed(
                        "XMPP over WebSocket uses text messages".into(),
                    )))
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Close(_))) | None => Err(ReadError::Closed),
                Some(Err(e)) => Err(self.read_error(e)),
            });
        }
        if self.ping.poll_tick(cx).is_ready() {
            // A keepalive, best effort: a socket that cannot take it now is already behind,
            // and the next tick tries again.
            match self.socket.poll_ready_unpin(cx) {
                Poll::Ready(Ok(())) => {
                    if self
                        .socket
                        .start_send_unpin(Message::Ping(Vec::new().into()))
                        .is_err()
                    {
                        return Poll::Ready(Err(ReadError::Closed));
                    }
                    if let Poll::Ready(Err(_)) = self.socket.poll_flush_unpin(cx) {
                        return Poll::Ready(Err(ReadError::Closed));
                    }
                }
                Poll::Ready(Err(_)) => return Poll::Ready(Err(ReadError::Closed)),
                Poll::Pending => {}
            }
            // Register for the next tick.
            let _ = self.ping.poll_tick(cx);
        }
        Poll::Pending
    }

    fn out(&mut self) -> &mut Vec<u8> {
        &mut self.current
    }

    fn end_element(&mut self) {
        let bytes = std::mem::take(&mut self.current);
        self.pending.push(
            String::from_utf8(bytes)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        );
    }

    async fn flush(&mut self) -> io::Result<()> {
        for frame in self.pending.drain(..) {
            self.socket
                .feed(Message::Text(frame.into()))
                .await
                .map_err(io::Error::other)?;
        }
        self.socket.flush().await.map_err(io::Error::other)
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
        Some(self.parser.bytes_fed())
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
        let frame = self.close_frame.take();
        let _ = self.socket.send(Message::Close(frame)).await;
    }
}
