//! PEP notifications (XEP-0163 §4.3, XEP-0060 §7.1.2, §7.2.2, §8.4.2, §8.5.2): `<event/>`
//! messages to the owner's available clients and to contacts subscribed to the owner's
//! presence whose clients asked for the node (`NODE+notify`), and a node's last item to a
//! client that comes online (§4.3.4 of XEP-0163).

use super::access::{self, Relation};
use super::client_features::{self, Features};
use crate::im::{blocklist, roster};
use crate::router::SessionHandle;
use crate::server::Server;
use crate::stanza::Bare;
use crate::stanza::{ns, xep82_datetime, Build};
use crate::storage::{AccessModel, PepItem, PepNode, SendLastItem};
use minidom::Element;
use std::sync::Arc;

pub const EVENT: &str = "http://jabber.org/protocol/pubsub#event";

/// The `<item/>` of a stored item, its payload parsed back (XEP-0060 §7.1.2.1).
pub fn item_element(item: &PepItem, namespace: &str) -> Element {
    let payload = salon_xml::parse_stored(&item.payload, ns::CLIENT);
    Build::new("item", namespace)
        .attr("id", item.id.clone())
        .children(payload)
        .build()
}

fn event_message(from: &jid::BareJid, to: &str, event: Element) -> Element {
    Build::new("message", ns::CLIENT)
        .attr("from", from.to_string())
        .attr("to", to.to_owned())
        .attr("type", "headline")
        .child(Build::new("event", EVENT).child(event).build())
        .build()
}

/// Send `event` (an `<items/>`, `<delete/>` or `<purge/>` in the event namespace) about `node`
/// of `owner` to everyone who hears of it.
pub async fn broadcast(server: &Arc<Server>, owner: &jid::BareJid, node: &PepNode, event: Element) {
    // The owner's own clients, every one that is online (XEP-0163 §4.3.2 "account owner").
    for session in server.router.sessions_of(owner.as_str()) {
        if session.is_available() {
            session.send_element(&event_message(
                owner,
                &session.jid.to_string(),
                event.clone(),
            ));
        }
    }
    let blocked = blocklist::of(server, owner).await;
    let mut told = std::collections::HashSet::new();
    for item in roster::items(server, owner).await {
        let relation = Relation::of_item(&item.jid, Some(&item));
        if !item.subscription.has_from() || access::check(&node.config, &relation).is_err() {
            continue;
        }
        told.insert(item.jid.clone());
        send_to_contact(server, owner, &blocked, &item.jid, node, &event);
    }
    // Members of a whitelist node hear of it even without a presence subscription
    // (XEP-0060 §4.5: the whitelist is who may subscribe; in PEP, +notify stands for that).
    if node.config.access_model == AccessModel::Whitelist {
        for member in node.config.whitelist.iter().filter(|m| !told.contains(*m)) {
            send_to_contact(server, owner, &blocked, member, node, &event);
        }
    }
}

/// Send `event` to the clients of `contact` that asked for the node, unless the owner blocks
/// the contact.
fn send_to_contact(
    server: &Arc<Server>,
    owner: &jid::BareJid,
    blocked: &[String],
    contact: &str,
    node: &PepNode,
    event: &Element,
) {
    let Ok(address) = jid::Jid::new(contact) else {
        return;
    };
    if blocklist::blocks(blocked, &address) {
        return;
    }
    for session in server.router.sessions_of(contact) {
        let wants = client_features::features_of(&session)
            .is_some_and(|f| client_features::wants_notifications(&f, &node.name));
        if session.is_available() && wants {
            session.send_element(&event_message(
                owner,
                &session.jid.to_string(),
                event.clone(),
            ));
        }
    }
}

/// A client came online with `features`: send it the last item of each node it wants, of its
/// own account and of every contact whose presence it receives and who lets it read the node.
pub async fn send_last_items(
    server: &Arc<Server>,
    session: &Arc<SessionHandle>,
    features: &Features,
) {
    let account = session.jid.bare();
    send_last_items_of(server, session, features, &account, &Relation::Owner).await;
    for item in roster::items(server, &account).await {
        if !item.subscription.has_to() {
            continue;
        }
        let Ok(contact) = jid::BareJid::new(&item.jid) else {
            continue;
        };
        if !server.is_local_user_host(contact.domain().as_str())
            || blocklist::is_blocked(server, &contact, &session.jid.clone().into()).await
            || blocklist::is_blocked(server, &account, &contact.clone().into()).await
        {
            continue;
        }
        let relation = access::relation(server, &contact, &account).await;
        send_last_items_of(server, session, features, &contact, &relation).await;
    }
}

async fn send_last_items_of(
    server: &Arc<Server>,
    session: &SessionHandle,
    features: &Features,
    owner: &jid::BareJid,
    relation: &Relation,
) {
    let (user, domain) = roster::account_key(owner);
    let storage = server.storage_for(&domain);
    let Ok(nodes) = storage.pep_nodes(&user, &domain).await else {
        return;
    };
    for node in nodes {
        if node.config.send_last_published_item != SendLastItem::OnSubAndPresence
            || !client_features::wants_notifications(features, &node.name)
            || access::check(&node.config, relation).is_err()
        {
            continue;
        }
        let Ok(items) = storage.pep_items(&user, &domain, &node.name, Some(1)).await else {
            continue;
        };
        let Some(last) = items.last() else {
            continue;
        };
        let event = Build::new("items", EVENT)
            .attr("node", node.name.clone())
            .child(item_element(last, EVENT))
            .build();
        let mut message = event_message(owner, &session.jid.to_string(), event);
        // XEP-0060 §12.4 (and XEP-0203): when it was published.
        message.append_child(
            Build::new("delay", ns::DELAY)
                .attr("from", owner.to_string())
                .attr("stamp", xep82_datetime(last.published / 1_000_000))
                .build(),
        );
        session.send_element(&message);
    }
}
