//! RFC 6121 §8.5 delivery to local accounts: to a full JID, to the bare JID (the most
//! available resources, or offline storage), IQs handled on an account's behalf, and messages a
//! session never acknowledged (XEP-0198 §4) delivered again when it ends.

use super::offline::{deliver_offline, store_offline, worth_storing};
use super::presence;
use crate::hooks::{priority, SessionHook, StanzaHook, ToAccount};
use crate::registry::{IqScope, Registry};
use crate::router::{Outbound, SessionHandle};
use crate::server::Server;
use crate::stanza::Bare;
use crate::stanza::{ns, StanzaError};
use bytes::Bytes;
use minidom::Element;
use std::sync::Arc;

/// The last hooks on the paths to local accounts, and what happens to a
/// session's unacknowledged messages when it ends.
pub fn register(registry: &mut Registry<Server>) {
    let delivery = Arc::new(LocalDelivery);
    registry
        .hooks
        .on_to_account(priority::DELIVER, delivery.clone());
    registry.hooks.on_session(priority::DELIVER, delivery);
    registry
        .hooks
        .on_to_account(priority::POLICY, Arc::new(GuestsApart));
}

/// Hands stanzas to local sessions, offline storage or the IQ handlers.
struct LocalDelivery;

#[async_trait::async_trait]
impl StanzaHook<Server, ToAccount> for LocalDelivery {
    async fn handle(
        &self,
        server: &Arc<Server>,
        point: &ToAccount,
        stanza: Element,
    ) -> Option<Element> {
        match point.to.try_as_full() {
            Ok(full) => deliver_to_full(server, stanza, full).await,
            Err(bare) => deliver_to_bare(server, stanza, bare).await,
        }
        None
    }
}

#[async_trait::async_trait]
impl SessionHook<Server> for LocalDelivery {
    async fn ended(
        &self,
        server: &Arc<Server>,
        session: &Arc<SessionHandle>,
        unacked: &mut Vec<Outbound>,
    ) {
        // A guest has no other resource and no offline storage.
        if !session.anonymous {
            let pending = std::mem::take(unacked);
            redeliver_unacked(server, &session.jid.bare(), pending).await;
        }
    }
}

/// Guests reach each other only inside rooms that allow it, never directly.
struct GuestsApart;

impl GuestsApart {
    fn check(server: &Arc<Server>, stanza: Element, to: &jid::Jid) -> Option<Element> {
        if stanza.name() == "message" && between_different_guests(server, &stanza, to) {
            server.bounce(
                &stanza,
                StanzaError::not_allowed().with_text("guests cannot message other guests directly"),
            );
            return None;
        }
        Some(stanza)
    }
}

#[async_trait::async_trait]
impl StanzaHook<Server, ToAccount> for GuestsApart {
    async fn handle(
        &self,
        server: &Arc<Server>,
        point: &ToAccount,
        stanza: Element,
    ) -> Option<Element> {
        Self::check(server, stanza, &point.to)
    }
}

async fn deliver_to_full(server: &Arc<Server>, mut stanza: Element, to: &jid::FullJid) {
    if stanza.name() == "presence" && is_subscription(&stanza) {
        // RFC 6121 §3: subscription stanzas are about the account, not a resource.
        presence::inbound_subscription(server, stanza, &to.bare()).await;
        return;
    }
    if let Some(session) = server.router.session(to) {
        let mut archived = None;
        if stanza.name() == "message" {
            let hooks = &server.modules.hooks;
            archived = hooks
                .message_arriving(server, &to.bare(), &mut stanza)
                .await;
            if archived.is_none() && crate::stanza::is_error(&stanza) {
                // An error about a message carries that message back (RFC 6120 §8.3.1), and
                // the sender's archive may have just queued it: the error, and its carbons,
                // wait for that write like the message would.
                archived = server
                    .extensions
                    .get::<crate::durable::LatestCommit>()
                    .and_then(|latest| latest.get());
            }
        }
        // Shown to the recipient once its archive holds it (and behind it what follows).
        let bytes = Bytes::from(salon_xml::serialize(&stanza));
        session.send_after(bytes, archived.as_ref());
        if stanza.name() == "message" {
            let bare = to.bare();
            let sessions = server.router.sessions_of(bare.as_str());
            let hooks = &server.modules.hooks;
            hooks.message_delivered(
                server,
                &bare,
                &sessions,
                &[&session],
                &stanza,
                archived.as_ref(),
            );
        }
        return;
    }
    match stanza.name() {
        // §8.5.3.2.1: chat and normal messages fall back to the bare JID.
        "message" => match stanza.attr("type").unwrap_or("normal") {
            "normal" | "chat" => deliver_to_bare(server, stanza, &to.bare()).await,
            "groupchat" => server.bounce(&stanza, StanzaError::service_unavailable()),
            _ => {}
        },
        "iq" => server.bounce(&stanza, StanzaError::service_unavailable()),
        // §8.5.3.2.3: presence to an unavailable resource is dropped.
        _ => {}
    }
}

async fn deliver_to_bare(server: &Arc<Server>, stanza: Element, to: &jid::BareJid) {
    match stanza.name() {
        "iq" => {
            if server.account_exists(to).await {
                server.handle_iq(stanza, IqScope::Account, to.clone()).await;
            } else {
                server.bounce(&stanza, StanzaError::service_unavailable());
            }
        }
        "presence" => presence::inbound(server, stanza, to).await,
        "message" => deliver_message_to_bare(server, stanza, to, Delivery::First).await,
        _ => {}
    }
}

/// Whether a message reaches an account for the first time, or again after the session it
/// went to ended without acknowledging it (archived and copied the first time already).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Delivery {
    First,
    Again,
}

/// XEP-0198 §4: messages a session received but never acknowledged before it ended (its
/// connection lost and not resumed in time, or closed) go to the account's other resources,
/// or into offline storage, rather than being lost. Room traffic, presence and copies
/// (carbons, archive results) are not sent again.
async fn redeliver_unacked(
    server: &Arc<Server>,
    account: &jid::BareJid,
    unacked: impl IntoIterator<Item = crate::router::Outbound>,
) {
    let mut redelivered = 0;
    for item in unacked {
        if !item.starts_with(b"<message") {
            continue;
        }
        let mut bytes = Vec::new();
        item.write_to(&mut bytes);
        let Some(message) = std::str::from_utf8(&bytes)
            .ok()
            .and_then(|text| salon_xml::parse_stored(text, ns::CLIENT))
        else {
            continue;
        };
        let is_copy = message.get_child("sent", ns::CARBONS).is_some()
            || message.get_child("received", ns::CARBONS).is_some()
            || message.get_child("result", ns::MAM).is_some();
        if is_copy
            || !matches!(message.attr("type").unwrap_or("normal"), "chat" | "normal")
            || !worth_storing(&message)
        {
            continue;
        }
        deliver_message_to_bare(server, message, account, Delivery::Again).await;
        redelivered += 1;
    }
    if redelivered > 0 {
        tracing::info!(%account, messages = redelivered, "unacknowledged messages delivered again");
    }
}

/// RFC 6121 §8.5.2.1: messages to an account go to its most available resources, or are held.
async fn deliver_message_to_bare(
    server: &Arc<Server>,
    mut stanza: Element,
    to: &jid::BareJid,
    delivery: Delivery,
) {
    let kind = stanza.attr("type").unwrap_or("normal").to_string();
    let kind = kind.as_str();
    if kind == "groupchat" {
        server.bounce(&stanza, StanzaError::service_unavailable());
        return;
    }
    let sessions = server.router.sessions_of(to.as_str());
    let targets = highest_priority(&sessions);
    if !targets.is_empty() {
        let mut archived = None;
        if delivery == Delivery::First {
            let hooks = &server.modules.hooks;
            archived = hooks.message_arriving(server, to, &mut stanza).await;
        }
        let bytes = Bytes::from(salon_xml::serialize(&stanza));
        let targets: Vec<_> = if kind == "headline" {
            sessions
                .iter()
                .filter(|s| s.is_available() && s.priority() >= 0)
                .collect()
        } else {
            targets
        };
        for session in &targets {
            session.send_after(bytes.clone(), archived.as_ref());
        }
        if delivery == Delivery::First {
            let hooks = &server.modules.hooks;
            hooks.message_delivered(server, to, &sessions, &targets, &stanza, archived.as_ref());
        }
        return;
    }
    if !server.account_exists(to).await {
        server.bounce(&stanza, StanzaError::service_unavailable());
        return;
    }
    if matches!(kind, "normal" | "chat") && worth_storing(&stanza) {
        if from_anonymous_visitor(server, &stanza) {
            // Anonymous visitors may talk to people who are online, but must not be able to
            // fill accounts' offline storage.
            server.bounce(
                &stanza,
                StanzaError::service_unavailable()
                    .with_text("the recipient is offline; guests cannot leave messages"),
            );
            return;
        }
        if delivery == Delivery::First {
            let hooks = &server.modules.hooks;
            hooks.message_arriving(server, to, &mut stanza).await;
        }
        store_offline(server, stanza, to).await;
        // The recipient may have become available while the message was being written: its
        // initial presence then took an empty store. Taking is atomic, so whichever of the two
        // runs last hands the message over, and it is never handed over twice.
        let sessions = server.router.sessions_of(to.as_str());
        if let Some(session) = highest_priority(&sessions).first() {
            deliver_offline(server, session).await;
        }
    }
}

/// Available resources with the highest non-negative priority (RFC 6121 §8.5.2.1.1).
fn highest_priority(sessions: &[Arc<SessionHandle>]) -> Vec<&Arc<SessionHandle>> {
    let available: Vec<_> = sessions
        .iter()
        .filter(|s| s.is_available() && s.priority() >= 0)
        .collect();
    let Some(best) = available.iter().map(|s| s.priority()).max() else {
        return Vec::new();
    };
    available
        .into_iter()
        .filter(|s| s.priority() == best)
        .collect()
}

fn between_different_guests(server: &Server, stanza: &Element, to: &jid::Jid) -> bool {
    // Most stanzas are for accounts: no need to parse the sender's address for those.
    if !server.is_anonymous_host(to.domain().as_str()) {
        return false;
    }
    let from = stanza
        .attr("from")
        .and_then(|f| crate::jid_memo::parse(f).ok());
    from.is_some_and(|from| {
        server.is_anonymous_host(from.domain().as_str())
            && server.is_anonymous_host(to.domain().as_str())
            && from.bare() != to.bare()
    })
}

/// Whether the stanza was sent by a visitor of the anonymous host.
pub fn from_anonymous_visitor(server: &Server, stanza: &Element) -> bool {
    stanza
        .attr("from")
        .and_then(|from| crate::jid_memo::parse(from).ok())
        .is_some_and(|from| server.is_anonymous_host(from.domain().as_str()))
}

fn is_subscription(stanza: &Element) -> bool {
    matches!(
        stanza.attr("type"),
        Some("subscribe" | "subscribed" | "unsubscribe" | "unsubscribed")
    )
}
