//! Blocking Command (XEP-0191): each user's blocklist, kept in storage and enforced on every
//! stanza to or from the account, with pushes to the user's clients that asked for the list.

use crate::modules::{IqHandler, IqKind, IqRequest, IqResponse, IqScope, Registry};
use crate::router::SessionHandle;
use crate::server::Server;
use crate::stanza::{ns, Build, ErrorType, StanzaError};
use dashmap::DashMap;
use minidom::Element;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub const NS_BLOCKING: &str = "urn:xmpp:blocking";
const NS_BLOCKING_ERRORS: &str = "urn:xmpp:blocking:errors";
/// Most addresses one user may block; a longer list is refused with `resource-constraint`.
const MAX_BLOCKED: usize = 1000;

pub fn register(registry: &mut Registry) {
    let handler = Arc::new(BlockingHandler);
    registry.iq(IqScope::Account, IqKind::Get, NS_BLOCKING, handler.clone());
    registry.iq(IqScope::Account, IqKind::Set, NS_BLOCKING, handler);
    registry.feature(IqScope::Server, NS_BLOCKING);
}

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

    fn changed(&self, account: &jid::BareJid) {
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
        || matches(address.to_bare().as_str())
        || address
            .resource()
            .is_some_and(|r| matches(&format!("{domain}/{}", r.as_str())))
        || matches(domain)
}

/// Whether `account` blocks `address`; the account's own resources are never blocked.
pub async fn is_blocked(server: &Server, account: &jid::BareJid, address: &jid::Jid) -> bool {
    if address.to_bare() == *account {
        return false;
    }
    blocks(&server.blocklists.of(server, account).await, address)
}

/// XEP-0191 §3.3: a stanza from someone the recipient blocks. Presence vanishes; messages and
/// IQ requests get `<service-unavailable/>`, so the user looks offline to the blocked sender.
pub fn refuse_inbound(server: &Arc<Server>, stanza: &Element) {
    let answered = match stanza.name() {
        "message" => true,
        "iq" => matches!(stanza.attr("type"), Some("get" | "set")),
        _ => false,
    };
    if answered {
        server.bounce(stanza, StanzaError::service_unavailable());
    }
}

/// XEP-0191 §3.3: the error for a stanza the user sends to someone the user blocks.
pub fn blocked_error() -> StanzaError {
    StanzaError {
        extra: Some(Box::new(Element::bare("blocked", NS_BLOCKING_ERRORS))),
        ..StanzaError::new(ErrorType::Cancel, "not-acceptable")
    }
}

struct BlockingHandler;

#[async_trait::async_trait]
impl IqHandler for BlockingHandler {
    async fn handle(&self, server: &Arc<Server>, request: IqRequest) -> IqResponse {
        if !request.is_own_account() {
            return Err(StanzaError::forbidden());
        }
        let payload = request
            .payload()
            .ok_or_else(|| StanzaError::bad_request("missing payload"))?;
        let account = &request.to;
        match (request.kind, payload.name()) {
            (IqKind::Get, "blocklist") => {
                if let Some(session) = server.router.session(&request.from) {
                    if let Ok(mut state) = session.presence.lock() {
                        state.blocklist_requested = true;
                    }
                }
                let list = server.blocklists.of(server, account).await;
                Ok(Some(list_element("blocklist", list.iter().cloned())))
            }
            (IqKind::Set, "block") => {
                let jids = items(payload)?;
                if jids.is_empty() {
                    return Err(StanzaError::bad_request("<block/> needs at least one item"));
                }
                block(server, account, jids).await.map(|()| None)
            }
            (IqKind::Set, "unblock") => {
                let jids = items(payload)?;
                unblock(server, account, (!jids.is_empty()).then_some(jids))
                    .await
                    .map(|()| None)
            }
            _ => Err(StanzaError::bad_request(
                "expected <blocklist/>, <block/> or <unblock/>",
            )),
        }
    }
}

/// The JIDs of the `<item/>` children, normalised.
fn items(payload: &Element) -> Result<Vec<String>, StanzaError> {
    let mut jids = Vec::new();
    for item in payload.children().filter(|c| c.name() == "item") {
        let jid = item
            .attr("jid")
            .and_then(|j| jid::Jid::new(j).ok())
            .ok_or_else(StanzaError::jid_malformed)?;
        let jid = jid.to_string();
        if !jids.contains(&jid) {
            jids.push(jid);
        }
    }
    Ok(jids)
}

fn list_element(name: &'static str, jids: impl Iterator<Item = String>) -> Element {
    Build::new(name, NS_BLOCKING)
        .children(jids.map(|jid| Build::new("item", NS_BLOCKING).attr("jid", jid).build()))
        .build()
}

async fn block(
    server: &Arc<Server>,
    account: &jid::BareJid,
    jids: Vec<String>,
) -> Result<(), StanzaError> {
    let before = server.blocklists.of(server, account).await;
    let new: Vec<String> = jids.into_iter().filter(|j| !before.contains(j)).collect();
    if before.len() + new.len() > MAX_BLOCKED {
        return Err(StanzaError::resource_constraint()
            .with_text(format!("at most {MAX_BLOCKED} addresses can be blocked")));
    }
    let (user, domain) = super::roster::account_key(account);
    server
        .storage_for(&domain)
        .block(&user, &domain, &new)
        .await
        .map_err(|e| StanzaError::storage(&format!("changing the blocklist of {account}"), &e))?;
    server.blocklists.changed(account);
    // §3.3: contacts who saw the user's presence now see the user go offline.
    presence_after_change(server, account, &new, true).await;
    push(server, account, list_element("block", new.into_iter()));
    Ok(())
}

async fn unblock(
    server: &Arc<Server>,
    account: &jid::BareJid,
    jids: Option<Vec<String>>,
) -> Result<(), StanzaError> {
    let before = server.blocklists.of(server, account).await;
    let (user, domain) = super::roster::account_key(account);
    server
        .storage_for(&domain)
        .unblock(&user, &domain, jids.as_deref())
        .await
        .map_err(|e| StanzaError::storage(&format!("changing the blocklist of {account}"), &e))?;
    server.blocklists.changed(account);
    let released: Vec<String> = match &jids {
        Some(jids) => jids
            .iter()
            .filter(|j| before.contains(j))
            .cloned()
            .collect(),
        None => before.to_vec(),
    };
    // §3.4: and see the user's current presence again.
    presence_after_change(server, account, &released, false).await;
    push(
        server,
        account,
        list_element("unblock", jids.unwrap_or_default().into_iter()),
    );
    Ok(())
}

/// Contacts allowed to see the user's presence (subscription "from") and named in `jids`: now
/// blocked, they get unavailable presence; unblocked, the user's current presence.
async fn presence_after_change(
    server: &Arc<Server>,
    account: &jid::BareJid,
    jids: &[String],
    now_blocked: bool,
) {
    if jids.is_empty() {
        return;
    }
    let contacts = super::roster::items(server, account)
        .await
        .into_iter()
        .filter(|item| item.subscription.has_from())
        .map(|item| item.jid)
        .filter(|contact| jid::Jid::new(contact).is_ok_and(|c| blocks(jids, &c)));
    for contact in contacts {
        super::presence::send_current_presence(server, account, &contact, now_blocked);
    }
}

/// §3.3/§3.4: tell every client of the user that asked for the blocklist what changed.
fn push(server: &Arc<Server>, account: &jid::BareJid, change: Element) {
    for session in server.router.sessions_of(account.as_str()) {
        if !session.presence.lock().is_ok_and(|p| p.blocklist_requested) {
            continue;
        }
        let push = Build::new("iq", ns::CLIENT)
            .attr("type", "set")
            .attr("id", format!("block-push-{:x}", rand::random::<u64>()))
            .attr("to", session.jid.to_string())
            .child(change.clone())
            .build();
        session.send_element(&push);
    }
}

/// Whether the session's user may send `stanza` to `to` (XEP-0191 §3.3): a stanza to a
/// blocked address is answered with `<not-acceptable/>` and `<blocked/>` and not routed.
pub async fn outbound_allowed(
    server: &Arc<Server>,
    session: &SessionHandle,
    stanza: &Element,
    to: &jid::Jid,
) -> bool {
    if !is_blocked(server, &session.jid.to_bare(), to).await {
        return true;
    }
    server.bounce(stanza, blocked_error());
    false
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
