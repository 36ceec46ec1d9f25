//! The TCP transport for client streams: plain with STARTTLS (RFC 6120 §5) or TLS from the first
//! byte (XEP-0368). It only moves bytes; stream logic lives in the session.

use super::shared_socket::SharedTcp;
use super::{ReadError, Transport};
use crate::server::Server;
use crate::session::sasl::common::ChannelBindings;
use crate::session_handle::DirectWrite;
use crate::stanza::StreamCondition;
use salon_xml::{ParserLimits, StreamEvent, StreamParser, TreeLimits};
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How long, and how much, a closing connection keeps reading so that its last words arrive.
const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(2);
const LINGER_BYTES: usize = 1024 * 1024;

thread_local! {
    /// Shared by every connection served on this worker thread; used only inside one poll.
    static READ_BUFFER: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0u8; 16 * 1024].into_boxed_slice());
}

enum Stream {
    /// Shared with the session's handle while it is lent for direct writes.
    Plain(SharedTcp),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only while STARTTLS swaps one for the other.
    Upgrading,
}

pub struct TcpTransport {
    stream: Stream,
    parser: StreamParser,

    /// Elements waiting for the next flush.
    outgoing: Vec<u8>,
    peer: SocketAddr,
    server_end_point: Vec<u8>,
    /// How long a stanza may take to arrive once begun (`limits.stanza_timeout`), and when the
    /// one under way runs out: a client trickling a stanza one byte at a time (slowloris) keeps
    /// bytes coming, so no idle bound would end it. One timer for a connection whose reads end
    /// inside stanzas (reset for each new one), none for the usual stanza that comes whole.
    stanza_timeout: Duration,
    stanza_deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// A read left a new stanza begun: its clock starts when the session reads again, so that
    /// the time spent on the complete stanzas before it (throttled to
    /// `limits.stanzas_per_second`, when the server is not reading) is not counted against it.
    stanza_clock_due: bool,
    /// The writer lent to delivering tasks, once the session first lends the socket.
    lendable: Option<Arc<dyn DirectWrite>>,
}

impl TcpTransport {
    fn new(
        stream: Stream,
        peer: SocketAddr,
        limits: ParserLimits,
        tree_limits: TreeLimits,
        server_end_point: Vec<u8>,
        stanza_timeout: Duration,
    ) -> Self {
        TcpTransport {
            stream,
            parser: StreamParser::new(limits).with_tree_limits(tree_limits),

            outgoing: Vec::new(),
            peer,
            server_end_point,
            stanza_timeout,
            stanza_deadline: None,
            stanza_clock_due: false,
            lendable: None,
        }
    }

    /// After a read: no timer when it left no stanza unfinished; a fresh one when the
    /// unfinished stanza is new (none was under way, or the read completed some, which ended
    /// the one under way).
    fn track_stanza(&mut self, completed_some: bool) {
        if !self.parser.stanza_begun() {
            self.stanza_deadline = None;
            self.stanza_clock_due = false;
        } else if completed_some || self.stanza_deadline.is_none() {
            self.stanza_clock_due = true;
        }
    }

    /// Whether the stanza under way has run out of time; registers for its wake-up otherwise,
    /// so that the session hears of it even when nothing more comes.
    fn poll_stanza_deadline(&mut self, cx: &mut Context<'_>) -> bool {
        if std::mem::take(&mut self.stanza_clock_due) {
            let due = tokio::time::Instant::now() + self.stanza_timeout;
            match self.stanza_deadline.as_mut() {
                Some(deadline) => deadline.as_mut().reset(due),
                None => self.stanza_deadline = Some(Box::pin(tokio::time::sleep_until(due))),
            }
        }
        self.stanza_deadline
            .as_mut()
            .is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready())
    }

    /// Forget the stanza timer (a stream restart).
    fn forget_stanza(&mut self) {
        self.stanza_deadline = None;
        self.stanza_clock_due = false;
    }
}

#[async_trait::async_trait]
impl Transport for TcpTransport {
    fn poll_read_events(
        &mut self,
        cx: &mut Context<'_>,
        events: &mut Vec<StreamEvent>,
    ) -> Poll<Result<(), ReadError>> {
        if self.poll_stanza_deadline(cx) {
            return Poll::Ready(Err(ReadError::StanzaTimeout(self.stanza_timeout)));
        }
        let known = events.len();
        let TcpTransport { stream, parser, .. } = self;
        // Read into the worker thread's buffer and parse at once, within one poll: an idle
        // connection then holds no read buffer of its own (most connections are idle).
        let polled = READ_BUFFER.with(|cell| {
            let mut buffer = cell.borrow_mut();
            let capacity = buffer.len();
            let polled = match stream {
                Stream::Plain(s) => {
                    let mut read = ReadBuf::new(&mut buffer[..]);
                    Pin::new(s)
                        .poll_read(cx, &mut read)
                        .map_ok(|()| read.filled().len())
                }
                Stream::Tls(s) => {
                    let mut read = ReadBuf::new(&mut buffer[..]);
                    Pin::new(s.as_mut())
                        .poll_read(cx, &mut read)
                        .map_ok(|()| read.filled().len())
                }
                Stream::Upgrading => return Poll::Ready(Err(ReadError::Closed)),
            };
            match polled {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Err(e)) => Poll::Ready(Err(ReadError::Io(e))),
                Poll::Ready(Ok(0)) => Poll::Ready(Err(ReadError::Closed)),
                Poll::Ready(Ok(n)) => {
                    let parsed = parser.feed(&buffer[..n], events).map_err(ReadError::Parse);
                    // A read that ended between stanzas most often leaves the connection
                    // idle: keep no scratch memory for it.
                    if !parser.in_stanza() && n < capacity {
                        parser.release_temporaries();
                    }
                    Poll::Ready(parsed)
                }
            }
        });
        if polled.is_ready() {
            self.track_stanza(events.len() > known);
        }
        polled
    }

    fn out(&mut self) -> &mut Vec<u8> {
        &mut self.outgoing
    }

    fn end_element(&mut self) {}

    async fn flush(&mut self) -> io::Result<()> {
        if self.outgoing.is_empty() {
            return Ok(());
        }
        let result = match &mut self.stream {
            Stream::Plain(s) => s.write_all(&self.outgoing).await,
            Stream::Tls(s) => match s.write_all(&self.outgoing).await {
                Ok(()) => s.flush().await,
                Err(e) => Err(e),
            },
            Stream::Upgrading => Err(io::ErrorKind::NotConnected.into()),
        };
        // Idle connections hold no write buffer; a busy one reuses a small one.
        if self.outgoing.capacity() > 4096 {
            self.outgoing = Vec::new();
        } else {
            self.outgoing.clear();
        }
        result
    }

    fn check_header(
        &self,
        namespace: &str,
        name: &str,
        default_namespace: Option<&str>,
    ) -> Option<(StreamCondition, &'static str)> {
        if name != "stream" || namespace != crate::stanza::ns::STREAM {
            return Some((
                StreamCondition::InvalidNamespace,
                "the stream element must be stream in http://etherx.jabber.org/streams",
            ));
        }
        if default_namespace != Some(crate::stanza::ns::CLIENT) {
            return Some((
                StreamCondition::InvalidNamespace,
                "client streams use the jabber:client namespace",
            ));
        }
        None
    }

    async fn close(&mut self) {
        match &mut self.stream {
            Stream::Plain(s) => {
                let _ = s.shutdown().await;
            }
            Stream::Tls(s) => {
                let _ = s.shutdown().await;
            }
            Stream::Upgrading => return,
        }
        // A lingering close: closing a socket with unread input makes the kernel answer with
        // a reset, and a reset destroys what the client has not read yet, the closing stream
        // error included. Read (and drop) what still comes, within bounds, until the client
        // closes its side.
        let drain = async {
            let mut scratch = [0u8; 4096];
            let mut drained = 0usize;
            while drained < LINGER_BYTES {
                let read = match &mut self.stream {
                    Stream::Plain(s) => s.read(&mut scratch).await,
                    Stream::Tls(s) => s.read(&mut scratch).await,
                    Stream::Upgrading => return,
                };
                match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => drained += n,
                }
            }
        };
        let _ = tokio::time::timeout(LINGER_TIME, drain).await;
    }

    fn stream_header(&self, from: &str, id: &str, to: Option<&str>) -> String {
        let to = to
            .map(|t| format!(" to='{}'", salon_xml::escape(t)))
            .unwrap_or_default();
        format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='{id}' from='{}'{to} version='1.0' xml:lang='en'>",
            salon_xml::escape(from)
        )
    }

    fn stream_footer(&self) -> &'static str {
        "</stream:stream>"
    }

    fn restart(&mut self) {
        self.parser.reset();
        self.forget_stanza();
    }

    fn is_secure(&self) -> bool {
        matches!(self.stream, Stream::Tls(_))
    }

    fn can_starttls(&self) -> bool {
        matches!(self.stream, Stream::Plain(_))
    }

    async fn starttls(&mut self, config: Arc<rustls::ServerConfig>) -> io::Result<()> {
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Upgrading) else {
            return Err(io::ErrorKind::InvalidInput.into());
        };
        // Lent only once bound, long after STARTTLS.
        let tcp = Arc::try_unwrap(tcp.0).map_err(|_| io::Error::other("the socket is lent"))?;
        let tls = TlsAcceptor::from(config).accept(tcp).await?;
        self.stream = Stream::Tls(Box::new(tls));
        self.parser.reset();
        self.forget_stanza();
        Ok(())
    }

    fn channel_bindings(&self) -> ChannelBindings {
        match &self.stream {
            Stream::Tls(tls) => ChannelBindings {
                tls_exporter: crate::tls::exporter_binding(tls.get_ref().1),
                tls_server_end_point: Some(self.server_end_point.clone()),
            },
            _ => ChannelBindings::default(),
        }
    }

    fn received_bytes(&self) -> Option<u64> {
        Some(self.parser.bytes_fed())
    }

    fn peer_ip(&self) -> IpAddr {
        self.peer.ip()
    }

    fn direct_writer(&mut self) -> Option<Arc<dyn DirectWrite>> {
        let Stream::Plain(s) = &self.stream else {
            return None;
        };
        if !self.outgoing.is_empty() {
            return None;
        }
        // Made once (the session is bound, past STARTTLS), lent at every wait.
        let writer = self
            .lendable
            .get_or_insert_with(|| Arc::new(PlainWriter(s.0.clone())));
        Some(writer.clone())
    }

    fn reclaim(&mut self, rest: Vec<u8>) {
        self.outgoing.splice(0..0, rest);
    }
}

/// A plain socket lent to delivering tasks: each stanza is one `sendmsg` of its parts.
struct PlainWriter(Arc<TcpStream>);

impl DirectWrite for PlainWriter {
    fn try_write(&self, parts: [&[u8]; 3], rest: &mut Vec<u8>) -> io::Result<()> {
        super::shared_socket::send_parts(&self.0, &parts, rest)
    }
}

/// Accept client connections until the task is aborted.
pub async fn accept_loop(server: Arc<Server>, listener: TcpListener, direct_tls: bool) {
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(guard) = super::ConnectionGuard::admit(&server, peer.ip()) else {
            tracing::warn!(%peer, "too many connections from this address; refused");
            continue;
        };
        let _ = socket.set_nodelay(true);
        let server = server.clone();
        tokio::spawn(async move {
            let _guard = guard;
            let limits = super::parser_limits(&server);
            let end_point = server.tls.server_end_point.clone();
            let stream = if direct_tls {
                let handshake = TlsAcceptor::from(server.tls.direct.clone()).accept(socket);
                match tokio::time::timeout(super::TLS_HANDSHAKE_TIMEOUT, handshake).await {
                    Ok(Ok(tls)) => Stream::Tls(Box::new(tls)),
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                }
            } else {
                Stream::Plain(SharedTcp(Arc::new(socket)))
            };
            let tree_limits = server.config.limits.tree_limits();
            let stanza_timeout = Duration::from_secs(server.config.limits.stanza_timeout);
            let transport =
                TcpTransport::new(stream, peer, limits, tree_limits, end_point, stanza_timeout);
            super::run(server, Box::new(transport)).await;
        });
    }
}
