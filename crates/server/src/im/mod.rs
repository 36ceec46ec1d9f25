//! Instant messaging on local hosts (RFC 6121): delivery rules for stanzas addressed to local
//! accounts (§8.5), offline storage (§8.5.2.2), rosters (§2) and presence (§3, §4).

use crate::modules::IqScope;
use crate::router::SessionHandle;
use crate::server::Server;
use crate::stanza::{self, ns, Build, StanzaError};
use crate::storage::OfflineMessage;
use bytes::Bytes;
use minidom::Element;
use std::sync::Arc;

pub mod blocking;
pub mod carbons;
pub mod mam;
pub mod presence;
pub mod roster;

/// A message from a local client: copies for the sender's other clients, then on its way.
pub async fn outbound_message(server: &Arc<Server>, sender: &SessionHandle, message: Element) {
    mam::archive_outgoing(server, sender, &message).await;
    carbons::copy_sent(server, sender, &message);
    server.route(message).await;
}

/// Deliver a stanza whose `to` is on a local user host (RFC 6121 §8.5).
pub async fn deliver_local(server: &Arc<Server>, stanza: Element, to: jid::Jid) {
    let Some(node) = to.node() else {
        // Addressed to the server itself.
        if stanza.name() == "iq" {
            server
                .handle_iq(stanza, IqScope::Server, to.to_bare())
                .await;
        } else if stanza.name() == "message" {
            // RFC 6120 §10.3.1: a message to the server that it cannot act on.
            server.bounce(&stanza, StanzaError::service_unavailable());
        }
        return;
    };
    let _ = node;
    if let Some(Ok(from)) = stanza.attr("from").map(jid::Jid::new) {
        if blocking::is_blocked(server, &to.to_bare(), &from).await {
            blocking::refuse_inbound(server, &stanza);
            return;
        }
    }
    if stanza.name() == "message" && between_different_guests(server, &stanza, &to) {
        // Guests reach each other only inside rooms that allow it, never directly.
        server.bounce(
            &stanza,
            StanzaError::not_allowed().with_text("guests cannot message other guests directly"),
        );
        return;
    }
    match to.try_as_full() {
        Ok(full) => deliver_to_full(server, stanza, full).await,
        Err(bare) => deliver_to_bare(server, stanza, bare).await,
    }
}

async fn deliver_to_full(server: &Arc<Server>, mut stanza: Element, to: &jid::FullJid) {
    if stanza.name() == "presence" && is_subscription(&stanza) {
        // RFC 6121 §3: subscription stanzas are about the account, not a resource.
        presence::inbound_subscription(server, stanza, &to.to_bare()).await;
        return;
    }
    if let Some(session) = server.router.session(to) {
        if stanza.name() == "message" {
            mam::archive_incoming(server, &to.to_bare(), &mut stanza).await;
        }
        session.send_element(&stanza);
        if stanza.name() == "message" {
            let bare = to.to_bare();
            let sessions = server.router.sessions_of(bare.as_str());
            carbons::copy_received(&bare, &sessions, &[&session], &stanza);
        }
        return;
    }
    match stanza.name() {
        // §8.5.3.2.1: chat and normal messages fall back to the bare JID.
        "message" => match stanza.attr("type").unwrap_or("normal") {
            "normal" | "chat" => deliver_to_bare(server, stanza, &to.to_bare()).await,
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
pub async fn redeliver_unacked(
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
        let is_copy = message.get_child("sent", carbons::NS_CARBONS).is_some()
            || message.get_child("received", carbons::NS_CARBONS).is_some()
            || message
                .get_child("result", crate::archive::NS_MAM)
                .is_some();
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
        if delivery == Delivery::First {
            mam::archive_incoming(server, to, &mut stanza).await;
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
            session.send(bytes.clone());
        }
        if delivery == Delivery::First {
            carbons::copy_received(to, &sessions, &targets, &stanza);
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
            mam::archive_incoming(server, to, &mut stanza).await;
        }
        store_offline(server, stanza, to).await;
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

/// Only messages with content a person would miss are kept (XEP-0160 §3).
fn worth_storing(stanza: &Element) -> bool {
    stanza
        .children()
        .any(|c| c.name() == "body" || c.name() == "subject" || c.ns() == "urn:xmpp:hints")
}

async fn store_offline(server: &Arc<Server>, stanza: Element, to: &jid::BareJid) {
    let (Some(node), domain) = (to.node(), to.domain().as_str()) else {
        return;
    };
    let storage = server.storage_for(domain);
    let held = storage
        .count_offline(node.as_str(), domain)
        .await
        .unwrap_or(0);
    if held >= server.config.limits.offline_messages_per_user {
        server.bounce(
            &stanza,
            StanzaError::new(stanza::ErrorType::Wait, "resource-constraint")
                .with_text("the recipient's offline storage is full"),
        );
        return;
    }
    let message = OfflineMessage {
        stanza: String::from_utf8_lossy(&salon_xml::serialize(&stanza)).into_owned(),
        received_at: stanza::now_unix(),
    };
    if let Err(e) = storage.store_offline(node.as_str(), domain, &message).await {
        tracing::error!(to = %to, error = %e, "storing offline message");
        server.bounce(&stanza, StanzaError::internal());
    }
}

/// Hand held messages to a session that just became available, with XEP-0203 delay stamps.
pub async fn deliver_offline(server: &Arc<Server>, session: &SessionHandle) {
    let bare = session.jid.to_bare();
    let (Some(node), domain) = (bare.node(), bare.domain().as_str()) else {
        return;
    };
    let messages = match server
        .storage_for(domain)
        .take_offline(node.as_str(), domain)
        .await
    {
        Ok(messages) => messages,
        Err(e) => {
            tracing::error!(jid = %bare, error = %e, "reading offline messages");
            return;
        }
    };
    for message in messages {
        let Some(mut stanza) = salon_xml::parse_stored(&message.stanza, ns::CLIENT) else {
            tracing::error!(jid = %bare, "unreadable offline message dropped");
            continue;
        };
        stanza.append_child(
            Build::new("delay", ns::DELAY)
                .attr("from", domain)
                .attr("stamp", stanza::xep82_datetime(message.received_at))
                .text("Offline storage")
                .build(),
        );
        session.send_element(&stanza);
    }
}

fn between_different_guests(server: &Server, stanza: &Element, to: &jid::Jid) -> bool {
    let from = stanza.attr("from").and_then(|f| jid::Jid::new(f).ok());
    from.is_some_and(|from| {
        server.is_anonymous_host(from.domain().as_str())
            && server.is_anonymous_host(to.domain().as_str())
            && from.to_bare() != to.to_bare()
    })
}

/// Whether the stanza was sent by a visitor of the anonymous host.
pub fn from_anonymous_visitor(server: &Server, stanza: &Element) -> bool {
    stanza
        .attr("from")
        .and_then(|from| jid::Jid::new(from).ok())
        .is_some_and(|from| server.is_anonymous_host(from.domain().as_str()))
}

fn is_subscription(stanza: &Element) -> bool {
    matches!(
        stanza.attr("type"),
        Some("subscribe" | "subscribed" | "unsubscribe" | "unsubscribed")
    )
}
