//! What a session needs from a transport (TCP, WebSocket, BOSH): parsed input, raw output,
//! TLS; and the stand-in for a transport that went to a resumed session (RFC 6120 §4, XEP-0198).

use super::sasl::common::ChannelBindings;
use crate::stanza::StreamCondition;
use salon_xml::{StreamEvent, StreamParseError};
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

#[derive(Debug)]
pub enum ReadError {
    Io(io::Error),
    Parse(StreamParseError),
    Closed,
    /// A stanza begun did not end within this long (`limits.stanza_timeout`).
    StanzaTimeout(std::time::Duration),
}

/// What a session needs from a transport: parsed input, raw output, and TLS.
#[async_trait::async_trait]
pub trait Transport: Send {
    /// Append what the input received so far completes, or register for more. A poll rather
    /// than an `async fn`: the session polls it on every wake-up (each delivery to this client),
    /// and an async trait method would allocate a future each time.
    fn poll_read_events(
        &mut self,
        cx: &mut Context<'_>,
        events: &mut Vec<StreamEvent>,
    ) -> Poll<Result<(), ReadError>>;
    /// Where the next outgoing element is written. Elements accumulate until
    /// [`flush`](Self::flush), so a batch costs one system call.
    fn out(&mut self) -> &mut Vec<u8>;
    /// Marks the end of one element written to [`out`](Self::out) (a WebSocket frame boundary).
    fn end_element(&mut self);
    /// Write everything buffered.
    async fn flush(&mut self) -> io::Result<()>;
    /// The server's stream header (`<stream:stream>` on TCP, `<open/>` on WebSocket).
    fn stream_header(&self, from: &str, id: &str, to: Option<&str>) -> String;
    /// What closes the stream (`</stream:stream>` or `<close/>`).
    fn stream_footer(&self) -> &'static str;
    /// Forget the parser state for a stream restart.
    fn restart(&mut self);
    fn is_secure(&self) -> bool;
    /// Only TCP can upgrade to TLS; the others are encrypted (or not) by the HTTP layer.
    fn can_starttls(&self) -> bool {
        false
    }
    async fn starttls(&mut self, _config: Arc<rustls::ServerConfig>) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }
    /// What SCRAM-…-PLUS can bind to; nothing where this process does not hold the TLS session.
    fn channel_bindings(&self) -> ChannelBindings {
        ChannelBindings::default()
    }
    /// The client's address, for limits and logs.
    fn peer_ip(&self) -> IpAddr;
    /// XML bytes received on this connection so far, stream restarts included; `None` where
    /// the transport bounds unauthenticated peers by other means (BOSH's HTTP limits).
    fn received_bytes(&self) -> Option<u64> {
        None
    }
    /// Whether the client's stream header is acceptable to this transport: its element and
    /// namespaces (RFC 6120 §4.8, RFC 7395 §3.3.2). `None` when it is; otherwise the stream
    /// error condition and text.
    fn check_header(
        &self,
        namespace: &str,
        name: &str,
        default_namespace: Option<&str>,
    ) -> Option<(StreamCondition, &'static str)>;
    /// A writer that delivering tasks may use while the session waits with nothing to write
    /// (`SessionHandle::open_direct`); `None` where writes need the session's task (TLS, BOSH)
    /// or where output is waiting.
    fn direct_writer(&mut self) -> Option<Arc<dyn crate::session_handle::DirectWrite>> {
        None
    }
    /// The session took the socket back; `rest` is the part of a stanza a direct write left
    /// unwritten (already framed), which goes out before anything else.
    fn reclaim(&mut self, _rest: Vec<u8>) {}
    /// Close the connection after the last flush.
    async fn close(&mut self) {}
}

/// Stands in for a transport that has been handed over or is gone.
pub(super) struct NoTransport {
    pub(super) out: Vec<u8>,
}

#[async_trait::async_trait]
impl Transport for NoTransport {
    fn poll_read_events(
        &mut self,
        _: &mut Context<'_>,
        _: &mut Vec<StreamEvent>,
    ) -> Poll<Result<(), ReadError>> {
        Poll::Ready(Err(ReadError::Closed))
    }
    fn out(&mut self) -> &mut Vec<u8> {
        self.out.clear();
        &mut self.out
    }
    fn end_element(&mut self) {
        self.out.clear();
    }
    async fn flush(&mut self) -> io::Result<()> {
        Err(io::ErrorKind::NotConnected.into())
    }
    fn stream_header(&self, _: &str, _: &str, _: Option<&str>) -> String {
        String::new()
    }
    fn stream_footer(&self) -> &'static str {
        ""
    }
    fn restart(&mut self) {}
    fn is_secure(&self) -> bool {
        false
    }
    fn peer_ip(&self) -> IpAddr {
        IpAddr::from([0, 0, 0, 0])
    }
    fn check_header(
        &self,
        _: &str,
        _: &str,
        _: Option<&str>,
    ) -> Option<(StreamCondition, &'static str)> {
        None
    }
}
