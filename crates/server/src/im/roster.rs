//! Roster management (RFC 6121 §2): get, set, remove, and roster pushes to every session of
//! the account that has asked for its roster.

use crate::hooks::{priority, StreamHook, StreamInfo};
use crate::registry::{IqHandler, IqKind, IqRequest, IqResponse, IqScope, Registry};
use crate::server::Server;
use crate::stanza::{ns, set_attr, Build, ErrorType, StanzaCondition, StanzaError};
use crate::storage::{RosterItem, Subscription};
use minidom::Element;
use std::sync::Arc;

pub fn register(registry: &mut Registry<Server>) {
    let handler = Arc::new(RosterHandler);
    registry.iq(IqScope::Account, IqKind::Get, ns::ROSTER, handler.clone());
    registry.iq(IqScope::Account, IqKind::Set, ns::ROSTER, handler);
    registry
        .hooks
        .on_stream(priority::DELIVER, Arc::new(PreApprovalFeature));
}

/// RFC 6121 §3.4: subscriptions may be approved before they are asked for. Guests have no
/// roster, so the feature is not theirs.
struct PreApprovalFeature;

impl StreamHook<Server> for PreApprovalFeature {
    fn features(&self, _server: &Server, stream: &StreamInfo<'_>) -> Vec<Element> {
        if stream.authenticated && !stream.anonymous_host {
            vec![Element::bare("sub", ns::PRE_APPROVAL)]
        } else {
            Vec::new()
        }
    }
}

/// Per session: it has asked for the roster, so it wants roster pushes (RFC 6121 §2.1.6).
#[derive(Default)]
struct RosterRequested(std::sync::atomic::AtomicBool);

struct RosterHandler;

#[async_trait::async_trait]
impl IqHandler<Server> for RosterHandler {
    async fn handle(&self, server: &Arc<Server>, request: IqRequest) -> IqResponse {
        if !request.is_own_account() {
            return Err(StanzaError::forbidden());
        }
        match request.kind {
            IqKind::Get => get(server, &request).await,
            IqKind::Set => set(server, &request).await,
        }
    }
}

/// The account's (localpart, domain) as storage wants them.
pub fn account_key(bare: &jid::BareJid) -> (String, String) {
    (
        bare.node()
            .map(|n| n.as_str().to_string())
            .unwrap_or_default(),
        bare.domain().as_str().to_string(),
    )
}

/// An item that exists only to remember an unanswered incoming request is not shown.
fn is_visible(item: &RosterItem) -> bool {
    !(item.subscription == Subscription::None
        && !item.ask_out
        && item.name.is_none()
        && item.groups.is_empty()
        && item.pending_in)
}

async fn get(server: &Arc<Server>, request: &IqRequest) -> IqResponse {
    let (user, domain) = account_key(&request.to);
    let items = server
        .storage_for(&domain)
        .roster(&user, &domain)
        .await
        .map_err(|e| StanzaError::storage(&format!("reading the roster of {}", request.to), &e))?;
    if let Some(session) = request.from_full().and_then(|f| server.router.session(f)) {
        let requested = session.extensions.get_or_default::<RosterRequested>();
        requested
            .0
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
    Ok(Some(
        Build::new("query", ns::ROSTER)
            .children(items.iter().filter(|i| is_visible(i)).map(item_element))
            .build(),
    ))
}

async fn set(server: &Arc<Server>, request: &IqRequest) -> IqResponse {
    let query = request
        .payload()
        .ok_or_else(|| StanzaError::bad_request("missing query"))?;
    let items: Vec<&Element> = query.children().filter(|c| c.name() == "item").collect();
    // RFC 6121 §2.3.3: exactly one item per set.
    let [item] = items.as_slice() else {
        return Err(StanzaError::bad_request(
            "a roster set carries exactly one item",
        ));
    };
    let contact = item
        .attr("jid")
        .and_then(|j| jid::BareJid::new(j).ok())
        .ok_or_else(StanzaError::jid_malformed)?;
    let (user, domain) = account_key(&request.to);
    let storage = server.storage_for(&domain);
    let existing = storage
        .roster_item(&user, &domain, contact.as_str())
        .await
        .map_err(|e| {
            StanzaError::storage(
                &format!("reading {contact} in the roster of {}", request.to),
                &e,
            )
        })?;
    if item.attr("subscription") == Some("remove") {
        let Some(existing) = existing else {
            return Err(StanzaError::item_not_found());
        };
        storage
            .remove_roster_item(&user, &domain, contact.as_str())
            .await
            .map_err(|e| {
                let doing = format!("removing {contact} from the roster of {}", request.to);
                StanzaError::storage(&doing, &e)
            })?;
        push(
            server,
            &request.to,
            &RosterItem {
                jid: contact.to_string(),
                subscription: Subscription::Remove,
                ..Default::default()
            },
        );
        // RFC 6121 §2.5.2: removing an item cancels the subscriptions both ways.
        let from = request.to.to_string();
        if existing.subscription.has_to() || existing.ask_out {
            send_subscription(server, &from, &contact, "unsubscribe").await;
        }
        if existing.subscription.has_from() || existing.pending_in {
            send_subscription(server, &from, &contact, "unsubscribed").await;
        }
        return Ok(None);
    }
    let mut groups: Vec<String> = Vec::new();
    for group in item.children().filter(|c| c.name() == "group") {
        let name = group.text();
        if name.is_empty() || name.len() > 1023 {
            return Err(
                StanzaError::new(ErrorType::Modify, StanzaCondition::NotAcceptable)
                    .with_text("group names must be 1 to 1023 bytes"),
            );
        }
        if groups.contains(&name) {
            return Err(StanzaError::bad_request("duplicate group"));
        }
        groups.push(name);
    }
    let updated = RosterItem {
        jid: contact.to_string(),
        name: item
            .attr("name")
            .filter(|n| !n.is_empty())
            .map(str::to_string),
        groups,
        ..existing.unwrap_or_default()
    };
    storage
        .put_roster_item(&user, &domain, &updated)
        .await
        .map_err(|e| {
            StanzaError::storage(
                &format!("storing {contact} in the roster of {}", request.to),
                &e,
            )
        })?;
    push(server, &request.to, &updated);
    Ok(None)
}

pub fn item_element(item: &RosterItem) -> Element {
    let mut element = Build::new("item", ns::ROSTER)
        .attr("jid", item.jid.clone())
        .attr("subscription", item.subscription.as_str())
        .attr_opt("name", item.name.clone())
        .children(
            item.groups
                .iter()
                .map(|g| Build::new("group", ns::ROSTER).text(g.clone()).build()),
        )
        .build();
    if item.ask_out && item.subscription != Subscription::Remove {
        set_attr(&mut element, "ask", "subscribe");
    }
    if item.approved && item.subscription != Subscription::Remove {
        set_attr(&mut element, "approved", "true");
    }
    element
}

/// Send a roster push for `item` to every session of `account` (RFC 6121 §2.1.6).
pub fn push(server: &Arc<Server>, account: &jid::BareJid, item: &RosterItem) {
    for session in server.router.sessions_of(account.as_str()) {
        let interested = session
            .extensions
            .get::<RosterRequested>()
            .is_some_and(|r| r.0.load(std::sync::atomic::Ordering::Relaxed));
        if !interested {
            continue;
        }
        let push = Build::new("iq", ns::CLIENT)
            .attr("type", "set")
            .attr("id", format!("push-{}", rand::random::<u32>()))
            .attr("to", session.jid.to_string())
            .child(
                Build::new("query", ns::ROSTER)
                    .child(item_element(item))
                    .build(),
            )
            .build();
        session.send_element(&push);
    }
}

/// Read-modify-write of one roster item; stores it and pushes the change when it changed.
pub async fn update_item(
    server: &Arc<Server>,
    account: &jid::BareJid,
    contact: &str,
    change: impl FnOnce(&mut RosterItem),
) -> Option<RosterItem> {
    let (user, domain) = account_key(account);
    let storage = server.storage_for(&domain);
    let before = storage
        .roster_item(&user, &domain, contact)
        .await
        .inspect_err(|e| tracing::error!(account = %account, error = %e, "reading roster item"))
        .ok()?;
    let mut item = before.clone().unwrap_or_else(|| RosterItem {
        jid: contact.to_string(),
        ..Default::default()
    });
    change(&mut item);
    if Some(&item) == before.as_ref() {
        return Some(item);
    }
    if let Err(e) = storage.put_roster_item(&user, &domain, &item).await {
        tracing::error!(account = %account, error = %e, "storing roster item");
        return None;
    }
    let visible_before = before.as_ref().is_some_and(is_visible);
    if is_visible(&item) || visible_before {
        push(server, account, &item);
    }
    Some(item)
}

/// Roster items of an account, empty on error.
pub async fn items(server: &Arc<Server>, account: &jid::BareJid) -> Vec<RosterItem> {
    let (user, domain) = account_key(account);
    server
        .storage_for(&domain)
        .roster(&user, &domain)
        .await
        .inspect_err(|e| tracing::error!(account = %account, error = %e, "reading roster"))
        .unwrap_or_default()
}

/// Route a subscription stanza from a local account's bare JID to `contact`.
pub async fn send_subscription(
    server: &Arc<Server>,
    from: &str,
    contact: &jid::BareJid,
    kind: &str,
) {
    send_subscription_with(server, from, contact, kind, Vec::new()).await;
}

/// [`send_subscription`] with the children the user's client put in the stanza.
pub async fn send_subscription_with(
    server: &Arc<Server>,
    from: &str,
    contact: &jid::BareJid,
    kind: &str,
    payload: Vec<Element>,
) {
    let mut stanza = Build::new("presence", ns::CLIENT)
        .attr("type", kind)
        .attr("from", from)
        .attr("to", contact.to_string())
        .build();
    for child in payload {
        stanza.append_child(child);
    }
    server.route(stanza).await;
}
