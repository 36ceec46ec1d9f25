//! The running server: the shared state handed to every session and module (configuration,
//! storage, router, the modules' registry), routing by address (RFC 6120 §10), and orderly
//! shutdown (`<system-shutdown/>` to every stream, storage flushed). It knows no feature: those
//! reach it through the registry's handlers and hooks.

use crate::config::Config;
use crate::extensions::Extensions;
use crate::hooks::ToAccount;
use crate::registry::{IqKind, IqRequest, IqScope, Registry};
use crate::router::Router;
use crate::service::ServiceContext;
use crate::service::ServiceCore;
use crate::stanza::Bare;
use crate::stanza::{self, StanzaError, StreamCondition};
use crate::storage::{memory::MemoryStorage, Storage};
use crate::tls::TlsSetup;
use minidom::Element;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::watch;

/// Failed-login accounting (RFC 6120 §13.8 countermeasure against password guessing): at most
/// `limit` failures per key in any sliding minute. Kept per client address, and per address
/// and account, so that one client fumbling its password locks its account from its address
/// without using up the budget of everyone behind the same address.
pub struct LoginLimiter<K = IpAddr> {
    limit: usize,
    failures: dashmap::DashMap<K, std::collections::VecDeque<Instant>>,
}

impl<K: std::hash::Hash + Eq> LoginLimiter<K> {
    const WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

    pub fn new(failures_per_minute: u32) -> LoginLimiter<K> {
        LoginLimiter {
            limit: failures_per_minute.max(1) as usize,
            failures: dashmap::DashMap::new(),
        }
    }

    /// Whether this address (or address and account) may try to log in now.
    pub fn may_try(&self, key: K) -> bool {
        let Some(mut recent) = self.failures.get_mut(&key) else {
            return true;
        };
        let now = Instant::now();
        while recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > Self::WINDOW)
        {
            recent.pop_front();
        }
        recent.len() < self.limit
    }

    /// Record one failed login.
    pub fn failed(&self, key: K) {
        // Forget addresses whose failures are all outside the window, so the table stays
        // as small as the set of recent offenders.
        if self.failures.len() > 1024 {
            let now = Instant::now();
            self.failures.retain(|_, recent| {
                recent
                    .back()
                    .is_some_and(|t| now.duration_since(*t) <= Self::WINDOW)
            });
        }
        let mut recent = self.failures.entry(key).or_default();
        recent.push_back(Instant::now());
        while recent.len() > self.limit {
            recent.pop_front();
        }
    }
}

pub struct Server {
    pub config: Config,
    /// Accounts, rosters and the rest for the main domain.
    pub storage: Arc<dyn Storage>,
    /// The anonymous host's state: memory only, gone when the visitor is.
    pub anonymous_storage: Arc<dyn Storage>,
    pub router: Router,
    pub modules: Registry<Server>,
    /// Server-wide state of feature modules and services, each in a slot of its own type.
    pub extensions: Extensions,
    pub tls: TlsSetup,
    /// Failed logins per address (an IPv6 /64: see `limits::address_key`).
    pub login_failures: LoginLimiter,
    /// Failed logins per (address, account localpart).
    pub account_login_failures: LoginLimiter<(IpAddr, String)>,
    /// Connections per address (an IPv6 /64).
    pub connections: dashmap::DashMap<IpAddr, usize>,
    /// Logins started per address (an IPv6 /64) in the last minute.
    pub logins: crate::limits::RateWindow<IpAddr>,
    /// Server-wide bans (`salon ban`).
    pub bans: crate::bans::BanList,
    /// Sessions that can be resumed (XEP-0198), by resumption id.
    pub resumable: dashmap::DashMap<String, crate::session::stream_management::state::ResumeSlot>,
    pub started: Instant,
    shutdown: watch::Sender<bool>,
    /// Set before bound sessions are kicked at shutdown, for a session that binds meanwhile.
    shutting_down: std::sync::atomic::AtomicBool,
    pub metrics: crate::metrics::Metrics,
    /// Federation, when a module provides it (see `remote.rs`); empty: other domains bounce.
    pub remote: std::sync::OnceLock<Arc<dyn crate::remote::RemoteRouter>>,
}

impl Server {
    /// A server with the modules in `modules` (see `salon_server::build` for the built-in
    /// ones). Services register their domains on the router afterwards.
    pub fn new(
        config: Config,
        storage: Arc<dyn Storage>,
        modules: Registry<Server>,
    ) -> anyhow::Result<Arc<Server>> {
        let tls = TlsSetup::from_config(&config)?;
        let (shutdown, _) = watch::channel(false);
        Ok(Arc::new(Server {
            extensions: Extensions::default(),
            login_failures: LoginLimiter::new(config.limits.login_failures_per_minute),
            account_login_failures: LoginLimiter::new(
                config.limits.login_failures_per_account_per_minute,
            ),
            logins: crate::limits::RateWindow::new(
                config.limits.logins_per_minute as usize,
                std::time::Duration::from_secs(60),
            ),
            bans: crate::bans::BanList::new(storage.clone()),
            config,
            storage,
            anonymous_storage: Arc::new(MemoryStorage::new()),
            router: Router::default(),
            modules,
            tls,
            connections: dashmap::DashMap::new(),
            resumable: dashmap::DashMap::new(),
            started: Instant::now(),
            shutdown,
            shutting_down: std::sync::atomic::AtomicBool::new(false),
            metrics: crate::metrics::Metrics::new(),
            remote: std::sync::OnceLock::new(),
        }))
    }

    /// The Prometheus exposition (`listen.metrics`), with the gauges read now.
    pub fn metrics_text(&self) -> String {
        let (account_sessions, guest_sessions) = self.router.session_counts();
        self.metrics.render(&crate::metrics::ServerGauges {
            account_sessions,
            guest_sessions,
            connections: self.connections.iter().map(|e| *e.value()).sum(),
            uptime_seconds: self.started.elapsed().as_secs(),
        })
    }

    /// Whether `domain` is a host whose users log in here.
    pub fn is_local_user_host(&self, domain: &str) -> bool {
        domain == self.config.domain || Some(domain) == self.config.anonymous_domain()
    }

    pub fn is_anonymous_host(&self, domain: &str) -> bool {
        Some(domain) == self.config.anonymous_domain()
    }

    /// The storage holding accounts of `domain`.
    pub fn storage_for(&self, domain: &str) -> &Arc<dyn Storage> {
        if self.is_anonymous_host(domain) {
            &self.anonymous_storage
        } else {
            &self.storage
        }
    }

    /// Whether `bare` names an existing account. Anonymous accounts exist while online.
    pub async fn account_exists(&self, bare: &jid::BareJid) -> bool {
        let Some(node) = bare.node() else {
            return false;
        };
        let domain = bare.domain().as_str();
        if self.is_anonymous_host(domain) {
            return self.router.is_online(bare.as_str());
        }
        if domain != self.config.domain {
            return false;
        }
        matches!(
            self.storage.credentials(node.as_str(), domain).await,
            Ok(Some(_))
        )
    }

    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Whether shutdown has begun. Bound sessions are told by a kick; this covers one that
    /// bound after the kicks went out.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Route a stanza whose `from` is already stamped (RFC 6121 §8). Errors go back to the
    /// sender as stanza errors.
    pub fn route(
        self: &Arc<Self>,
        stanza: Element,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        // Boxed because delivery can route again (subscription answers, bounces).
        Box::pin(self.route_inner(stanza))
    }

    async fn route_inner(self: &Arc<Self>, stanza: Element) {
        let to = match stanza.attr("to").map(crate::jid_memo::parse) {
            Some(Ok(to)) => to,
            Some(Err(_)) => {
                self.bounce(&stanza, StanzaError::jid_malformed());
                return;
            }
            None => {
                // Only local senders reach here without `to`; the session resolves those.
                return;
            }
        };
        let domain = to.domain().as_str();
        if self.is_local_user_host(domain) {
            self.deliver_local(stanza, to).await;
        } else if let Some((domain, service)) = self.router.service(domain) {
            let context = ServiceContext::new(self.clone(), domain);
            service.handle(&context, stanza).await;
        } else {
            self.route_remote(stanza, domain);
        }
    }

    /// A stanza for a domain not hosted here: to the federation module, if there is one. Only
    /// our own domains send there (no relaying for others), and never the anonymous host:
    /// guests do not federate (XEP-0175 §4), though remote users reach them through rooms.
    fn route_remote(self: &Arc<Self>, stanza: Element, to_domain: &str) {
        let from_domain = stanza
            .attr("from")
            .and_then(|from| crate::jid_memo::parse(from).ok())
            .map(|from| from.domain().to_string())
            .unwrap_or_default();
        let hosted =
            self.is_local_user_host(&from_domain) || self.router.service(&from_domain).is_some();
        if !hosted {
            tracing::debug!(from = %from_domain, to = %to_domain, "not relaying between other domains");
            return;
        }
        if self.is_anonymous_host(&from_domain) {
            self.bounce(
                &stanza,
                StanzaError::new(
                    stanza::ErrorType::Cancel,
                    stanza::StanzaCondition::NotAllowed,
                )
                .with_text("guests cannot reach other servers"),
            );
            return;
        }
        match self.remote.get() {
            Some(remote) => remote.send(stanza, &from_domain, to_domain),
            None => self.bounce(
                &stanza,
                StanzaError::new(
                    stanza::ErrorType::Cancel,
                    stanza::StanzaCondition::RemoteServerNotFound,
                )
                .with_text(format!("{to_domain} is not served here")),
            ),
        }
    }

    /// A stanza for a local user host: the server itself answers IQs to its domain; stanzas to
    /// accounts go through the modules' hooks (RFC 6121 delivery is one of them).
    async fn deliver_local(self: &Arc<Self>, stanza: Element, to: jid::Jid) {
        if to.node().is_none() {
            if stanza.name() == "iq" {
                self.handle_iq(stanza, IqScope::Server, to.bare()).await;
            } else if stanza.name() == "message" {
                // RFC 6120 §10.3.1: a message to the server that it cannot act on.
                self.bounce(&stanza, StanzaError::service_unavailable());
            }
            return;
        }
        let point = ToAccount {
            account: to.bare(),
            to,
        };
        let unhandled = self.modules.hooks.to_account(self, &point, stanza).await;
        // No module took it: as if nobody were there (RFC 6120 §10.5.4).
        if let Some(stanza) = unhandled {
            let asks = match stanza.name() {
                "message" => true,
                "iq" => matches!(stanza.attr("type"), Some("get" | "set")),
                _ => false,
            };
            if asks {
                self.bounce(&stanza, StanzaError::service_unavailable());
            }
        }
    }

    /// Send an error reply for `stanza` back to its sender, unless it is itself an error
    /// (RFC 6120 §8.3.1) or an IQ result (§8.2.3: a result or error is never answered, so one
    /// addressed to nobody is dropped).
    pub fn bounce(self: &Arc<Self>, stanza: &Element, error: StanzaError) {
        if stanza::is_error(stanza)
            || (stanza.name() == "iq" && stanza.attr("type") == Some("result"))
        {
            return;
        }
        let reply = stanza::error_reply(stanza, &error);
        self.deliver_to_sender(reply);
    }

    /// Answer the IQ `request` with a result carrying `payload`, or with the error.
    pub fn answer_iq(
        self: &Arc<Self>,
        request: &Element,
        reply: Result<Option<Element>, StanzaError>,
    ) {
        match reply {
            Ok(payload) => self.deliver_to_sender(stanza::iq_result(request, payload)),
            Err(error) => self.bounce(request, error),
        }
    }

    /// Deliver a reply to whoever sent the request: a local session (a full JID, if still
    /// bound), or a service host such as a room that asked on behalf of an occupant.
    pub fn deliver_to_sender(self: &Arc<Self>, reply: Element) {
        let Some(Ok(to)) = reply.attr("to").map(jid::Jid::new) else {
            return;
        };
        let domain = to.domain().as_str();
        if !self.is_local_user_host(domain) && self.router.service(domain).is_none() {
            // A remote sender: the reply goes back over federation.
            if self.remote.get().is_some() {
                let server = self.clone();
                tokio::spawn(async move { server.route(reply).await });
            }
            return;
        }
        let Ok(to) = to.try_into_full() else {
            return;
        };
        if let Some(session) = self.router.session(&to) {
            session.send_element(&reply);
        } else if self.router.service(to.domain().as_str()).is_some() {
            let server = self.clone();
            tokio::spawn(async move { server.route(reply).await });
        }
    }

    /// Answer an IQ addressed to the server or to an account, through the module registry.
    pub async fn handle_iq(self: &Arc<Self>, stanza: Element, scope: IqScope, to: jid::BareJid) {
        let kind = match stanza.attr("type") {
            Some("get") => IqKind::Get,
            Some("set") => IqKind::Set,
            // Results and errors addressed to the server or a bare JID end here.
            _ => return,
        };
        // Any sender gets an answer (RFC 6120 §8.2.3, §10): a full JID for a client, a bare
        // JID or domain for another server and its users (a server's disco or ping).
        let Some(Ok(from)) = stanza.attr("from").map(jid::Jid::new) else {
            return;
        };
        let payload_count = stanza.children().count();
        if payload_count != 1 {
            self.bounce(
                &stanza,
                StanzaError::bad_request("an IQ get or set carries exactly one payload"),
            );
            return;
        }
        let namespace = stanza.children().next().map(|c| c.ns()).unwrap_or_default();
        let Some(handler) = self.modules.handler(scope, kind, &namespace) else {
            self.bounce(&stanza, StanzaError::service_unavailable());
            return;
        };
        let request = IqRequest {
            from,
            to,
            kind,
            stanza: stanza.clone(),
        };
        let reply = handler.handle(self, request).await;
        self.answer_iq(&stanza, reply);
    }

    /// Start the modules' background work (state loaded, sweeps started). Called once, before
    /// the listeners accept anyone.
    pub async fn start(self: &Arc<Self>) {
        self.modules.hooks.server_started(self).await;
    }

    /// Close every stream with `<system-shutdown/>`, wait briefly for them to go, flush storage.
    pub async fn shutdown(self: &Arc<Self>) {
        self.shutting_down
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = self.shutdown.send(true);
        for session in self.router.all_sessions() {
            session.kick(
                StreamCondition::SystemShutdown,
                "the server is shutting down",
            );
        }
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        // Connections, not bound sessions: a session leaves the router before it has written
        // its closing stream error, and the connection slot is released only after that.
        while !self.connections.is_empty() && Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        // Modules write what they buffered (the archive) before the database is closed.
        self.modules.hooks.server_stopping(self).await;
        if let Err(e) = self.storage.flush().await {
            tracing::error!(error = %e, "flushing storage at shutdown");
        }
    }
}

pub use crate::service::shutdown_requested;

/// What services may use of the server (see [`ServiceCore`]).
impl ServiceCore for Server {
    fn config(&self) -> &Config {
        &self.config
    }

    fn is_local_user_host(&self, domain: &str) -> bool {
        Server::is_local_user_host(self, domain)
    }

    fn is_anonymous_host(&self, domain: &str) -> bool {
        Server::is_anonymous_host(self, domain)
    }

    fn route(
        self: Arc<Self>,
        stanza: Element,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(async move { Server::route(&self, stanza).await })
    }

    fn bounce(self: Arc<Self>, stanza: &Element, error: StanzaError) {
        Server::bounce(&self, stanza, error);
    }

    fn answer_iq(self: Arc<Self>, request: &Element, reply: Result<Option<Element>, StanzaError>) {
        Server::answer_iq(&self, request, reply);
    }

    fn local_session(
        &self,
        full: &jid::FullJid,
    ) -> Option<Arc<crate::session_handle::SessionHandle>> {
        self.router.session(full)
    }

    fn send_remote(&self, stanza: bytes::Bytes, from_domain: &str, to_domain: &str) {
        if let Some(remote) = self.remote.get() {
            remote.send_serialized(stanza, from_domain, to_domain);
        }
    }

    fn storage(&self) -> Arc<dyn Storage> {
        self.storage.clone()
    }

    fn extensions(&self) -> &Extensions {
        &self.extensions
    }

    fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }

    fn shutdown_signal(&self) -> watch::Receiver<bool> {
        Server::shutdown_signal(self)
    }

    #[cfg(test)]
    fn bind_session(&self, session: Arc<crate::session_handle::SessionHandle>) {
        self.router.bind(session);
    }
}
