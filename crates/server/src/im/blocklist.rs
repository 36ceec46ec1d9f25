//! Blocklists (XEP-0191 data, XEP-0016 §2.1 matching): who each account blocks, cached in
//! memory for online accounts, and whether an address is blocked. The blocking command module
//! (`blocking.rs`) changes them; delivery and presence consult them.

use crate::server::Server;
use crate::stanza::Bare;
use dashmap::DashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The blocklists of online accounts, in memory: every stanza to or from an account consults
/// its list, and a database query per stanza would cost more than the delivery itself.
/// Offline accounts' lists are read from storage when needed and not kept.
#[derive(Default)]
pub struct Blocklists {
    cache: DashMap<String, Arc<Vec<String>>>,
    /// Bumped on every change, so that a list read from storage before a change is not put
    /// into the cache after it.
    generation: AtomicU64,
}

impl Blocklists {
    /// The blocklist of `account` (a bare JID on a local host).
    pub async fn of(&self, server: &Server, account: &jid::BareJid) -> Arc<Vec<String>> {
        if let Some(list) = self.cache.get(account.as_str()) {
            return list.clone();
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let (user, domain) = super::roster::account_key(account);
        let list = match server.storage_for(&domain).blocklist(&user, &domain).await {
            Ok(list) => Arc::new(list),
            Err(e) => {
                tracing::error!(%account, error = %e, "reading blocklist");
                Arc::new(Vec::new())
            }
        };
        if server.router.is_online(account.as_str())
            && self.generation.load(Ordering::SeqCst) == generation
        {
            self.cache.insert(account.to_string(), list.clone());
        }
        list
    }

    pub fn changed(&self, account: &jid::BareJid) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.cache.remove(account.as_str());
    }

    /// Drop the cached list of an account that has no session left.
    pub fn forget_if_offline(&self, server: &Server, account: &jid::BareJid) {
        if !server.router.is_online(account.as_str()) {
            self.cache.remove(account.as_str());
        }
    }
}

/// Whether `list` blocks `address`: XEP-0016 §2.1 matching of a full JID, a bare JID, a
/// domain with a resource, or a whole domain.
pub fn blocks(list: &[String], address: &jid::Jid) -> bool {
    if list.is_empty() {
        return false;
    }
    let domain = address.domain().as_str();
    let matches = |candidate: &str| list.iter().any(|item| item == candidate);
    matches(address.as_str())
        || matches(address.bare().as_str())
        || address
            .resource()
            .is_some_and(|r| matches(&format!("{domain}/{}", r.as_str())))
        || matches(domain)
}

/// Whether `account` blocks `address`; the account's own resources are never blocked.
pub async fn is_blocked(server: &Server, account: &jid::BareJid, address: &jid::Jid) -> bool {
    if address.bare() == *account {
        return false;
    }
    blocks(&of(server, account).await, address)
}

/// The blocklist of `account`, from the cache of online accounts or from storage.
pub async fn of(server: &Server, account: &jid::BareJid) -> Arc<Vec<String>> {
    cache(server).of(server, account).await
}

/// The server's cache of online accounts' blocklists.
pub fn cache(server: &Server) -> Arc<Blocklists> {
    server.extensions.get_or_default::<Blocklists>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(s: &str) -> jid::Jid {
        jid::Jid::new(s).expect("test JID")
    }

    #[test]
    fn items_match_as_xep_0016_says() {
        let list = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let bare = list(&["eve@evil.example"]);
        assert!(blocks(&bare, &jid("eve@evil.example")));
        assert!(blocks(&bare, &jid("eve@evil.example/phone")));
        assert!(!blocks(&bare, &jid("evelyn@evil.example")));
        let full = list(&["eve@evil.example/phone"]);
        assert!(blocks(&full, &jid("eve@evil.example/phone")));
        assert!(!blocks(&full, &jid("eve@evil.example/desk")));
        assert!(!blocks(&full, &jid("eve@evil.example")));
        let domain = list(&["evil.example"]);
        assert!(blocks(&domain, &jid("anyone@evil.example/x")));
        assert!(blocks(&domain, &jid("evil.example")));
        assert!(!blocks(&domain, &jid("eve@good.example")));
        assert!(!blocks(&domain, &jid("eve@sub.evil.example")));
        let domain_resource = list(&["evil.example/bot"]);
        // Any user of the domain with that resource, as XEP-0016 servers read it.
        assert!(blocks(&domain_resource, &jid("evil.example/bot")));
        assert!(blocks(&domain_resource, &jid("eve@evil.example/bot")));
        assert!(!blocks(&domain_resource, &jid("eve@evil.example/phone")));
        assert!(!blocks(&[], &jid("eve@evil.example")));
    }
}
