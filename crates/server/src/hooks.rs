//! Hooks: the typed events a feature module subscribes to, so that the session and router code
//! never grow a branch per XEP (docs/ARCHITECTURE.md, "Hooks").
//!
//! Stanza hooks run in priority order, highest first. Each gets the stanza by value and either
//! passes it on (`Some`, possibly changed) or keeps it (`None`): it was refused, answered or
//! delivered, and later hooks do not see it. The other hooks observe or add, and cannot stop.

use crate::durable::Commit;
use crate::extensions::LocalExtensions;
use crate::session_handle::{Outbound, SessionHandle};
use minidom::Element;
use std::collections::VecDeque;
use std::sync::Arc;

/// Conventional priorities, so modules agree on an order without knowing each other.
pub mod priority {
    /// Policy that may refuse a stanza before anything else sees it (blocking, guest rules).
    pub const POLICY: i32 = 100;
    /// Observers that record what passes (archives).
    pub const OBSERVE: i32 = 50;
    /// Copies of what passes, made after the observers recorded it, so that a copy can wait
    /// for the record (carbons wait for the sender's archive write).
    pub const COPY: i32 = 40;
    /// The module that finally delivers or routes the stanza.
    pub const DELIVER: i32 = 0;
}

/// A stanza a bound local client sent, with `from` stamped and `to` checked, before it is
/// routed (RFC 6120 §8.1.2.1). If every hook passes it on, the core routes it by its `to`.
pub struct FromClient {
    pub session: Arc<SessionHandle>,
    /// The parsed `to`; `None` when the client left it out (the stanza is then for the
    /// client's own account or the server, RFC 6120 §10.3).
    pub to: Option<jid::Jid>,
    /// What hooks asked to do once the stanza is routed ([`after_routing`](Self::after_routing)).
    after_routing: std::sync::Mutex<Vec<Box<dyn FnOnce() + Send>>>,
}

impl FromClient {
    pub fn new(session: Arc<SessionHandle>, to: Option<jid::Jid>) -> FromClient {
        FromClient {
            session,
            to,
            after_routing: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Runs `action` once the stanza has been routed and delivered locally (or kept by a
    /// later hook, or answered): for what must not show before routing's own effects, such as
    /// a copy of a message to the sender's own account, which is archived only as it arrives.
    pub fn after_routing(&self, action: impl FnOnce() + Send + 'static) {
        if let Ok(mut actions) = self.after_routing.lock() {
            actions.push(Box::new(action));
        }
    }

    /// The stanza was routed: runs what hooks asked for, in the order they asked.
    pub fn routed(&self) {
        let actions = match self.after_routing.lock() {
            Ok(mut actions) => std::mem::take(&mut *actions),
            Err(_) => return,
        };
        for action in actions {
            action();
        }
    }
}

/// A stanza addressed to an account on a local host: to its bare JID (RFC 6121 §8.5.2) or to
/// one of its full JIDs (§8.5.3). One point for both, so that policy that holds for the
/// account either way (blocking, guest rules) registers once; `to` tells which it is.
pub struct ToAccount {
    /// The address as the stanza has it, bare or full.
    pub to: jid::Jid,
    /// The account's bare JID.
    pub account: jid::BareJid,
}

/// A handler at one of the stanza hook points ([`FromClient`], [`ToAccount`]).
#[async_trait::async_trait]
pub trait StanzaHook<S: Send + Sync + 'static, Point: Send + Sync>: Send + Sync {
    /// Pass the stanza on (`Some`), or keep it (`None`).
    async fn handle(&self, server: &Arc<S>, point: &Point, stanza: Element) -> Option<Element>;
}

/// Messages reaching an account's clients (RFC 6121 §8.5.2.1), as the delivery module tells
/// it: archives stamp them on the way in, carbons copy them once they are delivered.
#[async_trait::async_trait]
pub trait MessageHook<S: Send + Sync + 'static>: Send + Sync {
    /// A message is about to reach `account` for the first time (online or into offline
    /// storage). The hook may add to it (a stanza id, XEP-0359), and may return a commit the
    /// delivered copy must wait for (its archive write).
    async fn arriving(
        &self,
        _server: &Arc<S>,
        _account: &jid::BareJid,
        _message: &mut Element,
    ) -> Option<Commit> {
        None
    }

    /// `message` was queued to `recipients`, some of the account's bound `sessions`, behind
    /// `archived` (the commit [`arriving`](Self::arriving) returned): whatever the hook shows
    /// of it to anyone waits for that commit too.
    fn delivered(
        &self,
        _server: &Arc<S>,
        _account: &jid::BareJid,
        _sessions: &[Arc<SessionHandle>],
        _recipients: &[&Arc<SessionHandle>],
        _message: &Element,
        _archived: Option<&Commit>,
    ) {
    }
}

/// A bound session's life (RFC 6120 §7, XEP-0198 §5).
#[async_trait::async_trait]
pub trait SessionHook<S: Send + Sync + 'static>: Send + Sync {
    /// A resource was bound: the session is in the router.
    async fn bound(&self, _server: &Arc<S>, _session: &Arc<SessionHandle>) {}

    /// The session continues on a new connection.
    async fn resumed(&self, _server: &Arc<S>, _session: &Arc<SessionHandle>) {}

    /// The session is over and out of the router. `unacked` holds what its client never
    /// acknowledged (XEP-0198 §4); a hook may add to it (what it held back) or take from it
    /// (to deliver elsewhere).
    async fn ended(
        &self,
        _server: &Arc<S>,
        _session: &Arc<SessionHandle>,
        _unacked: &mut Vec<Outbound>,
    ) {
    }
}

/// The server's own life: start background work once it runs, finish it before it stops.
#[async_trait::async_trait]
pub trait ServerHook<S: Send + Sync + 'static>: Send + Sync {
    /// The server is about to accept connections (load state, start periodic sweeps).
    async fn started(&self, _server: &Arc<S>) {}

    /// Every stream is closed; the storage is flushed after this (write what is buffered).
    async fn stopping(&self, _server: &Arc<S>) {}
}

/// What a stream-level hook knows of the stream it is asked about.
pub struct StreamInfo<'a> {
    /// The local host the client asked for.
    pub host: &'a str,
    /// The host is the anonymous one.
    pub anonymous_host: bool,
    /// SASL has succeeded (features after the restart, RFC 6120 §6.4.6).
    pub authenticated: bool,
}

/// Hooks on one client connection, run inside the connection's own task with its private
/// slots: stream features, nonzas of a bound stream, and the batch about to be written.
pub trait StreamHook<S: Send + Sync + 'static>: Send + Sync {
    /// Stream features this module announces (RFC 6120 §4.3.2).
    fn features(&self, _server: &S, _stream: &StreamInfo<'_>) -> Vec<Element> {
        Vec::new()
    }

    /// A top-level element of a bound stream outside `jabber:client` (a nonza). `None` when it
    /// is not this module's; otherwise what to write to the client now.
    fn nonza(&self, _local: &mut LocalExtensions, _element: &Element) -> Option<Vec<Outbound>> {
        None
    }

    /// Stanzas about to be written; the module may hold some back for later.
    fn outgoing(
        &self,
        _local: &mut LocalExtensions,
        batch: VecDeque<Outbound>,
    ) -> VecDeque<Outbound> {
        batch
    }

    /// Whether every stanza may now go to the client as it comes, without passing through
    /// [`outgoing`](Self::outgoing): then delivering tasks may write to the client's socket
    /// themselves. A module whose `outgoing` holds or changes stanzas says no while it would.
    fn writes_through(&self, _local: &mut LocalExtensions) -> bool {
        true
    }

    /// The connection is gone (or replaced by a resumption): give back whatever is held, to be
    /// kept with the unacknowledged stanzas.
    fn detached(&self, _local: &mut LocalExtensions) -> Vec<Outbound> {
        Vec::new()
    }
}

/// What a hook on an unauthenticated stream knows of it.
pub struct PreAuthStream<'a> {
    /// The local host the client asked for.
    pub host: &'a str,
    /// The host is the anonymous one.
    pub anonymous_host: bool,
    /// The client's address (for per-address limits).
    pub peer_ip: std::net::IpAddr,
}

/// IQs a client sends before it has authenticated (RFC 6120 §6 allows none by default; XEP-0077
/// in-band registration and XEP-0445 pre-authentication are the exceptions). Run in the
/// connection's own task with its private slots.
#[async_trait::async_trait]
pub trait PreAuthHook<S: Send + Sync + 'static>: Send + Sync {
    /// The answer to `iq` (a result or an error reply), or `None` when it is not this module's.
    async fn iq(
        &self,
        server: &Arc<S>,
        stream: &PreAuthStream<'_>,
        local: &mut LocalExtensions,
        iq: &Element,
    ) -> Option<Element>;
}

/// Handlers in priority order, highest first; equal priorities keep registration order.
struct HookList<T: ?Sized> {
    entries: Vec<(i32, Arc<T>)>,
}

impl<T: ?Sized> Default for HookList<T> {
    fn default() -> Self {
        HookList {
            entries: Vec::new(),
        }
    }
}

impl<T: ?Sized> HookList<T> {
    fn add(&mut self, priority: i32, handler: Arc<T>) {
        let at = self
            .entries
            .iter()
            .position(|(p, _)| *p < priority)
            .unwrap_or(self.entries.len());
        self.entries.insert(at, (priority, handler));
    }

    fn iter(&self) -> impl Iterator<Item = &Arc<T>> {
        self.entries.iter().map(|(_, handler)| handler)
    }
}

/// Every hook the modules registered. Built at startup, read-only afterwards. Generic over the
/// server type, so that this file (below the server) never names it.
pub struct Hooks<S> {
    from_client: HookList<dyn StanzaHook<S, FromClient>>,
    to_account: HookList<dyn StanzaHook<S, ToAccount>>,
    messages: HookList<dyn MessageHook<S>>,
    sessions: HookList<dyn SessionHook<S>>,
    streams: HookList<dyn StreamHook<S>>,
    lifecycle: HookList<dyn ServerHook<S>>,
    pre_auth: HookList<dyn PreAuthHook<S>>,
}

impl<S> Default for Hooks<S> {
    fn default() -> Self {
        Hooks {
            from_client: HookList::default(),
            to_account: HookList::default(),
            messages: HookList::default(),
            sessions: HookList::default(),
            streams: HookList::default(),
            lifecycle: HookList::default(),
            pre_auth: HookList::default(),
        }
    }
}

impl<S: Send + Sync + 'static> Hooks<S> {
    pub fn on_from_client(&mut self, priority: i32, hook: Arc<dyn StanzaHook<S, FromClient>>) {
        self.from_client.add(priority, hook);
    }

    pub fn on_to_account(&mut self, priority: i32, hook: Arc<dyn StanzaHook<S, ToAccount>>) {
        self.to_account.add(priority, hook);
    }

    pub fn on_message(&mut self, priority: i32, hook: Arc<dyn MessageHook<S>>) {
        self.messages.add(priority, hook);
    }

    pub fn on_session(&mut self, priority: i32, hook: Arc<dyn SessionHook<S>>) {
        self.sessions.add(priority, hook);
    }

    pub fn on_stream(&mut self, priority: i32, hook: Arc<dyn StreamHook<S>>) {
        self.streams.add(priority, hook);
    }

    pub fn on_server(&mut self, priority: i32, hook: Arc<dyn ServerHook<S>>) {
        self.lifecycle.add(priority, hook);
    }

    pub fn on_pre_auth(&mut self, priority: i32, hook: Arc<dyn PreAuthHook<S>>) {
        self.pre_auth.add(priority, hook);
    }

    /// Offer an IQ of an unauthenticated stream to the modules; `None` when none took it.
    pub async fn pre_auth_iq(
        &self,
        server: &Arc<S>,
        stream: &PreAuthStream<'_>,
        local: &mut LocalExtensions,
        iq: &Element,
    ) -> Option<Element> {
        for hook in self.pre_auth.iter() {
            if let Some(answer) = hook.iq(server, stream, local, iq).await {
                return Some(answer);
            }
        }
        None
    }

    pub async fn server_started(&self, server: &Arc<S>) {
        for hook in self.lifecycle.iter() {
            hook.started(server).await;
        }
    }

    pub async fn server_stopping(&self, server: &Arc<S>) {
        for hook in self.lifecycle.iter() {
            hook.stopping(server).await;
        }
    }

    /// Run the [`FromClient`] hooks; what comes out is for the core to route.
    pub async fn from_client(
        &self,
        server: &Arc<S>,
        point: &FromClient,
        stanza: Element,
    ) -> Option<Element> {
        let mut stanza = stanza;
        for hook in self.from_client.iter() {
            stanza = hook.handle(server, point, stanza).await?;
        }
        Some(stanza)
    }

    /// Run the [`ToAccount`] hooks; what comes out nobody handled.
    pub async fn to_account(
        &self,
        server: &Arc<S>,
        point: &ToAccount,
        stanza: Element,
    ) -> Option<Element> {
        let mut stanza = stanza;
        for hook in self.to_account.iter() {
            stanza = hook.handle(server, point, stanza).await?;
        }
        Some(stanza)
    }

    pub async fn message_arriving(
        &self,
        server: &Arc<S>,
        account: &jid::BareJid,
        message: &mut Element,
    ) -> Option<Commit> {
        // Commits complete in order: the last one covers the others.
        let mut last = None;
        for hook in self.messages.iter() {
            if let Some(commit) = hook.arriving(server, account, message).await {
                last = Some(commit);
            }
        }
        last
    }

    pub fn message_delivered(
        &self,
        server: &Arc<S>,
        account: &jid::BareJid,
        sessions: &[Arc<SessionHandle>],
        recipients: &[&Arc<SessionHandle>],
        message: &Element,
        archived: Option<&Commit>,
    ) {
        for hook in self.messages.iter() {
            hook.delivered(server, account, sessions, recipients, message, archived);
        }
    }

    pub async fn session_bound(&self, server: &Arc<S>, session: &Arc<SessionHandle>) {
        for hook in self.sessions.iter() {
            hook.bound(server, session).await;
        }
    }

    pub async fn session_resumed(&self, server: &Arc<S>, session: &Arc<SessionHandle>) {
        for hook in self.sessions.iter() {
            hook.resumed(server, session).await;
        }
    }

    pub async fn session_ended(
        &self,
        server: &Arc<S>,
        session: &Arc<SessionHandle>,
        unacked: &mut Vec<Outbound>,
    ) {
        for hook in self.sessions.iter() {
            hook.ended(server, session, unacked).await;
        }
    }

    pub fn stream_features(&self, server: &S, stream: &StreamInfo<'_>) -> Vec<Element> {
        self.streams
            .iter()
            .flat_map(|hook| hook.features(server, stream))
            .collect()
    }

    /// Offer a nonza to the stream hooks; `None` when no module took it.
    pub fn nonza(&self, local: &mut LocalExtensions, element: &Element) -> Option<Vec<Outbound>> {
        self.streams
            .iter()
            .find_map(|hook| hook.nonza(local, element))
    }

    pub fn outgoing(
        &self,
        local: &mut LocalExtensions,
        batch: VecDeque<Outbound>,
    ) -> VecDeque<Outbound> {
        let mut batch = batch;
        for hook in self.streams.iter() {
            batch = hook.outgoing(local, batch);
        }
        batch
    }

    /// Whether no stream module needs to see stanzas before they are written.
    pub fn writes_through(&self, local: &mut LocalExtensions) -> bool {
        self.streams.iter().all(|hook| hook.writes_through(local))
    }

    pub fn detached(&self, local: &mut LocalExtensions) -> Vec<Outbound> {
        self.streams
            .iter()
            .flat_map(|hook| hook.detached(local))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn higher_priorities_run_first_and_equal_ones_in_order() {
        let mut list: HookList<str> = HookList::default();
        list.add(0, Arc::from("deliver"));
        list.add(50, Arc::from("observe-1"));
        list.add(100, Arc::from("policy"));
        list.add(50, Arc::from("observe-2"));
        let order: Vec<&str> = list.iter().map(|s| &**s).collect();
        assert_eq!(order, ["policy", "observe-1", "observe-2", "deliver"]);
    }
}
