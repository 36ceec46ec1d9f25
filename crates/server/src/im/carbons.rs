//! Message Carbons (XEP-0280): a user's other clients get copies of the chats that one of them
//! sends or receives, so a conversation reads the same on the phone and on the desk.

use crate::durable::{Commit, LatestCommit};
use crate::hooks::{priority, FromClient, MessageHook, StanzaHook};
use crate::registry::{IqHandler, IqKind, IqRequest, IqResponse, IqScope, Registry};
use crate::router::SessionHandle;
use crate::server::Server;
use crate::stanza::Bare;
use crate::stanza::{ns, Build, StanzaError};
use bytes::Bytes;
use minidom::Element;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Payloads that make a message part of a conversation even without a body (XEP-0280 §6.1):
/// receipts (XEP-0184), chat states (XEP-0085), markers (XEP-0333), and direct MUC invitations
/// (XEP-0249).
const IM_PAYLOADS: [&str; 4] = [
    "urn:xmpp:receipts",
    "http://jabber.org/protocol/chatstates",
    "urn:xmpp:chat-markers:0",
    "jabber:x:conference",
];

pub fn register(registry: &mut Registry<Server>) {
    registry.iq(
        IqScope::Account,
        IqKind::Set,
        ns::CARBONS,
        Arc::new(CarbonsHandler),
    );
    registry.feature(IqScope::Server, ns::CARBONS);
    // Copies of what a client sends, after blocking had its say and the archive queued the
    // sender's copy, before routing; copies of what an account receives, once the delivery
    // module has queued it. Either copy reaches a client only once the archive holds the
    // message, so that a crash cannot lose what a client has shown.
    registry
        .hooks
        .on_from_client(priority::COPY, Arc::new(Copies));
    registry
        .hooks
        .on_message(priority::OBSERVE, Arc::new(Copies));
}

/// Per session: the client enabled carbons (kept across a resumption, since the session
/// handle outlives the connection).
#[derive(Default)]
struct CarbonsEnabled(AtomicBool);

struct Copies;

#[async_trait::async_trait]
impl StanzaHook<Server, FromClient> for Copies {
    async fn handle(
        &self,
        server: &Arc<Server>,
        point: &FromClient,
        stanza: Element,
    ) -> Option<Element> {
        if stanza.name() == "message" {
            // No `to` is the sender's own account here (RFC 6120 §10.3.1).
            let account = point.session.jid.bare_str();
            let to_own_account = point.to.as_ref().is_none_or(|to| to.bare_str() == account);
            if to_own_account {
                // Archived only as it arrives, after this hook: its copies go once it is
                // routed, behind the commit that covers that write.
                let (server, sender, message) =
                    (server.clone(), point.session.clone(), stanza.clone());
                point.after_routing(move || copy_sent(&server, &sender, &message));
            } else {
                copy_sent(server, &point.session, &stanza);
            }
        }
        Some(stanza)
    }
}

#[async_trait::async_trait]
impl MessageHook<Server> for Copies {
    fn delivered(
        &self,
        _server: &Arc<Server>,
        account: &jid::BareJid,
        sessions: &[Arc<SessionHandle>],
        recipients: &[&Arc<SessionHandle>],
        message: &Element,
        archived: Option<&Commit>,
    ) {
        copy_received(account, sessions, recipients, message, archived);
    }
}

/// `<enable/>` and `<disable/>` (XEP-0280 §4): per session, so each client decides for itself.
struct CarbonsHandler;

#[async_trait::async_trait]
impl IqHandler<Server> for CarbonsHandler {
    async fn handle(&self, server: &Arc<Server>, request: IqRequest) -> IqResponse {
        if !request.is_own_account() {
            return Err(StanzaError::forbidden());
        }
        let enable = match request.payload().map(Element::name) {
            Some("enable") => true,
            Some("disable") => false,
            _ => return Err(StanzaError::bad_request("expected <enable/> or <disable/>")),
        };
        let session = request
            .from_full()
            .and_then(|from| server.router.session(from))
            .ok_or_else(StanzaError::internal)?;
        let enabled = session.extensions.get_or_default::<CarbonsEnabled>();
        enabled.0.store(enable, Ordering::Relaxed);
        Ok(None)
    }
}

/// Which way a message crosses the user's account.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Sent,
    Received,
}

impl Direction {
    fn element(self) -> &'static str {
        match self {
            Direction::Sent => "sent",
            Direction::Received => "received",
        }
    }
}

/// XEP-0280 §6.1: only instant-messaging traffic is copied, never room traffic that the room
/// already sends to every joined client, and never a message its sender marked private.
fn eligible(message: &Element, direction: Direction) -> bool {
    let has = |name: &str, namespace: &str| message.get_child(name, namespace).is_some();
    if has("private", ns::CARBONS) || has("no-copy", ns::HINTS) {
        return false;
    }
    // A copy is never copied again; and a forged one from elsewhere must not be relayed as if
    // the server had made it.
    if has("sent", ns::CARBONS) || has("received", ns::CARBONS) {
        return false;
    }
    let muc_user = message.get_child("x", ns::MUC_USER);
    match message.attr("type").unwrap_or("normal") {
        "groupchat" => false,
        // A private message from a room occupant: the room sends it to every joined client of
        // the user already. A mediated invitation comes from the room's bare JID and is copied.
        _ if direction == Direction::Received
            && muc_user.is_some_and(|x| x.get_child("invite", ns::MUC_USER).is_none())
            && message
                .attr("from")
                .and_then(|f| crate::jid_memo::parse(f).ok())
                .is_some_and(|f| f.resource().is_some()) =>
        {
            false
        }
        "chat" => true,
        "error" => true,
        kind => {
            (kind == "normal" && has("body", ns::CLIENT))
                || muc_user.is_some_and(|x| x.get_child("invite", ns::MUC_USER).is_some())
                || message
                    .children()
                    .any(|c| IM_PAYLOADS.contains(&c.ns().as_str()))
        }
    }
}

/// Copy `message`, just delivered to `recipients` of `account`, to the account's other
/// clients that enabled carbons.
fn copy_received(
    account: &jid::BareJid,
    sessions: &[Arc<SessionHandle>],
    recipients: &[&Arc<SessionHandle>],
    message: &Element,
    archived: Option<&Commit>,
) {
    if !eligible(message, Direction::Received) {
        return;
    }
    let others = sessions
        .iter()
        .filter(|s| !recipients.iter().any(|r| r.id == s.id));
    send_copies(account, others, message, Direction::Received, archived);
}

/// Copy `message`, just sent by `sender`, to the sender's other clients that enabled carbons.
fn copy_sent(server: &Arc<Server>, sender: &SessionHandle, message: &Element) {
    if sender.anonymous || !eligible(message, Direction::Sent) {
        return;
    }
    let account = sender.jid.bare();
    let sessions = server.router.sessions_of(account.as_str());
    let others = sessions.iter().filter(|s| s.id != sender.id);
    // The archive hook ran before this one and queued the sender's copy (or, for a message
    // to the account itself, this runs once it was routed and archived as it arrived); writes
    // complete in order, so the latest commit covers it.
    let archived = server
        .extensions
        .get::<LatestCommit>()
        .and_then(|latest| latest.get());
    send_copies(
        &account,
        others,
        message,
        Direction::Sent,
        archived.as_ref(),
    );
}

fn send_copies<'a>(
    account: &jid::BareJid,
    sessions: impl Iterator<Item = &'a Arc<SessionHandle>>,
    message: &Element,
    direction: Direction,
    archived: Option<&Commit>,
) {
    let mut copies = sessions.filter(|s| wants_carbons(s)).peekable();
    if copies.peek().is_none() {
        return;
    }
    let wrapper = Build::new(direction.element(), ns::CARBONS)
        .child(
            Build::new("forwarded", ns::FORWARD)
                .child(message.clone())
                .build(),
        )
        .build();
    for session in copies {
        let copy = Build::new("message", ns::CLIENT)
            .attr("from", account.to_string())
            .attr("to", session.jid.to_string())
            .attr("type", message.attr("type").unwrap_or("normal"))
            .child(wrapper.clone())
            .build();
        session.send_after(Bytes::from(salon_xml::serialize(&copy)), archived);
    }
}

fn wants_carbons(session: &SessionHandle) -> bool {
    let enabled = session.extensions.get::<CarbonsEnabled>();
    enabled.is_some_and(|e| e.0.load(Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(xml: &str) -> Element {
        xml.parse().expect("test XML")
    }

    #[test]
    fn chats_and_bodies_are_copied_room_traffic_and_private_ones_are_not() {
        let chat = message(
            "<message xmlns='jabber:client' type='chat' from='a@x/r'><body>hi</body></message>",
        );
        assert!(eligible(&chat, Direction::Received));
        assert!(eligible(&chat, Direction::Sent));
        let normal =
            message("<message xmlns='jabber:client' from='a@x/r'><body>hi</body></message>");
        assert!(eligible(&normal, Direction::Received));
        let empty_normal = message("<message xmlns='jabber:client' from='a@x/r'/>");
        assert!(!eligible(&empty_normal, Direction::Received));
        let receipt = message("<message xmlns='jabber:client' from='a@x/r'><received xmlns='urn:xmpp:receipts' id='1'/></message>");
        assert!(eligible(&receipt, Direction::Received));
        let groupchat = message("<message xmlns='jabber:client' type='groupchat' from='r@muc/n'><body>hi</body></message>");
        assert!(!eligible(&groupchat, Direction::Received));
        let private = message("<message xmlns='jabber:client' type='chat'><body>x</body><private xmlns='urn:xmpp:carbons:2'/><no-copy xmlns='urn:xmpp:hints'/></message>");
        assert!(!eligible(&private, Direction::Sent));
        let forged = message("<message xmlns='jabber:client' type='chat' from='m@evil/x'><received xmlns='urn:xmpp:carbons:2'/></message>");
        assert!(!eligible(&forged, Direction::Received));
    }

    #[test]
    fn room_private_messages_are_copied_only_when_sent() {
        let pm = "<message xmlns='jabber:client' type='chat' from='room@muc/nick'><body>psst</body><x xmlns='http://jabber.org/protocol/muc#user'/></message>";
        assert!(!eligible(&message(pm), Direction::Received));
        assert!(eligible(&message(pm), Direction::Sent));
        let invite = message("<message xmlns='jabber:client' from='room@muc'><x xmlns='http://jabber.org/protocol/muc#user'><invite from='b@x'/></x></message>");
        assert!(eligible(&invite, Direction::Received));
    }
}
