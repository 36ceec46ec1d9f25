//! One server-to-server connection as XML (RFC 6120 §4): bytes over TCP, TLS taken up by
//! STARTTLS or from the first byte (XEP-0368), parsed by `salon-xml` with the s2s limits, and
//! the conversion between the `jabber:server` namespace of the wire and the `jabber:client`
//! one the rest of the server speaks (RFC 6120 §4.8.3: the same stanzas, another namespace).

use crate::stanza::ns;
use minidom::Element;
use rustls::pki_types::{CertificateDer, ServerName};
use salon_xml::{ParserLimits, StreamEvent, StreamParser};
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const SERVER: &str = "jabber:server";
pub const DIALBACK: &str = "jabber:server:dialback";
pub const TLS_NS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
pub const SASL_NS: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
pub const DIALBACK_FEATURE: &str = "urn:xmpp:features:dialback";

enum Io {
    Plain(TcpStream),
    Accepted(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    Connected(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    Gone,
}

/// Why a stream ended.
#[derive(Debug)]
pub enum StreamEnd {
    Io(io::Error),
    Parse(salon_xml::StreamParseError),
    /// The peer closed the stream or the connection.
    Closed,
}

impl std::fmt::Display for StreamEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StreamEnd::Io(e) => write!(f, "{e}"),
            StreamEnd::Parse(e) => write!(f, "{e}"),
            StreamEnd::Closed => write!(f, "closed by the peer"),
        }
    }
}

pub struct XmlStream {
    io: Io,
    parser: StreamParser,
    events: VecDeque<StreamEvent>,
    buffer: Box<[u8]>,
    pub peer: SocketAddr,
    /// When bytes were last written (whitespace keepalives go out after a quiet spell).
    pub last_write: tokio::time::Instant,
}

/// Dead connections are noticed: bytes the peer's TCP has not acknowledged within `limit` make
/// the kernel drop the connection (TCP_USER_TIMEOUT, Linux), so that the next read or write
/// fails instead of waiting for the default retransmission give-up (about 15 minutes). With
/// whitespace keepalives (RFC 6120 §4.6.4) there always is something to acknowledge.
pub fn give_up_unacknowledged_after(socket: &TcpStream, limit: std::time::Duration) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let millis = libc::c_uint::try_from(limit.as_millis()).unwrap_or(libc::c_uint::MAX);
        // SAFETY: the descriptor belongs to `socket`, alive for the call; the option value is a
        // c_uint read by the kernel from a pointer to a local of exactly that size.
        let set = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_USER_TIMEOUT,
                std::ptr::from_ref(&millis).cast(),
                std::mem::size_of::<libc::c_uint>() as libc::socklen_t,
            )
        };
        if set != 0 {
            tracing::debug!(error = %io::Error::last_os_error(), "s2s: TCP_USER_TIMEOUT not set");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (socket, limit);
}

impl XmlStream {
    pub fn new(socket: TcpStream, peer: SocketAddr, max_stanza_bytes: usize) -> XmlStream {
        XmlStream {
            io: Io::Plain(socket),
            parser: StreamParser::new(ParserLimits {
                max_stanza_bytes,
                ..ParserLimits::default()
            }),
            events: VecDeque::new(),
            buffer: vec![0u8; 16 * 1024].into_boxed_slice(),
            peer,
            last_write: tokio::time::Instant::now(),
        }
    }

    /// The next event; cancel-safe (a read cut short loses nothing).
    pub async fn next(&mut self) -> Result<StreamEvent, StreamEnd> {
        loop {
            if let Some(event) = self.events.pop_front() {
                return Ok(event);
            }
            let read = match &mut self.io {
                Io::Plain(s) => s.read(&mut self.buffer).await,
                Io::Accepted(s) => s.read(&mut self.buffer).await,
                Io::Connected(s) => s.read(&mut self.buffer).await,
                Io::Gone => return Err(StreamEnd::Closed),
            };
            let n = match read {
                Ok(0) => return Err(StreamEnd::Closed),
                Ok(n) => n,
                Err(e) => return Err(StreamEnd::Io(e)),
            };
            let mut parsed = Vec::new();
            self.parser
                .feed(&self.buffer[..n], &mut parsed)
                .map_err(StreamEnd::Parse)?;
            self.events.extend(parsed);
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.last_write = tokio::time::Instant::now();
        match &mut self.io {
            Io::Plain(s) => s.write_all(bytes).await,
            Io::Accepted(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
            Io::Connected(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
            Io::Gone => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    pub async fn send_element(&mut self, element: &Element) -> io::Result<()> {
        self.send(&salon_xml::serialize(element)).await
    }

    /// Close our side of the stream and the connection.
    pub async fn close(&mut self, with: Option<&str>) {
        let mut bytes = with.unwrap_or_default().to_string();
        bytes.push_str("</stream:stream>");
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            self.send(bytes.as_bytes()),
        )
        .await;
        match &mut self.io {
            Io::Plain(s) => {
                let _ = s.shutdown().await;
            }
            Io::Accepted(s) => {
                let _ = s.shutdown().await;
            }
            Io::Connected(s) => {
                let _ = s.shutdown().await;
            }
            Io::Gone => {}
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.io, Io::Accepted(_) | Io::Connected(_))
    }

    /// Forget the parser state (a stream restart after TLS or SASL).
    pub fn restart(&mut self) {
        self.parser.reset();
        self.events.clear();
    }

    /// TLS as the accepting side (after `<proceed/>`, or from the first byte).
    pub async fn accept_tls(&mut self, config: Arc<rustls::ServerConfig>) -> io::Result<()> {
        let Io::Plain(tcp) = std::mem::replace(&mut self.io, Io::Gone) else {
            return Err(io::ErrorKind::InvalidInput.into());
        };
        let tls = tokio_rustls::TlsAcceptor::from(config).accept(tcp).await?;
        self.io = Io::Accepted(Box::new(tls));
        self.restart();
        Ok(())
    }

    /// TLS as the connecting side, asking for `domain` (SNI).
    pub async fn connect_tls(
        &mut self,
        config: Arc<rustls::ClientConfig>,
        domain: &str,
    ) -> io::Result<()> {
        let Io::Plain(tcp) = std::mem::replace(&mut self.io, Io::Gone) else {
            return Err(io::ErrorKind::InvalidInput.into());
        };
        let name = ServerName::try_from(domain.to_string())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "not a DNS name"))?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await?;
        self.io = Io::Connected(Box::new(tls));
        self.restart();
        Ok(())
    }

    /// The certificate chain the peer presented, leaf first.
    pub fn peer_certificates(&self) -> Vec<CertificateDer<'static>> {
        let certs = match &self.io {
            Io::Accepted(s) => s.get_ref().1.peer_certificates(),
            Io::Connected(s) => s.get_ref().1.peer_certificates(),
            _ => None,
        };
        certs
            .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
            .unwrap_or_default()
    }
}

/// Our stream header (RFC 6120 §4.7), declaring dialback's namespace (XEP-0220 §2.1).
pub fn header(from: &str, to: Option<&str>, id: Option<&str>) -> String {
    let to = to
        .map(|t| format!(" to='{}'", salon_xml::escape(t)))
        .unwrap_or_default();
    let id = id
        .map(|i| format!(" id='{}'", salon_xml::escape(i)))
        .unwrap_or_default();
    format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='{}'{to}{id} version='1.0' xml:lang='en'>",
        salon_xml::escape(from)
    )
}

/// A stream error and the end of our stream (RFC 6120 §4.9).
pub fn stream_error(condition: &str, text: &str) -> String {
    format!(
        "<stream:error><{condition} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>{}</text></stream:error>",
        salon_xml::escape(text)
    )
}

/// An attribute of a stream header.
pub fn attribute<'a>(attributes: &'a [(String, String)], name: &str) -> Option<&'a str> {
    attributes
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Rebuild `element` with `to` in place of `from` as its namespace, and its children that
/// inherit it: the top-level stanza and the parts in the stream's content namespace, leaving
/// payloads in their own (a forwarded message keeps `jabber:client`, XEP-0297).
pub fn renamespace(element: &Element, from: &str, to: &str) -> Element {
    let namespace = if element.ns() == from {
        to.to_string()
    } else {
        return element.clone();
    };
    let mut rebuilt = Element::bare(element.name(), namespace);
    *rebuilt.attrs_mut() = element.attrs().clone();
    for node in element.nodes() {
        match node {
            minidom::Node::Element(child) => {
                rebuilt.append_child(renamespace(child, from, to));
            }
            minidom::Node::Text(text) => rebuilt.append_text_node(text.clone()),
        }
    }
    rebuilt
}

/// A stanza for the wire: `jabber:client` becomes `jabber:server`.
pub fn to_wire(stanza: &Element) -> Vec<u8> {
    salon_xml::serialize(&renamespace(stanza, ns::CLIENT, SERVER))
}

/// A stanza serialised in `jabber:client` (a room's shared fan-out) for the wire: only the
/// top-level declaration changes, the children inherit it.
pub fn serialized_to_wire(bytes: &[u8]) -> Vec<u8> {
    let end = bytes.iter().position(|b| *b == b'>').unwrap_or(bytes.len());
    let head = &bytes[..end];
    for quoted in [
        &b"xmlns=\"jabber:client\""[..],
        &b"xmlns='jabber:client'"[..],
    ] {
        if let Some(at) = head.windows(quoted.len()).position(|w| w == quoted) {
            let mut out = Vec::with_capacity(bytes.len() + 1);
            out.extend_from_slice(&bytes[..at]);
            out.extend_from_slice(b"xmlns='jabber:server'");
            out.extend_from_slice(&bytes[at + quoted.len()..]);
            return out;
        }
    }
    bytes.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stanzas_change_namespace_but_payloads_keep_theirs() {
        let stanza: Element = "<message xmlns='jabber:client' to='a@b'><body>hi</body><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client'/></forwarded></message>"
            .parse()
            .unwrap();
        let wire = String::from_utf8(to_wire(&stanza)).unwrap();
        assert!(
            wire.starts_with("<message xmlns=\"jabber:server\"")
                || wire.starts_with("<message xmlns='jabber:server'"),
            "{wire}"
        );
        assert!(wire.contains("jabber:client"), "{wire}");
        let back = renamespace(
            &renamespace(&stanza, ns::CLIENT, SERVER),
            SERVER,
            ns::CLIENT,
        );
        assert_eq!(back, stanza);
        let shared = salon_xml::serialize(&stanza);
        let wire = String::from_utf8(serialized_to_wire(&shared)).unwrap();
        assert!(wire.starts_with("<message xmlns='jabber:server'"), "{wire}");
        assert!(
            wire.contains("<message xmlns=\"jabber:client\"")
                || wire.contains("<message xmlns='jabber:client'")
        );
    }
}
