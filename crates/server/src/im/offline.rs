//! Offline storage (RFC 6121 §8.5.2.2, XEP-0160): chats and normal messages for an account
//! with no available resource are kept, within a per-account limit, and handed to its next
//! session that becomes available, stamped with their delay (XEP-0203).

use crate::router::SessionHandle;
use crate::server::Server;
use crate::stanza::Bare;
use crate::stanza::{self, ns, Build, StanzaError};
use crate::storage::OfflineMessage;
use minidom::Element;
use std::sync::Arc;

/// Only messages with content a person would miss are kept (XEP-0160 §3): a body, a subject,
/// a XEP-0334 `<store/>` hint, or an end-to-end encrypted payload (XEP-0384 §5.3.2: an OMEMO
/// message is stored like any chat message, with or without a fallback body or hint). A
/// `<no-store/>` hint wins over all of them: XEP-0334 §4.2 forbids even temporary storage.
pub fn worth_storing(stanza: &Element) -> bool {
    let hint = |name: &str| stanza.get_child(name, HINTS).is_some();
    if hint("no-store") {
        return false;
    }
    hint("store")
        || stanza
            .children()
            .any(|c| c.name() == "body" || c.name() == "subject")
        || super::encrypted::is_encrypted(stanza)
        || is_invitation(stanza)
}

/// A room invitation, mediated (XEP-0045 §7.8.2) or direct (XEP-0249): often without a body,
/// and something its addressee would miss as much as a chat message.
fn is_invitation(stanza: &Element) -> bool {
    stanza.get_child("x", "jabber:x:conference").is_some()
        || stanza
            .get_child("x", "http://jabber.org/protocol/muc#user")
            .is_some_and(|x| {
                x.get_child("invite", "http://jabber.org/protocol/muc#user")
                    .is_some()
            })
}

/// XEP-0334 message processing hints.
const HINTS: &str = "urn:xmpp:hints";

pub async fn store_offline(server: &Arc<Server>, stanza: Element, to: &jid::BareJid) {
    let (Some(node), domain) = (to.node(), to.domain().as_str()) else {
        return;
    };
    let storage = server.storage_for(domain);
    let held = storage
        .count_offline(node.as_str(), domain)
        .await
        .inspect_err(|e| tracing::error!(to = %to, error = %e, "counting offline messages"))
        .unwrap_or(0);
    if held >= server.config.limits.offline_messages_per_user {
        server.bounce(
            &stanza,
            StanzaError::new(
                stanza::ErrorType::Wait,
                stanza::StanzaCondition::ResourceConstraint,
            )
            .with_text("the recipient's offline storage is full"),
        );
        return;
    }
    let message = OfflineMessage {
        stanza: salon_xml::serialize_to_string(&stanza),
        received_at: stanza::now_unix(),
    };
    if let Err(e) = storage.store_offline(node.as_str(), domain, &message).await {
        tracing::error!(to = %to, error = %e, "storing offline message");
        server.bounce(&stanza, StanzaError::internal());
    }
}

/// Hand held messages to a session that just became available, with XEP-0203 delay stamps.
pub async fn deliver_offline(server: &Arc<Server>, session: &SessionHandle) {
    let bare = session.jid.bare();
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

#[cfg(test)]
mod tests {
    use super::worth_storing;
    use minidom::Element;

    fn message(children: &str) -> Element {
        format!("<message xmlns='jabber:client' type='chat'>{children}</message>")
            .parse()
            .unwrap()
    }

    #[test]
    fn hints_decide_before_content() {
        assert!(worth_storing(&message("<body>hi</body>")));
        assert!(worth_storing(&message("<store xmlns='urn:xmpp:hints'/>")));
        assert!(!worth_storing(&message(
            "<body>hi</body><no-store xmlns='urn:xmpp:hints'/>"
        )));
        // Other hints alone are no reason to keep a message (a bare chat state with
        // <no-permanent-store/> is still a chat state).
        assert!(!worth_storing(&message(
            "<active xmlns='http://jabber.org/protocol/chatstates'/>\
             <no-permanent-store xmlns='urn:xmpp:hints'/>"
        )));
        assert!(!worth_storing(&message(
            "<active xmlns='http://jabber.org/protocol/chatstates'/>"
        )));
        assert!(worth_storing(&message(
            "<x xmlns='http://jabber.org/protocol/muc#user'><invite from='a@b'/></x>"
        )));
        assert!(worth_storing(&message(
            "<x xmlns='jabber:x:conference' jid='room@rooms.example'/>"
        )));
        assert!(!worth_storing(&message(
            "<x xmlns='http://jabber.org/protocol/muc#user'><status code='100'/></x>"
        )));
    }
}
