//! A small, fast XMPP client connection: TCP (RFC 6120, plain text on loopback), WebSocket
//! (RFC 7395) or BOSH (XEP-0206, in `bosh.rs`), stream negotiation, SASL, resource binding. Incoming bytes go through
//! `salon_xml::StreamParser`, so stanzas split across reads (or WebSocket frames) are handled.

use crate::bosh::BoshClient;
pub use crate::incoming::Incoming;
use crate::sasl::{plain_initial, ScramClient};
use anyhow::{anyhow, bail, Context, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use salon_xml::minidom::Element;
use salon_xml::{ParserLimits, StreamEvent, StreamParser};
use std::collections::VecDeque;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub const NS_CLIENT: &str = "jabber:client";
pub const NS_STREAMS: &str = "http://etherx.jabber.org/streams";
pub const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
pub const NS_BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
pub const NS_SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";
pub const NS_TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
pub const NS_FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";
pub const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
pub const NS_STREAM_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-streams";

/// The root that WebSocket frames are parsed inside: RFC 7395 frames are each a complete
/// element, so the parser sees one endless stream whose stanzas are the frames.
const WS_ROOT: &[u8] =
    b"<ws xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";

/// How to authenticate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Auth {
    Anonymous,
    Plain,
    Scram,
}

/// Where and how to connect; one per run, shared by every client.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    /// `Some(url)` for WebSocket.
    pub ws_url: Option<String>,
    /// `Some(url)` for BOSH.
    pub bosh_url: Option<String>,
    pub domain: String,
    pub anon_domain: String,
    pub auth: Auth,
    pub user_prefix: String,
    pub password: String,
}

enum Transport {
    Tcp(TcpStream, Vec<u8>),
    Ws(Box<WebSocketStream<TcpStream>>),
    Bosh(Box<BoshClient>),
}

pub struct Conn {
    transport: Transport,
    parser: StreamParser,
    queue: VecDeque<Incoming>,
    events: Vec<StreamEvent>,
    /// Bytes received, for the report.
    pub bytes_in: u64,
}

fn parser_limits() -> ParserLimits {
    ParserLimits {
        max_stanza_bytes: 4 * 1024 * 1024,
        max_depth: 64,
        max_attributes: 256,
        max_token_bytes: 1024 * 1024,
    }
}

impl Conn {
    /// Open the transport (TCP, or TCP plus the WebSocket handshake with the `xmpp` subprotocol).
    pub async fn connect(target: &Target) -> Result<Conn> {
        if let Some(url) = &target.bosh_url {
            let client = BoshClient::connect(target.addr, url, parser_limits()).await?;
            return Ok(Conn {
                transport: Transport::Bosh(Box::new(client)),
                parser: StreamParser::new(parser_limits()),
                queue: VecDeque::new(),
                events: Vec::new(),
                bytes_in: 0,
            });
        }
        let tcp = TcpStream::connect(target.addr).await.map_err(|e| {
            if e.raw_os_error() == Some(24) {
                anyhow!("cannot connect to {}: {e} (raise `ulimit -n`)", target.addr)
            } else {
                anyhow!("cannot connect to {}: {e}", target.addr)
            }
        })?;
        tcp.set_nodelay(true).ok();
        let mut parser = StreamParser::new(parser_limits());
        let transport = match &target.ws_url {
            None => Transport::Tcp(tcp, vec![0u8; 16 * 1024]),
            Some(url) => {
                let mut request = url
                    .as_str()
                    .into_client_request()
                    .with_context(|| format!("bad WebSocket URL {url}"))?;
                request
                    .headers_mut()
                    .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("xmpp"));
                // Small buffers: `ws-logins` holds ten thousand of these in one process.
                let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
                    .read_buffer_size(4 * 1024)
                    .write_buffer_size(0);
                let (ws, response) =
                    tokio_tungstenite::client_async_with_config(request, tcp, Some(config))
                        .await
                        .map_err(|e| anyhow!("WebSocket handshake with {url} refused: {e}"))?;
                let protocol = response
                    .headers()
                    .get("Sec-WebSocket-Protocol")
                    .and_then(|v| v.to_str().ok());
                if protocol != Some("xmpp") {
                    bail!(
                        "WebSocket server at {url} did not accept the `xmpp` subprotocol (RFC 7395 §3.3); it answered {protocol:?}"
                    );
                }
                let mut sink = Vec::new();
                parser
                    .feed(WS_ROOT, &mut sink)
                    .map_err(|e| anyhow!("internal: {e}"))?;
                Transport::Ws(Box::new(ws))
            }
        };
        Ok(Conn {
            transport,
            parser,
            queue: VecDeque::new(),
            events: Vec::new(),
            bytes_in: 0,
        })
    }

    pub fn is_ws(&self) -> bool {
        matches!(self.transport, Transport::Ws(_))
    }

    /// Send serialised XML (one or more complete elements; on WebSocket, exactly one).
    pub async fn send(&mut self, xml: &str) -> Result<()> {
        match &mut self.transport {
            Transport::Tcp(stream, _) => stream
                .write_all(xml.as_bytes())
                .await
                .context("write to server"),
            Transport::Ws(ws) => ws
                .send(Message::text(xml))
                .await
                .context("WebSocket send to server"),
            Transport::Bosh(client) => client.send(xml),
        }
    }

    /// Open (or, after SASL, restart) the stream to `domain`.
    pub async fn open_stream(&mut self, domain: &str) -> Result<()> {
        let header = match &mut self.transport {
            Transport::Tcp(..) => {
                // A restart means a new XML document: the parser starts afresh (RFC 6120 §4.3.3).
                self.parser.reset();
                format!(
                    "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='{}' version='1.0'>",
                    salon_xml::escape(domain)
                )
            }
            Transport::Ws(_) => format!(
                "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='{}' version='1.0'/>",
                salon_xml::escape(domain)
            ),
            // BOSH has no header on the wire: the first call creates the session, later ones
            // restart the stream (XEP-0206 §4, §5).
            Transport::Bosh(client) => {
                if client.has_session() {
                    client.restart(domain);
                } else {
                    let events = client.create(domain).await?;
                    self.queue.push_back(Incoming::Open);
                    self.queue.extend(events);
                }
                return Ok(());
            }
        };
        self.send(&header).await
    }

    /// The next event from the server. Cancel-safe: the only await is the socket read, and what
    /// was read is parsed and queued before anything else can happen.
    pub async fn recv(&mut self) -> Result<Incoming> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                return Ok(event);
            }
            match &mut self.transport {
                Transport::Tcp(stream, buf) => {
                    let n = stream.read(buf).await.context("read from server")?;
                    if n == 0 {
                        bail!("server closed the connection");
                    }
                    self.bytes_in += n as u64;
                    self.parser
                        .feed(&buf[..n], &mut self.events)
                        .map_err(|e| anyhow!("server sent bad XML: {e}"))?;
                }
                Transport::Ws(ws) => {
                    let message = match ws.next().await {
                        Some(m) => m.context("WebSocket read")?,
                        None => bail!("server closed the WebSocket"),
                    };
                    let data: &[u8] = match &message {
                        Message::Text(t) => t.as_bytes(),
                        Message::Binary(b) => b,
                        Message::Close(frame) => {
                            bail!("server closed the WebSocket: {frame:?}")
                        }
                        _ => continue,
                    };
                    self.bytes_in += data.len() as u64;
                    self.parser
                        .feed(data, &mut self.events)
                        .map_err(|e| anyhow!("server sent bad XML: {e}"))?;
                }
                Transport::Bosh(client) => {
                    let events = client.recv().await?;
                    self.bytes_in = client.bytes_in;
                    self.queue.extend(events);
                    continue;
                }
            }
            for event in self.events.drain(..) {
                self.queue.push_back(match event {
                    StreamEvent::StreamOpen { .. } => Incoming::Open,
                    StreamEvent::StreamClose => Incoming::Close,
                    StreamEvent::Stanza(el) if el.ns() == NS_FRAMING => match el.name() {
                        "open" => Incoming::Open,
                        "close" => Incoming::Close,
                        _ => Incoming::Stanza(el),
                    },
                    StreamEvent::Stanza(el) => Incoming::Stanza(el),
                });
            }
        }
    }

    /// The next stanza, failing on a stream error or close (used during negotiation).
    pub async fn recv_stanza(&mut self) -> Result<Element> {
        loop {
            match self.recv().await? {
                Incoming::Open => continue,
                Incoming::Close => bail!("server closed the stream"),
                Incoming::Stanza(el) => {
                    if el.name() == "error" && el.ns() == NS_STREAMS {
                        bail!("stream error: {}", describe_error(&el));
                    }
                    return Ok(el);
                }
            }
        }
    }

    /// Say goodbye politely (best effort).
    pub async fn close(&mut self) {
        if let Transport::Bosh(client) = &mut self.transport {
            client.close().await;
            return;
        }
        let bye = if self.is_ws() {
            "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>"
        } else {
            "</stream:stream>"
        };
        let _ = self.send(bye).await;
        if let Transport::Ws(ws) = &mut self.transport {
            let _ = futures_util::SinkExt::close(&mut **ws).await;
        }
    }
}

/// `condition (text)` of a stream or stanza error element.
pub fn describe_error(error: &Element) -> String {
    let mut condition = String::from("unknown");
    let mut text = String::new();
    for child in error.children() {
        if child.name() == "text" {
            text = child.text();
        } else if child.ns() == NS_STREAM_ERRORS
            || child.ns() == NS_STANZAS
            || child.ns() == NS_SASL
        {
            condition = child.name().to_string();
        }
    }
    if text.is_empty() {
        condition
    } else {
        format!("{condition} ({text})")
    }
}

/// `condition (text)` of a stanza's `<error/>`, empty when it has none.
pub fn stanza_error(stanza: &Element) -> String {
    stanza
        .get_child("error", NS_CLIENT)
        .map(describe_error)
        .unwrap_or_default()
}

/// A logged-in, bound client.
pub struct Session {
    pub conn: Conn,
    pub jid: String,
}

fn mechanisms(features: &Element) -> Vec<String> {
    features
        .get_child("mechanisms", NS_SASL)
        .map(|m| m.children().map(|c| c.text()).collect())
        .unwrap_or_default()
}

async fn expect_open_and_features(conn: &mut Conn) -> Result<Element> {
    loop {
        match conn.recv().await? {
            Incoming::Open => continue,
            Incoming::Close => bail!("server closed the stream during negotiation"),
            Incoming::Stanza(el) => {
                if el.ns() == NS_STREAMS && el.name() == "features" {
                    return Ok(el);
                }
                if el.ns() == NS_STREAMS && el.name() == "error" {
                    bail!("stream error: {}", describe_error(&el));
                }
                bail!("expected stream features, got <{}>", el.name());
            }
        }
    }
}

/// Connect and log in client number `index`: SASL, stream restart, bind, legacy session if
/// the server insists.
pub async fn login(target: &Target, index: usize) -> Result<Session> {
    let mut conn = Conn::connect(target).await?;
    let (domain, mechanism) = match target.auth {
        Auth::Anonymous => (target.anon_domain.as_str(), "ANONYMOUS"),
        Auth::Plain => (target.domain.as_str(), "PLAIN"),
        Auth::Scram => (target.domain.as_str(), "SCRAM-SHA-1"),
    };
    conn.open_stream(domain).await?;
    let features = expect_open_and_features(&mut conn).await?;
    let offered = mechanisms(&features);
    if !offered.iter().any(|m| m == mechanism) {
        if let Some(tls) = features.get_child("starttls", NS_TLS) {
            if tls.get_child("required", NS_TLS).is_some() || offered.is_empty() {
                bail!("server {domain} requires STARTTLS before SASL; configure it to allow plain text on loopback");
            }
        }
        bail!("server {domain} offers SASL mechanisms {offered:?}, not {mechanism}");
    }
    let user = format!("{}{index}", target.user_prefix);
    let mut scram = None;
    let auth = match target.auth {
        Auth::Anonymous => format!("<auth xmlns='{NS_SASL}' mechanism='ANONYMOUS'>=</auth>"),
        Auth::Plain => format!(
            "<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{}</auth>",
            plain_initial(&user, &target.password)
        ),
        Auth::Scram => {
            let client = ScramClient::new(&user, &target.password, &ScramClient::random_nonce());
            let first = B64.encode(client.client_first());
            scram = Some(client);
            format!("<auth xmlns='{NS_SASL}' mechanism='SCRAM-SHA-1'>{first}</auth>")
        }
    };
    conn.send(&auth).await?;
    loop {
        let el = conn.recv_stanza().await?;
        if el.ns() != NS_SASL {
            bail!("unexpected <{}> during SASL", el.name());
        }
        let data = || -> Result<String> {
            let text = el.text();
            let text = text.trim();
            if text.is_empty() || text == "=" {
                return Ok(String::new());
            }
            String::from_utf8(B64.decode(text).context("SASL data is not base64")?)
                .context("SASL data is not UTF-8")
        };
        match el.name() {
            "challenge" => {
                let client = scram
                    .as_mut()
                    .ok_or_else(|| anyhow!("unexpected SASL challenge for {mechanism}"))?;
                let reply = client.client_final(&data()?)?;
                conn.send(&format!(
                    "<response xmlns='{NS_SASL}'>{}</response>",
                    B64.encode(reply)
                ))
                .await?;
            }
            "success" => {
                if let Some(client) = &scram {
                    client.verify_server_final(&data()?)?;
                }
                break;
            }
            "failure" => bail!(
                "SASL {mechanism} as {user} refused: {}",
                describe_error(&el)
            ),
            other => bail!("unexpected <{other}> during SASL"),
        }
    }
    conn.open_stream(domain).await?;
    let features = expect_open_and_features(&mut conn).await?;
    if features.get_child("bind", NS_BIND).is_none() {
        bail!("server offers no resource binding after SASL");
    }
    conn.send(&format!(
        "<iq xmlns='jabber:client' type='set' id='bind1'><bind xmlns='{NS_BIND}'><resource>bench{index}</resource></bind></iq>"
    ))
    .await?;
    let jid = loop {
        let el = conn.recv_stanza().await?;
        if el.name() == "iq" && el.attr("id") == Some("bind1") {
            if el.attr("type") != Some("result") {
                bail!("resource binding refused: {}", stanza_error(&el));
            }
            break el
                .get_child("bind", NS_BIND)
                .and_then(|b| b.get_child("jid", NS_BIND))
                .map(|j| j.text())
                .ok_or_else(|| anyhow!("bind result without a JID"))?;
        }
    };
    if let Some(session) = features.get_child("session", NS_SESSION) {
        if session.get_child("optional", NS_SESSION).is_none() {
            conn.send(&format!(
                "<iq xmlns='jabber:client' type='set' id='sess1'><session xmlns='{NS_SESSION}'/></iq>"
            ))
            .await?;
            loop {
                let el = conn.recv_stanza().await?;
                if el.name() == "iq" && el.attr("id") == Some("sess1") {
                    if el.attr("type") != Some("result") {
                        bail!("session establishment refused");
                    }
                    break;
                }
            }
        }
    }
    Ok(Session { conn, jid })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// WebSocket frames are parsed inside a synthetic root; a frame split in two still parses.
    #[test]
    fn ws_frames_parse_inside_the_synthetic_root() {
        let mut parser = StreamParser::new(parser_limits());
        let mut events = Vec::new();
        parser.feed(WS_ROOT, &mut events).unwrap();
        parser
            .feed(
                b"<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' from='localhost' id='x' version='1.0'/>",
                &mut events,
            )
            .unwrap();
        parser
            .feed(b"<stream:features xmlns:stream='http://etherx.jabber.org/streams'><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>ANONYMOUS</mechan", &mut events)
            .unwrap();
        parser
            .feed(b"ism></mechanisms></stream:features>", &mut events)
            .unwrap();
        parser
            .feed(
                b"<message xmlns='jabber:client' type='groupchat'><body>b 1</body></message>",
                &mut events,
            )
            .unwrap();
        let stanzas: Vec<&Element> = events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::Stanza(el) => Some(el),
                _ => None,
            })
            .collect();
        assert_eq!(stanzas.len(), 3);
        assert_eq!(stanzas[0].ns(), NS_FRAMING);
        assert_eq!(stanzas[1].name(), "features");
        assert_eq!(stanzas[1].ns(), NS_STREAMS);
        assert_eq!(mechanisms(stanzas[1]), vec!["ANONYMOUS".to_string()]);
        assert_eq!(stanzas[2].ns(), NS_CLIENT);
    }

    #[test]
    fn error_description() {
        let mut parser = StreamParser::new(parser_limits());
        let mut events = Vec::new();
        parser.feed(WS_ROOT, &mut events).unwrap();
        parser
            .feed(b"<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>too fast</text></stream:error>", &mut events)
            .unwrap();
        let Some(StreamEvent::Stanza(el)) = events.last() else {
            panic!("no stanza")
        };
        assert_eq!(el.ns(), NS_STREAMS);
        assert_eq!(describe_error(el), "policy-violation (too fast)");
    }
}
