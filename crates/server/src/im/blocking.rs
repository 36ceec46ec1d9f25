//! Blocking Command (XEP-0191): each user's blocklist, kept in storage and enforced on every
//! stanza to or from the account, with pushes to the user's clients that asked for the list.

use super::blocklist::{self, blocks, is_blocked};
use crate::hooks::{priority, FromClient, SessionHook, StanzaHook, ToAccount};
use crate::registry::{IqHandler, IqKind, IqRequest, IqResponse, IqScope, Registry};
use crate::router::{Outbound, SessionHandle};
use crate::server::Server;
use crate::stanza::Bare;
use crate::stanza::{ns, Build, ErrorType, StanzaCondition, StanzaError};
use minidom::Element;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Most addresses one user may block; a longer list is refused with `resource-constraint`.
const MAX_BLOCKED: usize = 1000;

pub fn register(registry: &mut Registry<Server>) {
    let handler = Arc::new(BlockingHandler);
    registry.iq(IqScope::Account, IqKind::Get, ns::BLOCKING, handler.clone());
    registry.iq(IqScope::Account, IqKind::Set, ns::BLOCKING, handler);
    registry.feature(IqScope::Server, ns::BLOCKING);
    let enforce = Arc::new(Enforce);
    registry
        .hooks
        .on_from_client(priority::POLICY, enforce.clone());
    registry
        .hooks
        .on_to_account(priority::POLICY, enforce.clone());
    registry.hooks.on_session(priority::DELIVER, enforce);
}

/// Per session: it has asked for the blocklist, so it wants pushes (XEP-0191 §3.3).
#[derive(Default)]
struct BlocklistRequested(AtomicBool);

/// Blocks enforced both ways: what a user sends to a blocked address, and what a blocked
/// address sends to the user.
struct Enforce;

#[async_trait::async_trait]
impl StanzaHook<Server, FromClient> for Enforce {
    async fn handle(
        &self,
        server: &Arc<Server>,
        point: &FromClient,
        stanza: Element,
    ) -> Option<Element> {
        let Some(to) = &point.to else {
            return Some(stanza);
        };
        if outbound_allowed(server, &point.session, &stanza, to).await {
            Some(stanza)
        } else {
            None
        }
    }
}

#[async_trait::async_trait]
impl StanzaHook<Server, ToAccount> for Enforce {
    async fn handle(
        &self,
        server: &Arc<Server>,
        point: &ToAccount,
        stanza: Element,
    ) -> Option<Element> {
        inbound_allowed(server, &point.account, stanza).await
    }
}

#[async_trait::async_trait]
impl SessionHook<Server> for Enforce {
    async fn ended(
        &self,
        server: &Arc<Server>,
        session: &Arc<SessionHandle>,
        _: &mut Vec<Outbound>,
    ) {
        blocklist::cache(server).forget_if_offline(server, &session.jid.bare());
    }
}

/// The stanza, unless `account` blocks its sender (then it is refused here).
async fn inbound_allowed(
    server: &Arc<Server>,
    account: &jid::BareJid,
    stanza: Element,
) -> Option<Element> {
    // Most accounts block nobody: the sender's address is only parsed against a list.
    if blocklist::of(server, account).await.is_empty() {
        return Some(stanza);
    }
    if let Some(Ok(from)) = stanza.attr("from").map(crate::jid_memo::parse) {
        if is_blocked(server, account, &from).await {
            refuse_inbound(server, &stanza);
            return None;
        }
    }
    Some(stanza)
}

/// XEP-0191 §3.3: a stanza from someone the recipient blocks. Presence vanishes; messages and
/// IQ requests get `<service-unavailable/>`, so the user looks offline to the blocked sender.
fn refuse_inbound(server: &Arc<Server>, stanza: &Element) {
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
        extra: Some(Box::new(Element::bare("blocked", ns::BLOCKING_ERRORS))),
        ..StanzaError::new(ErrorType::Cancel, StanzaCondition::NotAcceptable)
    }
}

struct BlockingHandler;

#[async_trait::async_trait]
impl IqHandler<Server> for BlockingHandler {
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
                if let Some(session) = request.from_full().and_then(|f| server.router.session(f)) {
                    let requested = session.extensions.get_or_default::<BlocklistRequested>();
                    requested.0.store(true, Ordering::Relaxed);
                }
                let list = blocklist::of(server, account).await;
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
    Build::new(name, ns::BLOCKING)
        .children(jids.map(|jid| Build::new("item", ns::BLOCKING).attr("jid", jid).build()))
        .build()
}

async fn block(
    server: &Arc<Server>,
    account: &jid::BareJid,
    jids: Vec<String>,
) -> Result<(), StanzaError> {
    let before = blocklist::of(server, account).await;
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
    blocklist::cache(server).changed(account);
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
    let before = blocklist::of(server, account).await;
    let (user, domain) = super::roster::account_key(account);
    server
        .storage_for(&domain)
        .unblock(&user, &domain, jids.as_deref())
        .await
        .map_err(|e| StanzaError::storage(&format!("changing the blocklist of {account}"), &e))?;
    blocklist::cache(server).changed(account);
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
        let requested = session.extensions.get::<BlocklistRequested>();
        if !requested.is_some_and(|r| r.0.load(Ordering::Relaxed)) {
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
async fn outbound_allowed(
    server: &Arc<Server>,
    session: &SessionHandle,
    stanza: &Element,
    to: &jid::Jid,
) -> bool {
    if !is_blocked(server, &session.jid.bare(), to).await {
        return true;
    }
    server.bounce(stanza, blocked_error());
    false
}
