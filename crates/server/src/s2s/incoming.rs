//! Incoming server-to-server streams (RFC 6120): the listener on `listen.s2s` (STARTTLS) and
//! `listen.s2s_direct_tls` (XEP-0368), TLS required, the peer authenticated by SASL EXTERNAL
//! with a certificate that names it (XEP-0178), or by Server Dialback (XEP-0220) verified with
//! its authoritative server (or, when its certificate is valid, over the verified TLS session).
//! We also answer `<db:verify/>` for keys we handed out, on any stream. A stanza is accepted
//! only from a domain authenticated on this stream to one of ours; anything else ends the stream.

use super::dialback::{self, Verdict};
use super::stream::{self, XmlStream, DIALBACK, SASL_NS, SERVER, TLS_NS};
use super::S2s;
use crate::config::S2sPolicy;
use crate::server::Server;
use crate::stanza::ns;
use base64::Engine as _;
use minidom::Element;
use salon_xml::StreamEvent;
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Accept server-to-server connections until the task is aborted.
pub async fn accept_loop(server: Arc<Server>, listener: TcpListener, direct_tls: bool) {
    let Some(s2s) = server.extensions.get::<S2s>() else {
        tracing::error!("listen.s2s is set but there is no [s2s] section; not accepting");
        return;
    };
    drop(server);
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "s2s: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if s2s.incoming.fetch_add(1, Ordering::SeqCst) >= s2s.config.max_incoming {
            s2s.incoming.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!(%peer, "s2s: too many incoming streams; refused");
            continue;
        }
        let _ = socket.set_nodelay(true);
        stream::give_up_unacknowledged_after(
            &socket,
            Duration::from_secs(2 * s2s.config.keepalive_seconds),
        );
        let s2s = s2s.clone();
        tokio::spawn(async move {
            let mut stream = XmlStream::new(socket, peer, s2s.config.max_stanza_bytes);
            let mut handled = true;
            if direct_tls {
                let handshake = stream.accept_tls(s2s.certificates.server_direct.clone());
                handled = matches!(
                    tokio::time::timeout(Duration::from_secs(10), handshake).await,
                    Ok(Ok(()))
                );
            }
            if handled {
                s2s.count(|m| m.s2s_stream("incoming", 1));
                let mut incoming = Incoming::new(s2s.clone(), stream);
                incoming.run().await;
                incoming.release();
                s2s.count(|m| m.s2s_stream("incoming", -1));
            }
            s2s.incoming.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// A dialback verification finished: (remote, local, what the authority said).
type Verified = (String, String, Verdict);

struct Incoming {
    s2s: Arc<S2s>,
    stream: XmlStream,
    /// Our stream id, fresh for every header we send (dialback keys are bound to it).
    id: String,
    /// The `to` and `from` of the peer's latest header.
    local: Option<String>,
    remote: Option<String>,
    /// (remote, local) pairs authenticated on this stream; (remote, "") for any of ours.
    authenticated: HashSet<(String, String)>,
    /// Remote domains counted in `incoming_per_domain` for this stream.
    counted: Vec<String>,
    verified_tx: mpsc::Sender<Verified>,
    verified_rx: mpsc::Receiver<Verified>,
    pending_verifications: usize,
    /// Whether a pair past `s2s.max_domain_pairs_per_stream` was refused yet (logged once
    /// a stream, so a peer cannot flood the log either).
    pair_cap_logged: bool,
}

impl Incoming {
    fn new(s2s: Arc<S2s>, stream: XmlStream) -> Incoming {
        let (verified_tx, verified_rx) = mpsc::channel(8);
        Incoming {
            s2s,
            stream,
            id: String::new(),
            local: None,
            remote: None,
            authenticated: HashSet::new(),
            counted: Vec::new(),
            verified_tx,
            verified_rx,
            pending_verifications: 0,
            pair_cap_logged: false,
        }
    }

    fn release(&self) {
        for domain in &self.counted {
            self.s2s
                .incoming_per_domain
                .remove_if_mut(domain, |_, count| {
                    *count = count.saturating_sub(1);
                    *count == 0
                });
        }
    }

    async fn fail(&mut self, condition: &str, text: &str) {
        tracing::info!(peer = %self.stream.peer, remote = ?self.remote, %condition, %text, "s2s: closing incoming stream");
        let error = stream::stream_error(condition, text);
        if self.id.is_empty() {
            // No header sent yet: one is needed before the error (RFC 6120 §4.9.1.2).
            let header = stream::header(self.local.as_deref().unwrap_or(""), None, Some("error"));
            let _ = self.stream.send(header.as_bytes()).await;
        }
        self.stream.close(Some(&error)).await;
    }

    async fn run(&mut self) {
        let auth_timeout = Duration::from_secs(self.s2s.config.connect_timeout_seconds);
        let idle = Duration::from_secs(self.s2s.config.idle_timeout_seconds);
        let keepalive = Duration::from_secs(self.s2s.config.keepalive_seconds);
        let started = tokio::time::Instant::now();
        // When the peer last sent something: whitespace keepalives and our own writes do not
        // count (a stream that carries nothing is closed; the peer reconnects on demand).
        let mut last_heard = started;
        loop {
            // Unauthenticated streams get little time (a dialback verification stream says what
            // it has to say at once); authenticated ones are closed when idle.
            let deadline = if self.authenticated.is_empty() {
                started + auth_timeout * 2
            } else {
                last_heard + idle
            };
            let keepalive_due = self.stream.last_write + keepalive;
            let event = tokio::select! {
                event = self.stream.next() => event,
                Some((remote, local, verdict)) = self.verified_rx.recv() => {
                    self.pending_verifications -= 1;
                    if !self.dialback_answer(&remote, &local, verdict).await {
                        return;
                    }
                    continue;
                }
                _ = tokio::time::sleep_until(deadline) => {
                    if self.authenticated.is_empty() {
                        self.fail("connection-timeout", "not authenticated in time").await;
                    } else {
                        tracing::info!(peer = %self.stream.peer, remote = ?self.remote, "s2s: closing idle incoming stream");
                        self.stream.close(None).await;
                    }
                    return;
                }
                // RFC 6120 §4.6.4: a single space after a quiet spell, so that a dead
                // connection is noticed (a write that cannot go out, or TCP giving up on it).
                _ = tokio::time::sleep_until(keepalive_due), if !self.authenticated.is_empty() => {
                    let sent = tokio::time::timeout(keepalive, self.stream.send(b" ")).await;
                    if !matches!(sent, Ok(Ok(()))) {
                        tracing::info!(peer = %self.stream.peer, remote = ?self.remote, "s2s: incoming connection dead (keepalive not written); closing");
                        return;
                    }
                    continue;
                }
            };
            last_heard = tokio::time::Instant::now();
            let keep_going = match event {
                Ok(StreamEvent::StreamOpen {
                    namespace,
                    name,
                    attributes,
                    default_namespace,
                }) => {
                    self.on_header(&namespace, &name, &attributes, default_namespace.as_deref())
                        .await
                }
                Ok(StreamEvent::Stanza(element)) => self.on_element(element).await,
                Ok(StreamEvent::StreamClose) => {
                    self.stream.close(None).await;
                    false
                }
                Err(stream::StreamEnd::Parse(e)) => {
                    self.fail(e.condition().name(), &e.to_string()).await;
                    false
                }
                Err(e) => {
                    tracing::debug!(peer = %self.stream.peer, error = %e, "s2s: incoming stream ended");
                    false
                }
            };
            if !keep_going {
                return;
            }
        }
    }

    async fn on_header(
        &mut self,
        namespace: &str,
        name: &str,
        attributes: &[(String, String)],
        default_namespace: Option<&str>,
    ) -> bool {
        self.local = stream::attribute(attributes, "to").map(str::to_lowercase);
        self.remote = stream::attribute(attributes, "from").map(str::to_lowercase);
        if name != "stream" || namespace != ns::STREAM || default_namespace != Some(SERVER) {
            self.fail("invalid-namespace", "server streams are jabber:server")
                .await;
            return false;
        }
        let Some(local) = self.local.clone() else {
            self.fail("host-unknown", "the stream header names no host")
                .await;
            return false;
        };
        if !self.s2s.is_hosted(&local) {
            self.fail("host-unknown", "no such host here").await;
            return false;
        }
        if let Some(remote) = &self.remote {
            if self.s2s.policy(remote) == S2sPolicy::Refuse {
                let remote = remote.clone();
                self.fail(
                    "policy-violation",
                    &format!("this server does not federate with {remote}"),
                )
                .await;
                return false;
            }
        }
        self.id = random_id();
        let header = stream::header(&local, self.remote.as_deref(), Some(&self.id));
        let mut features = String::from("<stream:features>");
        if !self.stream.is_tls() {
            features.push_str(
                "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>",
            );
        } else {
            let sasl_done = self.authenticated.iter().any(|(_, l)| l.is_empty());
            if !sasl_done && self.certificate_names_remote().is_ok() {
                features.push_str("<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>EXTERNAL</mechanism></mechanisms>");
            }
            features.push_str("<dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>");
        }
        features.push_str("</stream:features>");
        self.stream
            .send((header + &features).as_bytes())
            .await
            .is_ok()
    }

    /// Whether the peer's certificate is valid for the `from` of its header.
    fn certificate_names_remote(&self) -> Result<(), String> {
        let Some(remote) = &self.remote else {
            return Err("the stream header has no from".into());
        };
        self.certificate_names(remote)
    }

    fn certificate_names(&self, domain: &str) -> Result<(), String> {
        self.s2s
            .certificates
            .verify(&self.stream.peer_certificates(), domain)
    }

    async fn on_element(&mut self, element: Element) -> bool {
        if self.id.is_empty() {
            return false;
        }
        match (element.name(), element.ns().as_str()) {
            ("starttls", TLS_NS) if !self.stream.is_tls() => {
                if self
                    .stream
                    .send(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
                    .await
                    .is_err()
                {
                    return false;
                }
                let config = self.s2s.certificates.server.clone();
                let handshake = self.stream.accept_tls(config);
                match tokio::time::timeout(Duration::from_secs(10), handshake).await {
                    Ok(Ok(())) => {
                        self.id.clear();
                        true
                    }
                    _ => {
                        tracing::info!(peer = %self.stream.peer, "s2s: TLS handshake failed");
                        false
                    }
                }
            }
            ("auth", SASL_NS) => self.on_sasl(&element).await,
            ("result", DIALBACK) => self.on_dialback_result(&element).await,
            ("verify", DIALBACK) => self.on_dialback_verify(&element).await,
            ("message" | "presence" | "iq", SERVER) => self.on_stanza(element).await,
            _ => {
                if !self.stream.is_tls() {
                    self.fail("policy-violation", "TLS is required").await;
                } else {
                    self.fail("unsupported-stanza-type", "not a stanza of jabber:server")
                        .await;
                }
                false
            }
        }
    }

    /// XEP-0178: SASL EXTERNAL with the certificate as the credential.
    async fn on_sasl(&mut self, auth: &Element) -> bool {
        let failure = |condition: &str| {
            format!("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><{condition}/></failure>")
        };
        if !self.stream.is_tls() || auth.attr("mechanism") != Some("EXTERNAL") {
            return self
                .stream
                .send(failure("invalid-mechanism").as_bytes())
                .await
                .is_ok();
        }
        let text = auth.text();
        let authzid = match text.trim() {
            "" | "=" => self.remote.clone(),
            encoded => base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .map(|s| s.to_lowercase()),
        };
        let Some(domain) = authzid else {
            return self
                .stream
                .send(failure("incorrect-encoding").as_bytes())
                .await
                .is_ok();
        };
        if Some(&domain) != self.remote.as_ref() && self.remote.is_some() {
            return self
                .stream
                .send(failure("invalid-authzid").as_bytes())
                .await
                .is_ok();
        }
        if let Err(why) = self.certificate_names(&domain) {
            tracing::info!(peer = %self.stream.peer, remote = %domain, reason = %why, "s2s: SASL EXTERNAL refused");
            return self
                .stream
                .send(failure("not-authorized").as_bytes())
                .await
                .is_ok();
        }
        if !self.admit(&domain).await {
            return false;
        }
        tracing::info!(peer = %self.stream.peer, remote = %domain, method = "SASL EXTERNAL", "s2s: incoming stream authenticated");
        self.s2s
            .count(|m| m.s2s_authenticated("incoming", "sasl_external"));
        self.authenticated.insert((domain, String::new()));
        self.id.clear();
        self.stream.restart();
        self.stream
            .send(b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
            .await
            .is_ok()
    }

    /// Count one more stream for `remote`; refuse beyond `s2s.max_incoming_per_domain`.
    async fn admit(&mut self, remote: &str) -> bool {
        if self.counted.iter().any(|d| d == remote) {
            return true;
        }
        let mut count = self
            .s2s
            .incoming_per_domain
            .entry(remote.to_string())
            .or_default();
        if *count >= self.s2s.config.max_incoming_per_domain {
            drop(count);
            self.fail("policy-violation", "too many streams from your domain")
                .await;
            return false;
        }
        *count += 1;
        drop(count);
        self.counted.push(remote.to_string());
        true
    }

    /// XEP-0220 §2.1: the peer asks to send from `from` to our `to`.
    async fn on_dialback_result(&mut self, request: &Element) -> bool {
        let (Some(remote), Some(local)) = (request.attr("from"), request.attr("to")) else {
            self.fail("improper-addressing", "db:result needs from and to")
                .await;
            return false;
        };
        let (remote, local) = (remote.to_lowercase(), local.to_lowercase());
        if !self.s2s.is_hosted(&local) {
            return self.dialback_error(&remote, &local, "item-not-found").await;
        }
        let policy = self.s2s.policy(&remote);
        if policy == S2sPolicy::Refuse || !self.stream.is_tls() {
            return self
                .dialback_error(&remote, &local, "policy-violation")
                .await;
        }
        if self.pairs_full(&remote, &local) {
            // XEP-0220 §2.5: "lacks the resources to add the requested domain pair to the
            // list of connections authorized for this connection"; the stream and its other
            // pairs stay.
            return self
                .dialback_error(&remote, &local, "resource-constraint")
                .await;
        }
        // Over TLS with a certificate that names the domain, the key need not be checked
        // (XEP-0220 §2.5: dialback over a verified TLS session).
        if self.certificate_names(&remote).is_ok() {
            return self.dialback_answer(&remote, &local, Verdict::Valid).await;
        }
        if policy != S2sPolicy::AllowDialback {
            tracing::info!(peer = %self.stream.peer, %remote, "s2s: dialback refused: policy requires a valid certificate");
            return self.dialback_error(&remote, &local, "not-authorized").await;
        }
        if self.pending_verifications >= 4 {
            return self
                .dialback_error(&remote, &local, "resource-constraint")
                .await;
        }
        self.pending_verifications += 1;
        let tx = self.verified_tx.clone();
        let (s2s, id, key) = (
            self.s2s.clone(),
            self.id.clone(),
            request.text().trim().to_string(),
        );
        tokio::spawn(async move {
            let verdict =
                dialback::verify_with_authority(s2s, local.clone(), remote.clone(), id, key).await;
            let _ = tx.send((remote, local, verdict)).await;
        });
        true
    }

    /// Whether (remote, local) would be one domain pair more than `s2s.max_domain_pairs_per_stream`
    /// on this stream, counting those being verified (a pair asked for again does not count).
    fn pairs_full(&mut self, remote: &str, local: &str) -> bool {
        let limit = self.s2s.config.max_domain_pairs_per_stream;
        let pair = (remote.to_string(), local.to_string());
        if self.authenticated.contains(&pair)
            || self.authenticated.len() + self.pending_verifications < limit
        {
            return false;
        }
        if !self.pair_cap_logged {
            self.pair_cap_logged = true;
            tracing::warn!(peer = %self.stream.peer, %remote, %local, limit, "s2s: too many domain pairs on one incoming stream (s2s.max_domain_pairs_per_stream); refusing more with resource-constraint");
        }
        true
    }

    /// Tell the peer what became of its `<db:result/>` for (remote, local). An invalid key
    /// on a stream with no other authenticated pair ends it (XEP-0220 §2.4); on a stream that
    /// carries other pairs it costs only this pair, as a `<forbidden/>` dialback error (§2.5).
    async fn dialback_answer(&mut self, remote: &str, local: &str, verdict: Verdict) -> bool {
        match verdict {
            Verdict::Valid => {
                if !self.admit(remote).await {
                    return false;
                }
                tracing::info!(peer = %self.stream.peer, %remote, %local, method = "dialback", pairs = self.authenticated.len() + 1, "s2s: incoming stream authenticated");
                self.s2s
                    .count(|m| m.s2s_authenticated("incoming", "dialback"));
                self.authenticated
                    .insert((remote.to_string(), local.to_string()));
            }
            Verdict::Invalid if !self.authenticated.is_empty() => {
                tracing::info!(peer = %self.stream.peer, %remote, %local, "s2s: dialback key invalid; the stream's other domain pairs stay");
                return self.dialback_error(remote, local, "forbidden").await;
            }
            Verdict::Invalid => {
                tracing::info!(peer = %self.stream.peer, %remote, %local, "s2s: dialback key invalid; closing the stream");
            }
            Verdict::Failed(condition) => {
                return self.dialback_error(remote, local, condition).await;
            }
        }
        let valid = verdict == Verdict::Valid;
        let answer = format!(
            "<db:result from='{}' to='{}' type='{}'/>",
            salon_xml::escape(local),
            salon_xml::escape(remote),
            if valid { "valid" } else { "invalid" }
        );
        let sent = self.stream.send(answer.as_bytes()).await.is_ok();
        if !valid {
            self.stream.close(None).await;
        }
        sent && valid
    }

    async fn dialback_error(&mut self, remote: &str, local: &str, condition: &str) -> bool {
        let answer = format!(
            "<db:result from='{}' to='{}' type='error'><error type='cancel'><{condition} xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:result>",
            salon_xml::escape(local),
            salon_xml::escape(remote),
        );
        self.stream.send(answer.as_bytes()).await.is_ok()
    }

    /// XEP-0220 §2.2: as the authoritative server, say whether a key is one we gave.
    async fn on_dialback_verify(&mut self, request: &Element) -> bool {
        let (Some(receiving), Some(originating), Some(id)) =
            (request.attr("from"), request.attr("to"), request.attr("id"))
        else {
            self.fail("improper-addressing", "db:verify needs from, to and id")
                .await;
            return false;
        };
        let valid = self.s2s.is_hosted(originating)
            && self.s2s.dialback_key(receiving, originating, id) == request.text().trim();
        let answer = format!(
            "<db:verify from='{}' to='{}' id='{}' type='{}'/>",
            salon_xml::escape(originating),
            salon_xml::escape(receiving),
            salon_xml::escape(id),
            if valid { "valid" } else { "invalid" }
        );
        self.stream.send(answer.as_bytes()).await.is_ok()
    }

    async fn on_stanza(&mut self, stanza: Element) -> bool {
        let from = stanza.attr("from").and_then(|f| jid::Jid::new(f).ok());
        let to = stanza.attr("to").and_then(|t| jid::Jid::new(t).ok());
        let (Some(from), Some(to)) = (from, to) else {
            self.fail(
                "improper-addressing",
                "stanzas between servers need from and to",
            )
            .await;
            return false;
        };
        let (remote, local) = (from.domain().as_str(), to.domain().as_str());
        let hosted = self.s2s.is_hosted(local);
        if let Err((condition, text)) =
            addressing_allowed(&self.authenticated, remote, local, hosted)
        {
            self.fail(condition, &text).await;
            return false;
        }
        // Over the rate, stop reading for a moment: TCP pushes back on the peer, and nothing is
        // lost (a bounce would make rooms drop the remote occupant).
        while !self.s2s.rate.try_take(&remote.to_string()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let Some(server) = self.s2s.server() else {
            return false;
        };
        let stanza = stream::renamespace(&stanza, SERVER, ns::CLIENT);
        // Guests do not federate in either direction (XEP-0175 §4): other servers' users meet
        // them in rooms only, and a guest could not answer anyway.
        if server.is_anonymous_host(local) {
            // The error goes straight to the link: routing refuses anything from the guests'
            // host to other servers, and this answer carries nothing of the guest's.
            let answered = crate::stanza::is_error(&stanza)
                || stanza.name() == "presence"
                || (stanza.name() == "iq" && stanza.attr("type") == Some("result"));
            if !answered {
                let error = crate::stanza::StanzaError::new(
                    crate::stanza::ErrorType::Cancel,
                    crate::stanza::StanzaCondition::NotAllowed,
                )
                .with_text("guests of this server cannot be reached from other servers");
                let reply = crate::stanza::error_reply(&stanza, &error);
                self.s2s
                    .enqueue(super::Queued::Element(reply), local, remote);
            }
            return true;
        }
        // The answer to one of our pings on the outgoing stream (XEP-0199 §4.3).
        if self.s2s.ping_answered(&stanza, remote) {
            return true;
        }
        server.route(stanza).await;
        true
    }
}

/// Whether a stanza from `remote` to `local` may pass on a stream that authenticated the
/// (remote, local) pairs in `authenticated` ((remote, "") for any of ours): the stream error
/// otherwise (RFC 6120 §4.9.3.9 `invalid-from`, §4.9.3.6 `host-unknown`).
fn addressing_allowed(
    authenticated: &HashSet<(String, String)>,
    remote: &str,
    local: &str,
    local_is_hosted: bool,
) -> Result<(), (&'static str, String)> {
    let allowed = authenticated.contains(&(remote.to_string(), local.to_string()))
        || authenticated.contains(&(remote.to_string(), String::new()));
    if !allowed {
        return Err((
            "invalid-from",
            format!("{remote} is not authenticated on this stream"),
        ));
    }
    if !local_is_hosted {
        return Err(("host-unknown", format!("{local} is not hosted here")));
    }
    Ok(())
}

fn random_id() -> String {
    use rand::Rng;
    let bytes: [u8; 12] = rand::thread_rng().gen();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_are_fresh() {
        assert_ne!(random_id(), random_id());
    }

    #[test]
    fn only_authenticated_domains_may_send_and_only_to_our_hosts() {
        let mut by_dialback = HashSet::new();
        by_dialback.insert(("peer.test".to_string(), "salon.test".to_string()));
        assert!(addressing_allowed(&by_dialback, "peer.test", "salon.test", true).is_ok());
        // Dialback authenticates one pair: not another of our domains, not another sender.
        let refused = addressing_allowed(&by_dialback, "peer.test", "rooms.salon.test", true);
        assert_eq!(refused.unwrap_err().0, "invalid-from");
        let forged = addressing_allowed(&by_dialback, "salon2.test", "salon.test", true);
        assert_eq!(forged.unwrap_err().0, "invalid-from");
        let sub = addressing_allowed(&by_dialback, "conference.peer.test", "salon.test", true);
        assert_eq!(sub.unwrap_err().0, "invalid-from");
        // SASL EXTERNAL authenticates the domain towards all of ours, but only ours.
        let mut by_certificate = HashSet::new();
        by_certificate.insert(("peer.test".to_string(), String::new()));
        assert!(addressing_allowed(&by_certificate, "peer.test", "rooms.salon.test", true).is_ok());
        let elsewhere = addressing_allowed(&by_certificate, "peer.test", "other.test", false);
        assert_eq!(elsewhere.unwrap_err().0, "host-unknown");
    }
}
