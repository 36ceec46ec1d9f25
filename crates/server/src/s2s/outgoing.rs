//! Outgoing server-to-server streams (RFC 6120 §4, §5, §6): find the peer (`dns.rs`), connect,
//! take up TLS (STARTTLS, or direct TLS for `_xmpps-server` targets), check its certificate,
//! authenticate our domain with SASL EXTERNAL (XEP-0178) or else Server Dialback (XEP-0220), and
//! then write the stanzas queued for this (local, remote) pair until the stream is idle. What
//! cannot be delivered is bounced to its sender: `remote-server-not-found` when the peer cannot
//! be reached or refuses us, `remote-server-timeout` when it does not answer in time.

use super::dns;
use super::multiplex::{self, Multiplexer};
use super::stream::{self, XmlStream, DIALBACK, SASL_NS, SERVER, TLS_NS};
use super::{Queued, S2s};
use crate::config::S2sPolicy;
use crate::stanza::{ErrorType, StanzaCondition, StanzaError};
use base64::Engine as _;
use minidom::Element;
use salon_xml::StreamEvent;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Why an outgoing stream could not be set up.
#[derive(Debug)]
pub enum Failure {
    /// No server found, connection refused, TLS or authentication refused.
    NotFound(String),
    /// The peer did not answer in time.
    Timeout(String),
}

impl Failure {
    fn error(&self, remote: &str) -> StanzaError {
        match self {
            Failure::NotFound(why) => {
                StanzaError::new(ErrorType::Cancel, StanzaCondition::RemoteServerNotFound)
                    .with_text(format!("{remote}: {why}"))
            }
            Failure::Timeout(why) => {
                StanzaError::new(ErrorType::Wait, StanzaCondition::RemoteServerTimeout)
                    .with_text(format!("{remote}: {why}"))
            }
        }
    }
}

/// A stream opened to a peer, TLS up, not yet authenticated.
pub struct Connected {
    pub stream: XmlStream,
    /// The id of the peer's stream header (dialback keys are bound to it).
    pub stream_id: String,
    pub features: Element,
    /// Whether the peer's certificate is trusted and names the remote domain.
    pub certificate_valid: Result<(), String>,
}

/// Connect to `remote`'s server for `local` and take up TLS. Targets are tried in order.
pub async fn connect(s2s: &S2s, local: &str, remote: &str) -> Result<Connected, Failure> {
    let dns_timeout = Duration::from_secs(s2s.config.dns_timeout_seconds);
    let targets = dns::targets(
        remote,
        &s2s.config.hosts,
        s2s.resolver.as_ref(),
        dns_timeout,
    )
    .await;
    if targets.is_empty() {
        return Err(Failure::NotFound(
            "its DNS says it offers no XMPP service".into(),
        ));
    }
    let mut last = Failure::NotFound("no address".into());
    for target in targets {
        match connect_target(s2s, local, remote, &target).await {
            Ok(connected) => return Ok(connected),
            Err(failure) => {
                tracing::info!(%local, %remote, host = %target.host, port = target.port, error = ?failure, "s2s: target failed");
                last = failure;
            }
        }
    }
    Err(last)
}

async fn connect_target(
    s2s: &S2s,
    local: &str,
    remote: &str,
    target: &dns::Target,
) -> Result<Connected, Failure> {
    let addresses: Vec<_> = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await
        .map_err(|e| Failure::NotFound(format!("cannot resolve {}: {e}", target.host)))?
        .collect();
    let mut socket = None;
    for address in addresses {
        match tokio::time::timeout(
            Duration::from_secs(5),
            tokio::net::TcpStream::connect(address),
        )
        .await
        {
            Ok(Ok(s)) => {
                socket = Some((s, address));
                break;
            }
            Ok(Err(e)) => tracing::debug!(%address, error = %e, "s2s: connect failed"),
            Err(_) => tracing::debug!(%address, "s2s: connect timed out"),
        }
    }
    let Some((socket, address)) = socket else {
        return Err(Failure::NotFound(format!(
            "cannot connect to {}:{}",
            target.host, target.port
        )));
    };
    let _ = socket.set_nodelay(true);
    stream::give_up_unacknowledged_after(
        &socket,
        Duration::from_secs(2 * s2s.config.keepalive_seconds),
    );
    let mut stream = XmlStream::new(socket, address, s2s.config.max_stanza_bytes);
    let tls_error = |e: std::io::Error| Failure::NotFound(format!("TLS failed: {e}"));
    if target.direct_tls {
        stream
            .connect_tls(s2s.certificates.client_direct.clone(), remote)
            .await
            .map_err(tls_error)?;
    }
    let (mut stream_id, mut features) = open(&mut stream, local, remote).await?;
    if !stream.is_tls() {
        if features.get_child("starttls", TLS_NS).is_none() {
            return Err(Failure::NotFound("it does not offer TLS".into()));
        }
        stream
            .send(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            .await
            .map_err(io_failure)?;
        let answer = next_element(&mut stream).await?;
        if !answer.is("proceed", TLS_NS) {
            return Err(Failure::NotFound("it refused STARTTLS".into()));
        }
        stream
            .connect_tls(s2s.certificates.client.clone(), remote)
            .await
            .map_err(tls_error)?;
        (stream_id, features) = open(&mut stream, local, remote).await?;
    }
    let certificate_valid = s2s.certificates.verify(&stream.peer_certificates(), remote);
    Ok(Connected {
        stream,
        stream_id,
        features,
        certificate_valid,
    })
}

fn io_failure(e: std::io::Error) -> Failure {
    Failure::NotFound(format!("connection lost: {e}"))
}

/// Send our header, read the peer's and its features.
async fn open(
    stream: &mut XmlStream,
    local: &str,
    remote: &str,
) -> Result<(String, Element), Failure> {
    stream
        .send(stream::header(local, Some(remote), None).as_bytes())
        .await
        .map_err(io_failure)?;
    let id = loop {
        match stream.next().await {
            Ok(StreamEvent::StreamOpen {
                name,
                namespace,
                attributes,
                ..
            }) => {
                if name != "stream" || namespace != crate::stanza::ns::STREAM {
                    return Err(Failure::NotFound("not an XMPP stream".into()));
                }
                break stream::attribute(&attributes, "id")
                    .unwrap_or_default()
                    .to_string();
            }
            Ok(StreamEvent::Stanza(e)) if e.name() == "error" => {
                return Err(Failure::NotFound(format!("stream error: {}", describe(&e))))
            }
            Ok(_) => continue,
            Err(e) => return Err(Failure::NotFound(format!("stream failed: {e}"))),
        }
    };
    let features = next_element(stream).await?;
    if features.name() != "features" {
        return Err(Failure::NotFound("no stream features".into()));
    }
    Ok((id, features))
}

async fn next_element(stream: &mut XmlStream) -> Result<Element, Failure> {
    loop {
        match stream.next().await {
            Ok(StreamEvent::Stanza(e))
                if e.name() == "error" && e.ns() == crate::stanza::ns::STREAM =>
            {
                return Err(Failure::NotFound(format!("stream error: {}", describe(&e))))
            }
            Ok(StreamEvent::Stanza(e)) => return Ok(e),
            Ok(StreamEvent::StreamOpen { .. }) => continue,
            Ok(StreamEvent::StreamClose) => {
                return Err(Failure::NotFound("it closed the stream".into()))
            }
            Err(e) => return Err(Failure::NotFound(format!("stream failed: {e}"))),
        }
    }
}

fn describe(error: &Element) -> String {
    error
        .children()
        .map(|c| c.name().to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// An authenticated outgoing stream.
struct Established {
    stream: XmlStream,
    /// The id of the peer's latest stream header (keys of multiplexed pairs are bound to it).
    stream_id: String,
    /// Whether the peer handles dialback errors, so that other local domains may ask to use
    /// this stream (XEP-0220 §8.2).
    multiplexable: bool,
}

/// Connect and authenticate `local` to `remote`: SASL EXTERNAL when the peer offers it, else
/// dialback when the policy and the peer allow it.
async fn establish(s2s: &S2s, local: &str, remote: &str) -> Result<Established, Failure> {
    let policy = s2s.policy(remote);
    let mut connected = connect(s2s, local, remote).await?;
    if let Err(why) = &connected.certificate_valid {
        if policy == S2sPolicy::RequireValidCertificate {
            return Err(Failure::NotFound(format!(
                "its certificate is not acceptable ({why}); policy requires a valid one"
            )));
        }
        tracing::info!(%local, %remote, reason = %why, "s2s: peer certificate not verified; dialback only");
    }
    let offers_external = connected
        .features
        .get_child("mechanisms", SASL_NS)
        .is_some_and(|m| {
            m.children()
                .any(|c| c.name() == "mechanism" && c.text() == "EXTERNAL")
        });
    let stream = &mut connected.stream;
    if offers_external {
        let authzid = base64::engine::general_purpose::STANDARD.encode(local);
        stream
            .send(format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>{authzid}</auth>").as_bytes())
            .await
            .map_err(io_failure)?;
        let answer = next_element(stream).await?;
        if answer.is("success", SASL_NS) {
            stream.restart();
            let (stream_id, features) = open(stream, local, remote).await?;
            tracing::info!(%local, %remote, method = "SASL EXTERNAL", "s2s: outgoing stream authenticated");
            s2s.count(|m| m.s2s_authenticated("outgoing", "sasl_external"));
            let multiplexable = multiplex::peer_handles_errors(&features)
                || multiplex::peer_handles_errors(&connected.features);
            return Ok(Established {
                stream: connected.stream,
                stream_id,
                multiplexable,
            });
        }
        tracing::info!(%local, %remote, answer = %describe(&answer), "s2s: SASL EXTERNAL refused; trying dialback");
    }
    // Dialback: the key binds our domain, theirs and their stream id (XEP-0220 §2.1).
    let key = s2s.dialback_key(remote, local, &connected.stream_id);
    let result = format!(
        "<db:result from='{}' to='{}'>{key}</db:result>",
        salon_xml::escape(local),
        salon_xml::escape(remote)
    );
    stream.send(result.as_bytes()).await.map_err(io_failure)?;
    loop {
        let answer = next_element(stream).await?;
        if !answer.is("result", DIALBACK) {
            continue;
        }
        return match answer.attr("type") {
            Some("valid") => {
                tracing::info!(%local, %remote, method = "dialback", "s2s: outgoing stream authenticated");
                s2s.count(|m| m.s2s_authenticated("outgoing", "dialback"));
                Ok(Established {
                    multiplexable: multiplex::peer_handles_errors(&connected.features),
                    stream: connected.stream,
                    stream_id: connected.stream_id,
                })
            }
            other => Err(Failure::NotFound(format!(
                "it did not accept our dialback key ({})",
                other.unwrap_or("no answer")
            ))),
        };
    }
}

/// The task behind one (local, remote) link: set it up, write what is queued, close when idle.
/// Whatever is still queued when it ends is bounced.
pub async fn run_link(
    s2s: Arc<S2s>,
    id: u64,
    local: String,
    remote: String,
    mut queue: mpsc::Receiver<Queued>,
) {
    // Another of our domains may already have an authenticated stream to `remote` that will
    // carry this pair too (XEP-0220 §8.1): one connection fewer.
    if let Some(carried) = multiplex::attach(&s2s, &local, &remote).await {
        forward(s2s, id, local, remote, queue, carried).await;
        return;
    }
    let timeout = Duration::from_secs(s2s.config.connect_timeout_seconds);
    let established = match tokio::time::timeout(timeout, establish(&s2s, &local, &remote)).await {
        Ok(result) => result,
        Err(_) => Err(Failure::Timeout(format!(
            "no authenticated stream within {} s",
            timeout.as_secs()
        ))),
    };
    let Established {
        mut stream,
        stream_id,
        multiplexable,
    } = match established {
        Ok(established) => established,
        Err(failure) => {
            tracing::warn!(%local, %remote, error = ?failure, "s2s: cannot reach the remote server");
            s2s.link_ended(&local, &remote, id);
            queue.close();
            let error = failure.error(&remote);
            while let Ok(item) = queue.try_recv() {
                s2s.bounce(item, error.clone());
            }
            return;
        }
    };
    s2s.count(|m| m.s2s_stream("outgoing", 1));
    let mut mux =
        multiplexable.then(|| Multiplexer::offer(s2s.clone(), id, &local, &remote, stream_id));
    let idle = Duration::from_secs(s2s.config.idle_timeout_seconds);
    // A quiet stream is checked with a ping (XEP-0199 §4.3) rather than trusted until it idles
    // out: a peer that went away without closing is found, and the stream closed, in bounded time.
    let ping_after = Duration::from_secs(s2s.config.ping_after_idle_seconds);
    let ping_timeout = Duration::from_secs(s2s.config.ping_timeout_seconds);
    let mut last_stanza = tokio::time::Instant::now();
    let mut quiet_since = last_stanza;
    let mut ping: Option<(
        String,
        tokio::sync::oneshot::Receiver<()>,
        tokio::time::Instant,
    )> = None;
    let mut shutdown = shutdown_signal(&s2s);
    let mut unsent = None;
    loop {
        let wake = next_check(
            last_stanza + idle,
            quiet_since + ping_after,
            ping.as_ref().map(|(_, _, deadline)| *deadline),
        );
        // A stanza to write, of this pair (its queue) or of a pair multiplexed on the stream;
        // the other arms handle what they get themselves and go round again.
        let item = tokio::select! {
            item = queue.recv() => match item {
                Some(item) => item,
                None => break,
            },
            event = async {
                match mux.as_mut() {
                    Some(mux) => mux.next().await,
                    None => std::future::pending().await,
                }
            } => match event {
                multiplex::Event::Request(request) => {
                    if let Err(e) = stream.send(request.as_bytes()).await {
                        tracing::info!(%local, %remote, error = %e, "s2s: outgoing stream lost");
                        break;
                    }
                    continue;
                }
                multiplex::Event::Stanza(item) => item,
            },
            answered = async {
                match ping.as_mut() {
                    Some((_, answer, _)) => answer.await,
                    None => std::future::pending().await,
                }
            } => {
                if answered.is_ok() {
                    tracing::debug!(%local, %remote, "s2s: ping answered");
                }
                ping = None;
                quiet_since = tokio::time::Instant::now();
                continue;
            }
            event = stream.next() => match event {
                // Peers may answer on our stream (dialback results, stream errors); stanzas
                // belong on their own stream to us and are not accepted here.
                Ok(StreamEvent::Stanza(element)) if element.name() == "error" => {
                    tracing::info!(%local, %remote, error = %describe(&element), "s2s: stream error from peer");
                    break;
                }
                Ok(StreamEvent::Stanza(element)) if element.is("result", DIALBACK) => {
                    if let Some(mux) = mux.as_mut() {
                        mux.answered(&element);
                    }
                    continue;
                }
                Ok(StreamEvent::StreamClose) | Err(_) => break,
                Ok(_) => continue,
            },
            _ = tokio::time::sleep_until(wake) => {
                let now = tokio::time::Instant::now();
                if now >= last_stanza + idle {
                    tracing::debug!(%local, %remote, "s2s: closing idle outgoing stream");
                    break;
                }
                if let Some((id, _, deadline)) = &ping {
                    if now >= *deadline {
                        tracing::info!(%local, %remote, id = %id, "s2s: no answer to ping, closing the stream");
                        s2s.pending_pings.remove(id);
                        break;
                    }
                } else if now >= quiet_since + ping_after {
                    let id = format!("s2s-ping-{:016x}", rand::random::<u64>());
                    let request = crate::stanza::Build::new("iq", SERVER)
                        .attr("type", "get")
                        .attr("id", id.as_str())
                        .attr("from", local.as_str())
                        .attr("to", remote.as_str())
                        .child(minidom::Element::bare("ping", crate::stanza::ns::PING))
                        .build();
                    let (waiter, answer) = tokio::sync::oneshot::channel();
                    s2s.pending_pings.insert(id.clone(), (remote.clone(), waiter));
                    if let Err(e) = stream.send(&stream::to_wire(&request)).await {
                        tracing::info!(%local, %remote, error = %e, "s2s: outgoing stream lost");
                        s2s.pending_pings.remove(&id);
                        break;
                    }
                    ping = Some((id, answer, now + ping_timeout));
                }
                continue;
            }
            _ = crate::service::shutdown_requested(&mut shutdown) => break,
        };
        if let Err(e) = stream.send(&wire(&item)).await {
            tracing::info!(%local, %remote, error = %e, "s2s: outgoing stream lost");
            unsent = Some(item);
            break;
        }
        last_stanza = tokio::time::Instant::now();
        quiet_since = last_stanza;
    }
    if let Some((ping_id, _, _)) = ping {
        s2s.pending_pings.remove(&ping_id);
    }
    // Multiplexed pairs' stanzas not yet written go back too; their link tasks end when they
    // next hand one over.
    let carried = mux.map(Multiplexer::close).unwrap_or_default();
    s2s.count(|m| m.s2s_stream("outgoing", -1));
    stream.close(None).await;
    link_done(
        &s2s,
        id,
        &local,
        &remote,
        queue,
        unsent.into_iter().chain(carried),
    );
}

fn wire(item: &Queued) -> Vec<u8> {
    match item {
        Queued::Element(element) => stream::to_wire(element),
        Queued::Serialized(bytes) => stream::serialized_to_wire(bytes),
    }
}

/// The link task of a pair multiplexed on another pair's stream: hands its stanzas over until
/// that stream goes.
async fn forward(
    s2s: Arc<S2s>,
    id: u64,
    local: String,
    remote: String,
    mut queue: mpsc::Receiver<Queued>,
    carried: multiplex::Carried,
) {
    let mut shutdown = shutdown_signal(&s2s);
    let mut unsent = None;
    loop {
        tokio::select! {
            item = queue.recv() => {
                let Some(item) = item else { break };
                if let Err(back) = carried.send(item).await {
                    unsent = Some(back.0);
                    break;
                }
            }
            _ = carried.closed() => break,
            _ = crate::service::shutdown_requested(&mut shutdown) => break,
        }
    }
    tracing::debug!(%local, %remote, "s2s: multiplexed domain pair ended with its stream");
    link_done(&s2s, id, &local, &remote, queue, unsent);
}

/// The link is gone: forget it and bounce what it still held; the next stanza opens a new one.
fn link_done(
    s2s: &S2s,
    id: u64,
    local: &str,
    remote: &str,
    mut queue: mpsc::Receiver<Queued>,
    unsent: impl IntoIterator<Item = Queued>,
) {
    s2s.link_ended(local, remote, id);
    queue.close();
    let error = StanzaError::new(ErrorType::Wait, StanzaCondition::RemoteServerTimeout)
        .with_text(format!("the stream to {remote} closed"));
    for item in unsent
        .into_iter()
        .chain(std::iter::from_fn(|| queue.try_recv().ok()))
    {
        s2s.bounce(item, error.clone());
    }
}

/// When the link next has something to decide: the idle close, or the ping's deadline while one
/// is in flight, or else when a quiet stream is due a ping.
fn next_check(
    idle_close: tokio::time::Instant,
    ping_due: tokio::time::Instant,
    ping_deadline: Option<tokio::time::Instant>,
) -> tokio::time::Instant {
    idle_close.min(ping_deadline.unwrap_or(ping_due))
}

/// The server's shutdown signal; one that reads "stopping" where the server is gone already.
fn shutdown_signal(s2s: &S2s) -> tokio::sync::watch::Receiver<bool> {
    s2s.server()
        .map(|server| server.shutdown_signal())
        .unwrap_or_else(|| tokio::sync::watch::channel(true).1)
}
