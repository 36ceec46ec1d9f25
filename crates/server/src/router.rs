//! Who is online and how to reach them: the table of bound sessions (sharded by bare JID, no
//! global lock) and the service hosts (MUC, upload) that take stanzas for their domain.

use crate::service::ServiceHost;
pub use crate::session_handle::{
    AddressedTemplate, Kick, Outbound, PresenceState, SessionHandle, Signal,
};
use crate::stanza::Bare;
use dashmap::DashMap;
use std::sync::Arc;

/// The table of bound sessions and service hosts.
#[derive(Default)]
pub struct Router {
    sessions: DashMap<String, Vec<Arc<SessionHandle>>>,
    /// Service hosts by domain, with the domain shared into each stanza's `ServiceContext`.
    services: DashMap<String, (Arc<str>, Arc<dyn ServiceHost>)>,
}

impl Router {
    /// Bind a session. An existing session with the same full JID is returned so the caller
    /// can close it with `<conflict/>` (RFC 6120 §7.7.2.2).
    pub fn bind(&self, session: Arc<SessionHandle>) -> Option<Arc<SessionHandle>> {
        let bare = session.jid.bare().to_string();
        let mut entry = self.sessions.entry(bare).or_default();
        let replaced = entry
            .iter()
            .position(|s| s.jid == session.jid)
            .map(|i| entry.remove(i));
        entry.push(session);
        replaced
    }

    /// Remove a session, if it is still the one bound under its JID.
    pub fn unbind(&self, session: &SessionHandle) {
        let bare = session.jid.bare().to_string();
        self.sessions.remove_if_mut(&bare, |_, list| {
            list.retain(|s| s.id != session.id);
            list.is_empty()
        });
    }

    /// All bound sessions of an account.
    pub fn sessions_of(&self, bare: &str) -> Vec<Arc<SessionHandle>> {
        self.sessions
            .get(bare)
            .map(|list| list.clone())
            .unwrap_or_default()
    }

    pub fn session(&self, full: &jid::FullJid) -> Option<Arc<SessionHandle>> {
        let bare = full.bare().to_string();
        self.sessions
            .get(&bare)
            .and_then(|list| list.iter().find(|s| &s.jid == full).cloned())
    }

    pub fn is_online(&self, bare: &str) -> bool {
        self.sessions.contains_key(bare)
    }

    /// Every bound session; used at shutdown.
    pub fn all_sessions(&self) -> Vec<Arc<SessionHandle>> {
        self.sessions
            .iter()
            .flat_map(|entry| entry.value().clone())
            .collect()
    }

    /// Bound sessions of accounts and of anonymous guests.
    pub fn session_counts(&self) -> (usize, usize) {
        let mut guests = 0;
        let mut all = 0;
        for entry in self.sessions.iter() {
            all += entry.value().len();
            guests += entry.value().iter().filter(|s| s.anonymous).count();
        }
        (all - guests, guests)
    }

    pub fn session_count(&self) -> usize {
        self.sessions.iter().map(|e| e.value().len()).sum()
    }

    pub fn register_service(&self, domain: &str, host: Arc<dyn ServiceHost>) {
        self.services
            .insert(domain.to_string(), (Arc::from(domain), host));
    }

    pub fn service_domains(&self) -> Vec<String> {
        let mut domains: Vec<String> = self.services.iter().map(|e| e.key().clone()).collect();
        domains.sort();
        domains
    }

    /// The service host of `domain`, and the domain as its context carries it.
    pub fn service(&self, domain: &str) -> Option<(Arc<str>, Arc<dyn ServiceHost>)> {
        self.services.get(domain).map(|entry| entry.clone())
    }
}
