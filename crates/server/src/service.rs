//! What a service host (multi-user chat, HTTP upload, later pubsub and s2s) is given by the
//! core: the [`ServiceHost`] trait the router calls for every stanza to the service's domain,
//! the narrow [`ServiceContext`] it is called with, and the answers to the discovery and ping
//! queries every service host gives alike (XEP-0030, XEP-0199).
//!
//! A service gets a context rather than the whole server so that what it can reach is written
//! down in one place (docs/ARCHITECTURE.md, "The path of a stanza", step 4): routing, the
//! stores of the features services have, the few configuration values they read, the
//! server-wide extension slots, metrics and the shutdown signal. Sessions, listeners, the
//! module registry and the accounts' data stay out of reach.

use crate::config::Config;
use crate::extensions::Extensions;
use crate::hooks::{priority, ServerHook};
use crate::metrics::Metrics;
use crate::registry::{IqResponse, Registry};
use crate::session_handle::SessionHandle;
use crate::stanza::{ns, Build, StanzaError};
use crate::storage::{ArchiveStore, RoomStore, Storage, UploadStore};
use minidom::Element;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::watch;

/// Resolves once shutdown has been requested.
pub async fn shutdown_requested(signal: &mut watch::Receiver<bool>) {
    loop {
        if *signal.borrow_and_update() {
            return;
        }
        if signal.changed().await.is_err() {
            // The server is gone; nothing will ever ask again.
            std::future::pending::<()>().await;
        }
    }
}

/// What the core offers services; the server implements it. A trait rather than the server
/// itself so that this file, which the router needs for its table of services, sits below the
/// server and never names it (no import cycle in the core).
pub trait ServiceCore: Send + Sync + 'static {
    fn config(&self) -> &Config;
    fn is_local_user_host(&self, domain: &str) -> bool;
    fn is_anonymous_host(&self, domain: &str) -> bool;
    /// Route a stanza whose `from` is stamped (RFC 6120 §10).
    fn route(self: Arc<Self>, stanza: Element) -> Pin<Box<dyn Future<Output = ()> + Send>>;
    /// Send an error reply for `stanza` to its sender.
    fn bounce(self: Arc<Self>, stanza: &Element, error: StanzaError);
    /// Answer the IQ `request` with `reply`.
    fn answer_iq(self: Arc<Self>, request: &Element, reply: IqResponse);
    fn local_session(&self, full: &jid::FullJid) -> Option<Arc<SessionHandle>>;
    /// Hand a serialised stanza from `from_domain` to federation for `to_domain`.
    fn send_remote(&self, stanza: bytes::Bytes, from_domain: &str, to_domain: &str);
    fn storage(&self) -> Arc<dyn Storage>;
    fn extensions(&self) -> &Extensions;
    fn metrics(&self) -> &Metrics;
    fn shutdown_signal(&self) -> watch::Receiver<bool>;
    /// Bind a session on the router, for tests that set up occupants without sockets.
    #[cfg(test)]
    fn bind_session(&self, session: Arc<SessionHandle>);
}

/// Handles every stanza addressed to a service host such as `rooms.example.org`, registered
/// by domain on the router (`Router::register_service`).
#[async_trait::async_trait]
pub trait ServiceHost: Send + Sync {
    async fn handle(&self, context: &ServiceContext, stanza: Element);
}

/// What a service does when the server starts, before the listeners accept anyone: load its
/// stored state, start its sweeps.
#[async_trait::async_trait]
pub trait ServiceStart: Send + Sync {
    async fn started(&self, context: &ServiceContext);
}

/// Have `start` run when the server starts, with the context of the service on `domain`. The
/// hook API hands start-up hooks the whole server; this keeps it out of the service's reach.
pub fn on_start<S: ServiceCore>(
    registry: &mut Registry<S>,
    domain: &str,
    start: Arc<dyn ServiceStart>,
) {
    registry.hooks.on_server(
        priority::OBSERVE,
        Arc::new(StartWithContext {
            domain: Arc::from(domain),
            start,
        }),
    );
}

struct StartWithContext {
    domain: Arc<str>,
    start: Arc<dyn ServiceStart>,
}

#[async_trait::async_trait]
impl<S: ServiceCore> ServerHook<S> for StartWithContext {
    async fn started(&self, server: &Arc<S>) {
        let core: Arc<dyn ServiceCore> = server.clone();
        let context = ServiceContext::new(core, self.domain.clone());
        self.start.started(&context).await;
    }
}

/// A service's view of the server, handed to it with each stanza. Cheap to clone (two
/// reference counts), so a service may keep one for work outside a stanza's handling, as each
/// room's task does.
#[derive(Clone)]
pub struct ServiceContext {
    /// Private: a service reaches the server only through the methods below.
    server: Arc<dyn ServiceCore>,
    /// The domain the service is registered under.
    domain: Arc<str>,
}

impl ServiceContext {
    /// The context of the service on `domain`. The router builds one for each stanza; a
    /// service's start-up hook, which the hook API gives the whole server, builds its own.
    pub fn new(server: Arc<dyn ServiceCore>, domain: impl Into<Arc<str>>) -> ServiceContext {
        ServiceContext {
            server,
            domain: domain.into(),
        }
    }

    /// The service's own domain, e.g. `rooms.example.org`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The server's main domain, where accounts live (`domain` in the configuration).
    pub fn server_domain(&self) -> &str {
        &self.server.config().domain
    }

    /// Whether `user` is one of the server's `admins`.
    pub fn is_server_admin(&self, user: &jid::BareJid) -> bool {
        self.config()
            .admins
            .iter()
            .any(|a| jid::BareJid::new(a).is_ok_and(|admin| &admin == user))
    }

    /// Where browsers reach the web side (`http.public_url`, else the HTTP listener), for
    /// links such as a room's web chat address; `None` without an HTTP listener.
    pub fn web_base_url(&self) -> Option<String> {
        self.config().web_base_url()
    }

    /// Whether `domain` is a host whose users log in here (accounts or anonymous visitors).
    pub fn is_local_user_host(&self, domain: &str) -> bool {
        self.server.is_local_user_host(domain)
    }

    /// Whether `domain` is the host of anonymous visitors, who get stricter treatment.
    pub fn is_anonymous_host(&self, domain: &str) -> bool {
        self.server.is_anonymous_host(domain)
    }

    /// Route a stanza whose `from` the service has set (an occupant JID, the service itself).
    pub async fn route(&self, stanza: Element) {
        self.server.clone().route(stanza).await;
    }

    /// Send an error reply for `stanza` back to its sender, unless it is itself an error.
    pub fn bounce(&self, stanza: &Element, error: StanzaError) {
        self.server.clone().bounce(stanza, error);
    }

    /// Answer the IQ `request` with a result carrying the payload, or with the error.
    pub fn answer_iq(&self, request: &Element, reply: IqResponse) {
        self.server.clone().answer_iq(request, reply);
    }

    /// The type of an IQ get or set sent to a service host that only answers queries (the MUC
    /// service itself, upload); `None` for anything else, which is dropped, except messages,
    /// which are refused with service-unavailable (RFC 6120 §10.3.1).
    pub fn service_query_kind<'a>(&self, stanza: &'a Element) -> Option<&'a str> {
        match (stanza.name(), stanza.attr("type")) {
            ("iq", Some(kind @ ("get" | "set"))) => Some(kind),
            ("message", _) => {
                self.bounce(stanza, StanzaError::service_unavailable());
                None
            }
            _ => None,
        }
    }

    /// The handle of a session bound here, to queue stanzas to it directly: the fast path of
    /// a room's fan-out, which serialises a stanza once for all occupants instead of routing
    /// a copy to each (docs/ARCHITECTURE.md, "The path of a stanza", step 5).
    pub fn local_session(&self, full: &jid::FullJid) -> Option<Arc<SessionHandle>> {
        self.server.local_session(full)
    }

    /// Queue a shared serialisation to a session on another server (a remote occupant),
    /// through federation; `false` when `to` is one of our own hosts (its session is gone).
    pub fn send_remote(
        &self,
        to: &jid::FullJid,
        template: &crate::session_handle::AddressedTemplate,
    ) -> bool {
        let domain = to.domain().as_str();
        if self.server.is_local_user_host(domain) {
            return false;
        }
        self.server
            .send_remote(template.addressed(to.as_str()), &self.domain, domain);
        true
    }

    /// Persistent rooms (XEP-0045). The stores are handed out one feature at a time: a
    /// service sees the data of its own feature, never the accounts'.
    pub fn room_store(&self) -> Arc<dyn RoomStore> {
        self.server.storage()
    }

    /// Room invite links (`muc::invite_links`).
    pub fn room_invite_store(&self) -> Arc<dyn crate::storage::RoomInviteStore> {
        self.server.storage()
    }

    /// Push registrations (XEP-0357), of which a room sees its own (`muc::push`).
    pub fn push_store(&self) -> Arc<dyn crate::storage::PushStore> {
        self.server.storage()
    }

    /// Message archives (XEP-0313) of rooms.
    pub fn archive_store(&self) -> Arc<dyn ArchiveStore> {
        self.server.storage()
    }

    /// Records of uploaded files (XEP-0363).
    pub fn upload_store(&self) -> Arc<dyn UploadStore> {
        self.server.storage()
    }

    /// Server-wide extension slots, where features and services share state (the archive
    /// writer, the services themselves for the HTTP side).
    pub fn extensions(&self) -> &Extensions {
        self.server.extensions()
    }

    /// The server's Prometheus metrics, for a service's own counters.
    pub fn metrics(&self) -> &Metrics {
        self.server.metrics()
    }

    /// Changes to `true` when the server shuts down; see [`shutdown_requested`].
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.server.shutdown_signal()
    }

    /// Kept private: services read configuration through the narrow accessors above.
    fn config(&self) -> &Config {
        self.server.config()
    }

    /// Bind a session on the server's router, for tests that set up occupants.
    #[cfg(test)]
    pub(crate) fn bind_session(&self, session: Arc<SessionHandle>) {
        self.server.bind_session(session);
    }
}

/// A service host's disco#info (XEP-0030 §3.1): one identity, its features, and forms of
/// extended information (XEP-0128).
pub struct ServiceInfo<'a> {
    pub category: &'a str,
    pub kind: &'a str,
    pub name: &'a str,
    pub features: &'a [&'a str],
    pub forms: Vec<Element>,
}

impl ServiceInfo<'_> {
    /// The `<query/>` of a disco#info result.
    pub fn to_query(&self) -> Element {
        Build::new("query", ns::DISCO_INFO)
            .child(
                Build::new("identity", ns::DISCO_INFO)
                    .attr("category", self.category)
                    .attr("type", self.kind)
                    .attr("name", self.name)
                    .build(),
            )
            .children(self.features.iter().map(|f| {
                Build::new("feature", ns::DISCO_INFO)
                    .attr("var", *f)
                    .build()
            }))
            .children(self.forms.iter().cloned())
            .build()
    }
}

/// An empty disco#items `<query/>`: an entity without items (XEP-0030 §4.2).
pub fn no_items() -> Element {
    Build::new("query", ns::DISCO_ITEMS).build()
}

/// The answer to a query every service host answers alike, or `None` for one the service
/// answers itself: a ping (XEP-0199 §4.2) is answered with an empty result; disco#info and
/// disco#items with what `info` and `items` return for the query's node (`None`: the entity
/// itself), so that a service with nodes (pubsub) answers them and one without can refuse.
pub fn answer_discovery_or_ping(
    kind: &str,
    payload: &Element,
    info: impl FnOnce(Option<&str>) -> Result<Element, StanzaError>,
    items: impl FnOnce(Option<&str>) -> Result<Element, StanzaError>,
) -> Option<IqResponse> {
    if kind != "get" {
        return None;
    }
    let node = payload.attr("node");
    if payload.is("query", ns::DISCO_INFO) {
        Some(info(node).map(Some))
    } else if payload.is("query", ns::DISCO_ITEMS) {
        Some(items(node).map(Some))
    } else if payload.is("ping", ns::PING) {
        Some(Ok(None))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xml(text: &str) -> Element {
        text.parse().expect("well-formed test payload")
    }

    fn info(_: Option<&str>) -> Result<Element, StanzaError> {
        Ok(ServiceInfo {
            category: "store",
            kind: "file",
            name: "Files",
            features: &[ns::DISCO_INFO],
            forms: Vec::new(),
        }
        .to_query())
    }

    fn no_nodes(node: Option<&str>) -> Result<Element, StanzaError> {
        match node {
            Some(_) => Err(StanzaError::item_not_found()),
            None => Ok(no_items()),
        }
    }

    #[test]
    fn a_ping_gets_an_empty_result() {
        let ping = xml("<ping xmlns='urn:xmpp:ping'/>");
        assert!(matches!(
            answer_discovery_or_ping("get", &ping, info, no_nodes),
            Some(Ok(None))
        ));
        assert!(answer_discovery_or_ping("set", &ping, info, no_nodes).is_none());
    }

    #[test]
    fn discovery_is_answered_per_node() {
        let info_query = xml("<query xmlns='http://jabber.org/protocol/disco#info'/>");
        let Some(Ok(Some(answer))) = answer_discovery_or_ping("get", &info_query, info, no_nodes)
        else {
            panic!("disco#info answered");
        };
        let identity = answer.get_child("identity", ns::DISCO_INFO).unwrap();
        assert_eq!(identity.attr("name"), Some("Files"));
        let items = xml("<query xmlns='http://jabber.org/protocol/disco#items' node='x'/>");
        assert!(matches!(
            answer_discovery_or_ping("get", &items, info, no_nodes),
            Some(Err(_))
        ));
    }

    #[test]
    fn other_queries_are_the_services_own() {
        let other = xml("<request xmlns='urn:xmpp:http:upload:0'/>");
        assert!(answer_discovery_or_ping("get", &other, info, no_nodes).is_none());
    }
}
