//! Presence (RFC 6121 §4) and the subscription state machine (RFC 6121 §3 and Appendix A):
//! broadcast to subscribers, probes answered from the router's table on login, directed
//! presence, and unavailable presence when a session ends.

use super::{blocklist, roster};
use crate::hooks::{priority, FromClient, SessionHook, StanzaHook};
use crate::modules::Registry;
use crate::router::{Outbound, SessionHandle};
use crate::server::Server;
use crate::stanza::Bare;
use crate::stanza::{ns, remove_attr, set_attr, Build, StanzaError};
use bytes::Bytes;
use minidom::Element;
use std::sync::Arc;

/// Presence from local clients, and the unavailable presence of a session that ends.
pub fn register(registry: &mut Registry<Server>) {
    registry
        .hooks
        .on_from_client(priority::DELIVER, Arc::new(Presence));
    registry
        .hooks
        .on_session(priority::OBSERVE, Arc::new(Presence));
}

struct Presence;

#[async_trait::async_trait]
impl StanzaHook<Server, FromClient> for Presence {
    async fn handle(
        &self,
        server: &Arc<Server>,
        point: &FromClient,
        stanza: Element,
    ) -> Option<Element> {
        if stanza.name() != "presence" {
            return Some(stanza);
        }
        outbound(server, &point.session, stanza).await;
        None
    }
}

#[async_trait::async_trait]
impl SessionHook<Server> for Presence {
    async fn ended(
        &self,
        server: &Arc<Server>,
        session: &Arc<SessionHandle>,
        _: &mut Vec<Outbound>,
    ) {
        session_ended(server, session).await;
    }
}

/// A presence stanza sent by a local session (its `from` already stamped).
async fn outbound(server: &Arc<Server>, session: &Arc<SessionHandle>, stanza: Element) {
    let kind = stanza.attr("type");
    match (stanza.attr("to"), kind) {
        (None, None | Some("unavailable")) => broadcast(server, session, stanza).await,
        (None, _) => {}
        (Some(to), Some(kind @ ("subscribe" | "subscribed" | "unsubscribe" | "unsubscribed"))) => {
            let Ok(contact) = jid::Jid::new(to).map(|j| j.bare()) else {
                server.bounce(&stanza, StanzaError::jid_malformed());
                return;
            };
            if session.anonymous && !server.is_anonymous_host(contact.domain().as_str()) {
                // Subscriptions are stored on the contact's roster; guests may not leave
                // persistent state on accounts.
                server.bounce(
                    &stanza,
                    StanzaError::not_allowed().with_text("guests cannot subscribe to accounts"),
                );
                return;
            }
            let from = session.jid.bare().to_string();
            // What the client put in it goes along (a XEP-0172 nick, a status, an invitation
            // token): RFC 6121 §3.1.2 has the server stamp the request, not strip it.
            let payload: Vec<Element> = stanza.children().cloned().collect();
            outbound_subscription_with(server, &from, &contact, kind, payload).await;
        }
        (Some(to), None | Some("unavailable")) => {
            // Directed presence (RFC 6121 §4.6): remember it so that our unavailable reaches
            // the recipient too.
            if let Ok(mut state) = session.presence.lock() {
                if kind.is_none() {
                    state.directed.insert(to.to_string());
                } else {
                    state.directed.remove(to);
                }
            }
            server.route(stanza).await;
        }
        (Some(_), Some("probe")) => {
            // Clients have no business probing; the server probes on their behalf.
        }
        (Some(_), _) => server.route(stanza).await,
    }
}

/// The last presence `session` broadcast, read back from its text (our own serialisation of
/// a stanza we accepted, so it reads back unless memory is corrupt).
fn last_presence(session: &SessionHandle) -> Option<Element> {
    let text = session.presence.lock().ok()?.last.clone()?;
    salon_xml::parse_stored(&text, ns::CLIENT)
}

/// Initial, updated or unavailable presence without `to` (RFC 6121 §4.2, §4.4, §4.5).
async fn broadcast(server: &Arc<Server>, session: &Arc<SessionHandle>, mut stanza: Element) {
    let going_offline = stanza.attr("type") == Some("unavailable");
    let priority = stanza
        .get_child("priority", ns::CLIENT)
        .and_then(|p| p.text().trim().parse::<i8>().ok())
        .unwrap_or(0);
    remove_attr(&mut stanza, "to");
    // Serialised before the lock is taken: probes of this session wait for it.
    let last: Option<Box<str>> =
        (!going_offline).then(|| salon_xml::serialize_to_string(&stanza).into());
    let (first_available, directed) = {
        let Ok(mut state) = session.presence.lock() else {
            return;
        };
        let first = !state.available && !going_offline;
        state.available = !going_offline;
        state.priority = priority;
        state.last = last;
        let directed: Vec<String> = if going_offline {
            state.directed.drain().collect()
        } else {
            Vec::new()
        };
        (first, directed)
    };
    let account = session.jid.bare();
    let items = roster::items(server, &account).await;
    // Blocked contacts see the user as offline (XEP-0191 §3.3).
    let blocklist = blocklist::of(server, &account).await;
    let visible =
        |target: &str| jid::Jid::new(target).is_ok_and(|t| !blocklist::blocks(&blocklist, &t));
    for item in items.iter().filter(|i| i.subscription.has_from()) {
        if visible(&item.jid) {
            deliver_presence_to(server, &stanza, &item.jid);
        }
    }
    for target in directed.iter().filter(|t| visible(t)) {
        deliver_presence_to(server, &stanza, target);
    }
    // The account's own resources see each other (and the sender sees its own presence).
    let own = Bytes::from(salon_xml::serialize(&stanza));
    for other in server.router.sessions_of(account.as_str()) {
        if other.is_available() || other.id == session.id {
            other.send(own.clone());
        }
    }
    if first_available {
        probe_contacts(server, session, &items).await;
        redeliver_pending_requests(server, session, &items);
        super::offline::deliver_offline(server, session).await;
    }
}

/// Send `stanza` (presence from a local user) to `target`, local or not.
pub(super) fn deliver_presence_to(server: &Arc<Server>, stanza: &Element, target: &str) {
    let mut copy = stanza.clone();
    set_attr(&mut copy, "to", target);
    let server = server.clone();
    // Routing may need storage look-ups for remote or unknown targets; do not hold up the
    // broadcast for them.
    tokio::spawn(async move { server.route(copy).await });
}

/// Answer the probes of RFC 6121 §4.3 locally: current presence of every contact we are
/// subscribed to, straight from the router's table.
async fn probe_contacts(
    server: &Arc<Server>,
    session: &SessionHandle,
    items: &[crate::storage::RosterItem],
) {
    let account = session.jid.bare();
    for item in items.iter().filter(|i| i.subscription.has_to()) {
        // Neither side's presence passes a block, whichever side set it.
        let Ok(contact_jid) = jid::BareJid::new(&item.jid) else {
            continue;
        };
        if blocklist::is_blocked(server, &account, &contact_jid.clone().into()).await
            || blocklist::is_blocked(server, &contact_jid, &session.jid.clone().into()).await
        {
            continue;
        }
        if !server.is_local_user_host(contact_jid.domain().as_str()) {
            // A contact on another server: its server answers a probe (RFC 6121 §4.3.1).
            let probe = Build::new("presence", ns::CLIENT)
                .attr("type", "probe")
                .attr("from", account.to_string())
                .attr("to", item.jid.clone())
                .build();
            let server = server.clone();
            tokio::spawn(async move { server.route(probe).await });
            continue;
        }
        for contact in server.router.sessions_of(&item.jid) {
            if let Some(mut presence) = last_presence(&contact) {
                set_attr(&mut presence, "to", session.jid.to_string());
                session.send_element(&presence);
            }
        }
    }
}

/// RFC 6121 §3.1.3: subscription requests received while offline are shown at next login.
fn redeliver_pending_requests(
    server: &Arc<Server>,
    session: &SessionHandle,
    items: &[crate::storage::RosterItem],
) {
    let _ = server;
    for item in items.iter().filter(|i| i.pending_in) {
        let request = Build::new("presence", ns::CLIENT)
            .attr("type", "subscribe")
            .attr("from", item.jid.clone())
            .attr("to", session.jid.bare().to_string())
            .build();
        session.send_element(&request);
    }
}

/// Presence addressed to a local bare JID (RFC 6121 §4.3, §4.6, §8.5.2.1.2).
pub async fn inbound(server: &Arc<Server>, stanza: Element, to: &jid::BareJid) {
    match stanza.attr("type") {
        Some("subscribe" | "subscribed" | "unsubscribe" | "unsubscribed") => {
            inbound_subscription(server, stanza, to).await
        }
        Some("probe") => answer_probe(server, &stanza, to).await,
        _ => {
            let bytes = Bytes::from(salon_xml::serialize(&stanza));
            for session in server.router.sessions_of(to.as_str()) {
                if session.is_available() {
                    session.send(bytes.clone());
                }
            }
        }
    }
}

/// A probe from another server's user (local ones are answered from the router's table when
/// they log in): the current presence of each available session, if the prober may see it
/// (its roster item has a `from` subscription, no block), else nothing (RFC 6121 §4.3.2).
async fn answer_probe(server: &Arc<Server>, probe: &Element, to: &jid::BareJid) {
    let Some(Ok(prober)) = probe.attr("from").map(jid::Jid::new) else {
        return;
    };
    let items = roster::items(server, to).await;
    let prober_bare = prober.bare();
    let subscribed = items
        .iter()
        .any(|i| i.jid == prober_bare.as_str() && i.subscription.has_from());
    if !subscribed || blocklist::is_blocked(server, to, &prober).await {
        return;
    }
    let mut answered = false;
    for session in server.router.sessions_of(to.as_str()) {
        if let Some(mut presence) = last_presence(&session) {
            set_attr(&mut presence, "from", session.jid.to_string());
            deliver_presence_to(server, &presence, prober.as_str());
            answered = true;
        }
    }
    if !answered {
        let unavailable = Build::new("presence", ns::CLIENT)
            .attr("type", "unavailable")
            .attr("from", to.to_string())
            .build();
        deliver_presence_to(server, &unavailable, prober.as_str());
    }
}

/// The user `from` (bare JID) sends a subscription stanza of `kind` to `contact`.
pub async fn outbound_subscription(
    server: &Arc<Server>,
    from: &str,
    contact: &jid::BareJid,
    kind: &str,
) {
    outbound_subscription_with(server, from, contact, kind, Vec::new()).await;
}

/// [`outbound_subscription`] carrying the children the client put in the stanza.
async fn outbound_subscription_with(
    server: &Arc<Server>,
    from: &str,
    contact: &jid::BareJid,
    kind: &str,
    payload: Vec<Element>,
) {
    let Ok(account) = jid::BareJid::new(from) else {
        return;
    };
    let contact_str = contact.as_str();
    let mut route = true;
    match kind {
        "subscribe" => {
            roster::update_item(server, &account, contact_str, |item| {
                if !item.subscription.has_to() {
                    item.ask_out = true;
                }
            })
            .await;
        }
        "subscribed" => {
            let mut approves_request = false;
            roster::update_item(server, &account, contact_str, |item| {
                if item.pending_in {
                    item.pending_in = false;
                    item.approved = false;
                    item.subscription = item.subscription.with_from();
                    approves_request = true;
                } else if !item.subscription.has_from() {
                    // RFC 6121 §3.4.2: nothing asked yet, so this approves in advance; the
                    // contact hears nothing until it asks.
                    item.approved = true;
                }
            })
            .await;
            // Only an answer to a pending request goes to the contact (§3.1.5): a
            // pre-approval stays here, and a repeated approval is redundant.
            route = approves_request;
        }
        "unsubscribe" => {
            roster::update_item(server, &account, contact_str, |item| {
                item.ask_out = false;
                item.subscription = item.subscription.without_to();
            })
            .await;
        }
        "unsubscribed" => {
            roster::update_item(server, &account, contact_str, |item| {
                item.pending_in = false;
                // Also withdraws a pre-approval (RFC 6121 §3.4.2).
                item.approved = false;
                item.subscription = item.subscription.without_from();
            })
            .await;
        }
        _ => return,
    }
    if route {
        roster::send_subscription_with(server, from, contact, kind, payload).await;
    }
    match kind {
        // RFC 6121 §3.1.5: after approving, the contact gets our current presence.
        "subscribed" if route => send_current_presence(server, &account, contact_str, false),
        // RFC 6121 §3.2.2: after cancelling, the contact learns we are gone for them.
        "unsubscribed" => send_current_presence(server, &account, contact_str, true),
        _ => {}
    }
}

/// Every available resource of `account` tells `contact` its presence, or that it is gone.
pub(super) fn send_current_presence(
    server: &Arc<Server>,
    account: &jid::BareJid,
    contact: &str,
    unavailable: bool,
) {
    for session in server.router.sessions_of(account.as_str()) {
        let Some(presence) = last_presence(&session) else {
            continue;
        };
        let presence = if unavailable {
            Build::new("presence", ns::CLIENT)
                .attr("type", "unavailable")
                .attr("from", session.jid.to_string())
                .build()
        } else {
            presence
        };
        deliver_presence_to(server, &presence, contact);
    }
}

/// A subscription stanza arrives for the local account `to` (RFC 6121 §3, inbound side).
pub async fn inbound_subscription(server: &Arc<Server>, stanza: Element, to: &jid::BareJid) {
    let Some(Ok(from)) = stanza
        .attr("from")
        .map(|f| jid::Jid::new(f).map(|j| j.bare()))
    else {
        return;
    };
    if !server.account_exists(to).await {
        server.bounce(&stanza, StanzaError::service_unavailable());
        return;
    }
    let from_str = from.to_string();
    let kind = stanza.attr("type").unwrap_or_default().to_string();
    let mut deliver = true;
    match kind.as_str() {
        "subscribe" => {
            let mut pre_approved = false;
            let existing = roster::update_item(server, to, &from_str, |item| {
                if item.subscription.has_from() {
                    return;
                }
                if item.approved {
                    // RFC 6121 §3.4.2: approved in advance, so approved now.
                    pre_approved = true;
                    item.approved = false;
                    item.pending_in = false;
                    item.subscription = item.subscription.with_from();
                } else {
                    item.pending_in = true;
                }
            })
            .await;
            if existing.is_some_and(|i| i.subscription.has_from()) {
                // Already approved: answer for the user (RFC 6121 §3.1.3).
                deliver = false;
                roster::send_subscription(server, to.as_str(), &from, "subscribed").await;
                if pre_approved {
                    // As after any approval, the new subscriber gets the user's presence.
                    send_current_presence(server, to, &from_str, false);
                }
            }
        }
        "subscribed" => {
            let item = roster::update_item(server, to, &from_str, |item| {
                if item.ask_out {
                    item.ask_out = false;
                    item.subscription = item.subscription.with_to();
                }
            })
            .await;
            deliver = item.is_some_and(|i| i.subscription.has_to());
        }
        "unsubscribe" => {
            roster::update_item(server, to, &from_str, |item| {
                item.pending_in = false;
                item.subscription = item.subscription.without_from();
            })
            .await;
        }
        "unsubscribed" => {
            roster::update_item(server, to, &from_str, |item| {
                item.ask_out = false;
                item.subscription = item.subscription.without_to();
            })
            .await;
        }
        _ => return,
    }
    if !deliver {
        return;
    }
    let mut stanza = stanza;
    set_attr(&mut stanza, "from", from_str);
    set_attr(&mut stanza, "to", to.to_string());
    let bytes = Bytes::from(salon_xml::serialize(&stanza));
    for session in server.router.sessions_of(to.as_str()) {
        if session.is_available() {
            session.send(bytes.clone());
        }
    }
}

/// A session ended without saying goodbye: tell everyone who saw it online.
async fn session_ended(server: &Arc<Server>, session: &Arc<SessionHandle>) {
    let unavailable = Build::new("presence", ns::CLIENT)
        .attr("type", "unavailable")
        .attr("from", session.jid.to_string())
        .build();
    if session.is_available() {
        broadcast(server, session, unavailable).await;
        return;
    }
    // Never broadcast presence, but may have sent directed presence (a room join without
    // initial presence): those must still hear that the session is gone, or it stays a ghost.
    let directed: Vec<String> = session
        .presence
        .lock()
        .map(|mut state| state.directed.drain().collect())
        .unwrap_or_default();
    for target in directed {
        deliver_presence_to(server, &unavailable, &target);
    }
}
