//! A client session (RFC 6120 §4–§7): stream negotiation, STARTTLS, SASL, resource binding,
//! then stamping and routing the client's stanzas. Written once for every transport, which
//! only supplies bytes in and out (see [`Transport`]).

mod bounds;
mod lend;
mod pre_auth;
mod replaced;
pub mod sasl;
pub mod shared_socket;
pub mod stream_management;
pub mod tcp;
mod transport;

pub use stream_management::state::{ResumeRequest, ResumeSlot};
pub use transport::{ReadError, Transport};

use crate::durable::LatestCommit;
use crate::extensions::LocalExtensions;
use crate::hooks::{FromClient, StreamInfo};
use crate::registry::IqScope;
use crate::server::Server;
use crate::session_handle::{Outbound, SessionHandle, Signal};
use crate::stanza::ns::SM as NS_SM;
use crate::stanza::Bare;
use crate::stanza::{self, ns, set_attr, Build, StanzaError, StreamCondition};
use minidom::Element;
use salon_xml::{ParserLimits, StreamEvent};
use sasl::common::Authenticated;
use sasl::exchange::Exchange;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stream_management::state::{next_resume, HeldAcks, StreamManagement};
use tokio::sync::mpsc;

/// Failed SASL attempts allowed on one connection before it is closed (RFC 6120 §6.4.5).
const MAX_SASL_FAILURES: u32 = 3;
/// How long a TLS handshake may take.
pub(crate) const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

pub fn parser_limits(server: &Server) -> ParserLimits {
    let limits = &server.config.limits;
    ParserLimits {
        max_stanza_bytes: limits.max_stanza_bytes,
        max_depth: limits.max_xml_depth,
        max_attributes: limits.max_attributes,
        max_token_bytes: limits.max_stanza_bytes,
    }
}

/// Counts connections per client address; dropping it releases the slot.
pub struct ConnectionGuard {
    server: Arc<Server>,
    ip: IpAddr,
}

impl ConnectionGuard {
    /// Counts the connection under its address (an IPv6 /64), unless that has
    /// `limits.connections_per_ip` already.
    pub fn admit(server: &Arc<Server>, ip: IpAddr) -> Option<ConnectionGuard> {
        let ip = crate::limits::address_key(ip);
        let mut count = server.connections.entry(ip).or_insert(0);
        if *count >= server.config.limits.connections_per_ip {
            return None;
        }
        *count += 1;
        server.metrics.connection_opened();
        Some(ConnectionGuard {
            server: server.clone(),
            ip,
        })
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.server.connections.remove_if_mut(&self.ip, |_, count| {
            *count = count.saturating_sub(1);
            *count == 0
        });
    }
}

/// Where the stream negotiation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Waiting for the client's stream header.
    AwaitingHeader,
    /// Header exchanged; TLS and SASL may happen.
    Negotiating,
    /// Authenticated, stream restarted, waiting for bind.
    Authenticated,
    /// Resource bound: stanzas flow.
    Bound,
}

/// Why the session loop stops.
enum Stop {
    /// Send this stream error, then close.
    StreamError(StreamCondition, String),
    /// The client closed its stream, or the connection dropped: close quietly.
    Closed,
    /// The connection dropped without a closing `</stream>`: a resumable session waits for
    /// the client to come back (XEP-0198 §5).
    Dropped,
    /// A new connection resumes this session (XEP-0198 §5): adopt its transport.
    Resumed(ResumeRequest),
    /// This connection's transport went to the session it resumed; nothing is left to do.
    HandedOver,
}

struct Session {
    server: Arc<Server>,
    transport: Box<dyn Transport>,
    stage: Stage,
    /// The host named in the client's stream header.
    host: String,
    header_sent: bool,
    authenticated: Option<Authenticated>,
    sasl: Option<Exchange>,
    sasl_failures: u32,
    handle: Option<Arc<SessionHandle>>,

    /// Token bucket for the per-session stanza rate.
    tokens: f64,
    last_refill: Instant,
    /// XEP-0198 state, once the client enabled it.
    sm: Option<StreamManagement>,
    /// Where a resuming connection reaches this session.
    resume_requests: Option<mpsc::Receiver<ResumeRequest>>,
    /// XEP-0198 answers waiting for what they count to be durable.
    held_acks: HeldAcks,
    /// Stream-level modules' state for this connection (see [`crate::hooks::StreamHook`]).
    local: LocalExtensions,
    /// The socket is lent to delivering tasks (see `lend.rs`).
    lent: bool,
}

/// Drive one client connection to its end.
pub async fn run(server: Arc<Server>, transport: Box<dyn Transport>) {
    let mut session = Session {
        host: server.config.domain.clone(),
        server,
        transport,
        stage: Stage::AwaitingHeader,
        header_sent: false,
        authenticated: None,
        sasl: None,
        sasl_failures: 0,
        handle: None,

        tokens: 0.0,
        last_refill: Instant::now(),
        sm: None,
        resume_requests: None,
        held_acks: HeldAcks::default(),
        local: LocalExtensions::default(),
        lent: false,
    };
    session.tokens = session.rate() * 2.0;
    let stop = loop {
        match session.serve().await {
            // The rarer steps are boxed too: the task keeps room for its largest await point.
            Stop::Resumed(request) => Box::pin(session.adopt(request)).await,
            Stop::Dropped if session.sm.as_ref().is_some_and(|sm| sm.resumable()) => {
                match Box::pin(session.wait_detached()).await {
                    Some(request) => Box::pin(session.adopt(request)).await,
                    None => break Stop::Closed,
                }
            }
            Stop::Dropped => break Stop::Closed,
            Stop::HandedOver => return,
            stop => break stop,
        }
    };
    Box::pin(session.finish(stop)).await;
}

impl Session {
    fn rate(&self) -> f64 {
        f64::from(self.server.config.limits.stanzas_per_second)
    }

    async fn serve(&mut self) -> Stop {
        let auth_deadline =
            tokio::time::Instant::now() + Duration::from_secs(self.server.config.c2s.auth_timeout);
        let mut shutdown = self.server.shutdown_signal();
        let mut events = Vec::new();
        loop {
            // Bound sessions hear of shutdown through a kick; this catches one that bound
            // after the kicks went out.
            if self.stage == Stage::Bound && self.server.is_shutting_down() {
                return Stop::StreamError(
                    StreamCondition::SystemShutdown,
                    "the server is shutting down".into(),
                );
            }
            self.lend_socket();
            let Session {
                server,
                transport,
                handle,
                resume_requests,
                held_acks,
                ..
            } = self;
            let latest = || {
                server
                    .extensions
                    .get::<LatestCommit>()
                    .and_then(|l| l.get())
            };
            tokio::select! {
                biased;
                signal = next_signal(handle.as_deref()) => match (self.take_socket_back(), signal) {
                    (_, Signal::Kicked(kick)) => return Stop::StreamError(kick.condition, kick.text),
                    (rest_first, Signal::Queued(batch)) => {
                        // Everything queued goes out in the same write (unless a stream
                        // module holds some back, as client state indication does).
                        let ready = self.server.modules.hooks.outgoing(&mut self.local, batch);
                        if ready.is_empty() && !rest_first {
                            continue;
                        }
                        for item in ready {
                            self.write_stanza(item);
                        }
                        if let Some(stop) = self.unacked_overflow() {
                            return stop;
                        }
                        if self.sm.as_mut().is_some_and(|sm| sm.should_request()) {
                            self.queue(format!("<r xmlns='{NS_SM}'/>").as_bytes());
                        }
                        if let Err(stop) = self.write_out(Stop::Dropped).await {
                            return stop;
                        }
                    }
                },
                read = std::future::poll_fn(|cx| transport.poll_read_events(cx, &mut events)) => {
                    let result = read;
                    if self.take_socket_back() {
                        if let Err(stop) = self.write_out(Stop::Dropped).await {
                            return stop;
                        }
                    }
                    for event in std::mem::take(&mut events) {
                        // Boxed: handling an event (SASL, bind, routing, every module's
                        // hooks) takes a large future; inline, every idle session would keep
                        // room for it in its task for as long as it lives.
                        if let Err(stop) = Box::pin(self.on_event(event)).await {
                            return stop;
                        }
                    }
                    if let Some(stop) = self.unauthenticated_overflow() {
                        return stop;
                    }
                    match result {
                        Ok(()) => {}
                        Err(ReadError::Parse(e)) => {
                            tracing::info!(peer = %self.transport.peer_ip(), error = %e, "closing stream: bad XML");
                            return Stop::StreamError(e.condition(), e.to_string());
                        }
                                                Err(ReadError::Io(e)) => {
                            tracing::debug!(peer = %self.transport.peer_ip(), error = %e, "connection error");
                            return Stop::Dropped;
                        }
                        Err(ReadError::Closed) => return Stop::Dropped,
                        Err(ReadError::StanzaTimeout(limit)) => return self.stanza_timed_out(limit),
                    }
                }
                request = next_resume(resume_requests.as_mut()) => {
                    self.take_socket_back();
                    if let Some(request) = request {
                        return Stop::Resumed(request);
                    }
                }
                answers = std::future::poll_fn(|cx| held_acks.poll_ready(handle.as_deref(), latest, cx)), if !held_acks.is_empty() => {
                    if let Err(stop) = self.answer_acks(answers).await {
                        return stop;
                    }
                }
                _ = tokio::time::sleep_until(auth_deadline), if self.stage != Stage::Bound => {
                    return Stop::StreamError(StreamCondition::ConnectionTimeout, "authentication took too long".into());
                }
                _ = crate::server::shutdown_requested(&mut shutdown), if self.stage != Stage::Bound => {
                    return Stop::StreamError(StreamCondition::SystemShutdown, "the server is shutting down".into());
                }
            }
        }
    }

    /// Queue one element's bytes.
    fn queue(&mut self, bytes: &[u8]) {
        self.transport.out().extend_from_slice(bytes);
        self.transport.end_element();
    }

    async fn send_raw(&mut self, text: &str) -> Result<(), Stop> {
        self.queue(text.as_bytes());
        self.write_out(Stop::Closed).await
    }

    /// Send a stanza (counted for stream management, unlike nonzas sent with `send_raw`).
    async fn send(&mut self, element: &Element) -> Result<(), Stop> {
        let bytes = bytes::Bytes::from(salon_xml::serialize(element));
        self.write_stanza(Outbound::Stanza(bytes));
        if let Some(stop) = self.unacked_overflow() {
            return Err(stop);
        }
        self.write_out(Stop::Dropped).await
    }

    /// Queue a stanza for the client, keeping a copy until it is acknowledged.
    fn write_stanza(&mut self, item: Outbound) {
        item.write_to(self.transport.out());
        self.transport.end_element();
        if let Some(sm) = self.sm.as_mut() {
            sm.sent(item);
        }
    }

    async fn on_event(&mut self, event: StreamEvent) -> Result<(), Stop> {
        match event {
            StreamEvent::StreamOpen {
                namespace,
                name,
                attributes,
                default_namespace,
            } => {
                self.on_stream_open(&namespace, &name, &attributes, default_namespace.as_deref())
                    .await
            }
            StreamEvent::StreamClose => Err(Stop::Closed),
            StreamEvent::Stanza(element) => {
                self.throttle().await;
                self.on_element(element).await
            }
        }
    }

    /// Slow a client that sends faster than `limits.stanzas_per_second` by not reading from
    /// it, so TCP pushes back, rather than disconnecting it.
    async fn throttle(&mut self) {
        let now = Instant::now();
        let rate = self.rate();
        self.tokens = (self.tokens + now.duration_since(self.last_refill).as_secs_f64() * rate)
            .min(rate * 2.0);
        self.last_refill = now;
        self.tokens -= 1.0;
        if self.tokens < 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(-self.tokens / rate)).await;
        }
    }

    async fn on_stream_open(
        &mut self,
        namespace: &str,
        name: &str,
        attributes: &[(String, String)],
        default_namespace: Option<&str>,
    ) -> Result<(), Stop> {
        let attr = |key: &str| {
            attributes
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        if let Some(to) = attr("to") {
            match jid::BareJid::new(to) {
                Ok(host)
                    if host.node().is_none() && self.server.is_local_user_host(host.as_str()) =>
                {
                    self.host = host.to_string();
                }
                _ => {
                    self.send_header().await?;
                    return Err(Stop::StreamError(
                        StreamCondition::HostUnknown,
                        format!("this server does not serve {to}"),
                    ));
                }
            }
        }
        self.send_header().await?;
        if let Some((condition, text)) =
            self.transport
                .check_header(namespace, name, default_namespace)
        {
            return Err(Stop::StreamError(condition, text.into()));
        }
        if attr("version").is_none_or(|v| !v.starts_with("1.")) {
            return Err(Stop::StreamError(
                StreamCondition::UnsupportedVersion,
                "XMPP 1.0 streams only".into(),
            ));
        }
        if self.authenticated.is_none()
            && self
                .server
                .bans
                .refuses_address(self.transport.peer_ip())
                .await
        {
            tracing::info!(peer = %self.transport.peer_ip(), "stream refused: banned address");
            return Err(Stop::StreamError(
                StreamCondition::PolicyViolation,
                "this address is banned from this server".into(),
            ));
        }
        if self.stage == Stage::AwaitingHeader {
            self.stage = if self.authenticated.is_some() {
                Stage::Authenticated
            } else {
                Stage::Negotiating
            };
        }
        let features = self.features();
        self.send(&features).await
    }

    async fn send_header(&mut self) -> Result<(), Stop> {
        let id = format!("{:032x}", rand::random::<u128>());
        let header = self.transport.stream_header(&self.host, &id, None);
        self.header_sent = true;
        self.send_raw(&header).await
    }

    fn features(&self) -> Element {
        let mut features = stanza::stream_features();
        let secure = self.transport.is_secure();
        let require_tls = self.server.config.c2s.require_encryption;
        match self.authenticated {
            None => {
                if self.transport.can_starttls() {
                    let mut starttls = Build::new("starttls", ns::TLS);
                    if require_tls {
                        starttls = starttls.child(Element::bare("required", ns::TLS));
                    }
                    features = features.child(starttls.build());
                }
                if secure || !require_tls {
                    let anonymous = self.server.is_anonymous_host(&self.host);
                    let mechanisms =
                        sasl::offered_mechanisms(anonymous, &self.transport.channel_bindings());
                    features = features.child(
                        Build::new("mechanisms", ns::SASL)
                            .children(
                                mechanisms
                                    .into_iter()
                                    .map(|m| Build::new("mechanism", ns::SASL).text(m).build()),
                            )
                            .build(),
                    );
                    let bindings = self.transport.channel_bindings().offered();
                    if !anonymous && !bindings.is_empty() {
                        features = features.child(
                            Build::new("sasl-channel-binding", ns::SASL_CB)
                                .children(bindings.into_iter().map(|t| {
                                    Build::new("channel-binding", ns::SASL_CB)
                                        .attr("type", t)
                                        .build()
                                }))
                                .build(),
                        );
                    }
                }
            }
            Some(_) => {
                features = features
                    .child(Element::bare("sm", ns::SM))
                    .child(Element::bare("bind", ns::BIND))
                    .child(
                        Build::new("session", ns::SESSION)
                            .child(Element::bare("optional", ns::SESSION))
                            .build(),
                    );
            }
        }
        let stream = StreamInfo {
            host: &self.host,
            anonymous_host: self.server.is_anonymous_host(&self.host),
            authenticated: self.authenticated.is_some(),
        };
        features
            .children(
                self.server
                    .modules
                    .hooks
                    .stream_features(&self.server, &stream),
            )
            .build()
    }

    async fn on_element(&mut self, element: Element) -> Result<(), Stop> {
        if element.ns() == ns::SM {
            return self.on_stream_management(element).await;
        }
        if self.stage == Stage::Bound && element.ns() != ns::CLIENT {
            // A nonza some stream module understands (XEP-0352's `<active/>`, say).
            if let Some(write) = self.server.modules.hooks.nonza(&mut self.local, &element) {
                if !write.is_empty() {
                    for item in write {
                        self.write_stanza(item);
                    }
                    self.write_out(Stop::Dropped).await?;
                }
                return Ok(());
            }
        }
        match self.stage {
            Stage::AwaitingHeader => Err(Stop::StreamError(
                StreamCondition::NotWellFormed,
                "expected a stream header".into(),
            )),
            Stage::Negotiating => self.negotiate(element).await,
            Stage::Authenticated => self.bind(element).await,
            Stage::Bound => self.on_stanza(element).await,
        }
    }

    async fn negotiate(&mut self, element: Element) -> Result<(), Stop> {
        let namespace = element.ns();
        match (element.name(), namespace.as_str()) {
            ("starttls", ns::TLS) => self.starttls().await,
            ("auth", ns::SASL) => self.sasl_auth(&element).await,
            ("response", ns::SASL) => self.sasl_response(&element).await,
            ("abort", ns::SASL) => {
                self.sasl = None;
                self.sasl_failure("aborted", None).await
            }
            ("iq", ns::CLIENT) if self.allows_pre_auth() => self.pre_auth_iq(element).await,
            _ => Err(Stop::StreamError(
                StreamCondition::NotAuthorized,
                "authenticate before sending stanzas".into(),
            )),
        }
    }

    async fn starttls(&mut self) -> Result<(), Stop> {
        if !self.transport.can_starttls() {
            self.send_raw(&format!("<failure xmlns='{}'/>", ns::TLS))
                .await?;
            return Err(Stop::Closed);
        }
        self.send_raw(&format!("<proceed xmlns='{}'/>", ns::TLS))
            .await?;
        let config = self.server.tls.starttls.clone();
        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, self.transport.starttls(config)).await {
            Ok(Ok(())) => {
                self.stage = Stage::AwaitingHeader;
                Ok(())
            }
            Ok(Err(e)) => {
                tracing::debug!(peer = %self.transport.peer_ip(), error = %e, "STARTTLS handshake failed");
                Err(Stop::Closed)
            }
            Err(_) => Err(Stop::Closed),
        }
    }

    /// RFC 6120 §7: resource binding.
    async fn bind(&mut self, element: Element) -> Result<(), Stop> {
        let bind = element.get_child("bind", ns::BIND);
        if element.name() != "iq" || element.attr("type") != Some("set") || bind.is_none() {
            if element.name() == "iq" && element.get_child("session", ns::SESSION).is_some() {
                // Legacy session establishment before bind is an error in RFC 3921 terms.
                let reply = stanza::error_reply(&element, &StanzaError::not_allowed());
                return self.send(&reply).await;
            }
            return Err(Stop::StreamError(
                StreamCondition::NotAuthorized,
                "bind a resource before sending stanzas".into(),
            ));
        }
        let requested = bind
            .and_then(|b| b.get_child("resource", ns::BIND))
            .map(|r| r.text())
            .filter(|r| !r.trim().is_empty());
        let (node, anonymous) = match &self.authenticated {
            Some(Authenticated::User(user)) => (user.clone(), false),
            Some(Authenticated::Anonymous) => (format!("{:016x}", rand::random::<u64>()), true),
            None => return Err(Stop::Closed),
        };
        let resource = requested.unwrap_or_else(|| format!("salon-{:08x}", rand::random::<u32>()));
        let full = match jid::FullJid::new(&format!("{node}@{}/{resource}", self.host)) {
            Ok(full) => full,
            Err(_) => {
                let reply = stanza::error_reply(
                    &element,
                    &StanzaError::bad_request("the resource is not a valid resourcepart"),
                );
                return self.send(&reply).await;
            }
        };
        let handle = SessionHandle::new(
            full.clone(),
            anonymous,
            self.server.config.limits.outbound_queue,
            self.transport.peer_ip(),
        );
        if let Some(old) = self.server.router.bind(handle.clone()) {
            tracing::info!(jid = %full, "new session replaces the old one with the same resource");
            replaced::close(&old).await;
        }
        self.handle = Some(handle.clone());

        self.stage = Stage::Bound;
        tracing::info!(jid = %full, peer = %self.transport.peer_ip(), "bound");
        self.server
            .modules
            .hooks
            .session_bound(&self.server, &handle)
            .await;
        let reply = stanza::iq_result(
            &element,
            Some(
                Build::new("bind", ns::BIND)
                    .child(Build::new("jid", ns::BIND).text(full.to_string()).build())
                    .build(),
            ),
        );
        self.send(&reply).await
    }

    async fn on_stanza(&mut self, mut element: Element) -> Result<(), Stop> {
        let Some(handle) = self.handle.clone() else {
            return Err(Stop::Closed);
        };
        if let Some(sm) = self.sm.as_mut() {
            sm.received();
        }
        if element.ns() != ns::CLIENT || !matches!(element.name(), "message" | "presence" | "iq") {
            return Err(Stop::StreamError(
                StreamCondition::UnsupportedStanzaType,
                format!(
                    "<{}/> in {} is not handled here",
                    element.name(),
                    element.ns()
                ),
            ));
        }
        self.server.metrics.stanza_received(element.name());
        // RFC 6120 §8.1.2.1: the server stamps the sender's full JID.
        set_attr(&mut element, "from", handle.jid.to_string());
        let to = match element.attr("to") {
            Some(to) => match stanza::parse_jid(to) {
                Ok(to) => Some(to),
                Err(_) => {
                    let reply = stanza::error_reply(&element, &StanzaError::jid_malformed());
                    return self.send(&reply).await;
                }
            },
            None => None,
        };
        if let Some(to) = &to {
            // Normalise the address as routing compares it.
            set_attr(&mut element, "to", to.to_string());
        }
        if element.name() == "iq" {
            if let Some(answer) = Self::check_iq(&element) {
                return self.send(&answer).await;
            }
        } else if element.name() == "message" && to.is_none() {
            // RFC 6120 §10.3.1: a message without `to` is for the sender's own account.
            set_attr(&mut element, "to", handle.jid.bare().to_string());
        }
        let mut point = FromClient::new(handle.clone(), to);
        let hooks = &self.server.modules.hooks;
        let Some(element) = hooks.from_client(&self.server, &point, element).await else {
            point.routed();
            return Ok(());
        };
        let handled = match element.name() {
            "iq" => self.on_iq(element, point.to.take(), &handle).await,
            _ => {
                self.server.route(element).await;
                Ok(())
            }
        };
        point.routed();
        handled
    }

    /// The answer to an IQ that is malformed (RFC 6120 §8.2.3) or needs nothing done (the
    /// legacy session request); `None` for one to handle.
    fn check_iq(element: &Element) -> Option<Element> {
        let kind = element.attr("type");
        if element.attr("id").is_none() || !matches!(kind, Some("get" | "set" | "result" | "error"))
        {
            if stanza::is_error(element) {
                return None;
            }
            return Some(stanza::error_reply(
                element,
                &StanzaError::bad_request(
                    "an IQ needs an id and a type of get, set, result or error",
                ),
            ));
        }
        if element.get_child("session", ns::SESSION).is_some() && element.attr("to").is_none() {
            // RFC 3921 session establishment, kept for old clients: nothing to do.
            return Some(stanza::iq_result(element, None));
        }
        None
    }

    async fn on_iq(
        &mut self,
        element: Element,
        to: Option<jid::Jid>,
        handle: &Arc<SessionHandle>,
    ) -> Result<(), Stop> {
        let own_bare = handle.jid.bare();
        match to {
            None => {
                self.server
                    .handle_iq(element, IqScope::Account, own_bare)
                    .await;
            }
            Some(to) if to.is_bare() && to.bare() == own_bare => {
                self.server
                    .handle_iq(element, IqScope::Account, own_bare)
                    .await;
            }
            Some(_) => self.server.route(element).await,
        }
        Ok(())
    }

    /// Leave the router, tell contacts, and close the stream as `stop` says.
    async fn finish(mut self, stop: Stop) {
        self.take_socket_back();
        if let Some(id) = self.sm.as_ref().and_then(|sm| sm.id.clone()) {
            self.server.resumable.remove(&id);
        }
        if let Some(handle) = self.handle.take() {
            self.server.router.unbind(&handle);
            // What the client never confirmed, and what a stream module held back for it, go
            // to the modules, so that nothing is lost with the session (XEP-0198 §4).
            let mut unacked: Vec<Outbound> = self
                .sm
                .as_ref()
                .map(|sm| sm.unacked().cloned().collect())
                .unwrap_or_default();
            unacked.extend(self.server.modules.hooks.detached(&mut self.local));
            self.server
                .modules
                .hooks
                .session_ended(&self.server, &handle, &mut unacked)
                .await;
            handle.mark_ended();
            // Anonymous visitors leave nothing behind.
            if handle.anonymous {
                if let Some(node) = handle.jid.node() {
                    let _ = self
                        .server
                        .anonymous_storage
                        .delete_account(node.as_str(), handle.jid.domain().as_str())
                        .await;
                }
            }
            tracing::info!(jid = %handle.jid, "session ended");
        }
        let footer = self.transport.stream_footer();
        match stop {
            Stop::StreamError(condition, text) => {
                if !self.header_sent {
                    let _ = self.send_header().await;
                }
                let error = format!(
                    "<stream:error xmlns:stream='{}'><{condition} xmlns='{}'/><text xmlns='{}'>{}</text></stream:error>",
                    ns::STREAM,
                    ns::STREAMS_ERROR,
                    ns::STREAMS_ERROR,
                    salon_xml::escape(&text)
                );
                self.queue(error.as_bytes());
                self.queue(footer.as_bytes());
            }
            _ => self.queue(footer.as_bytes()),
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.transport.flush()).await;
        self.transport.close().await;
    }
}

/// Stanzas queued for the session, or a kick; never, before the session is bound.
async fn next_signal(handle: Option<&SessionHandle>) -> Signal {
    match handle {
        Some(handle) => handle.signal().await,
        None => std::future::pending().await,
    }
}
