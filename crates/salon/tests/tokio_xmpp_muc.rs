//! A multi-user chat session driven by tokio-xmpp (with xmpp-parsers' XEP-0045 types): create
//! an instant room, join with history, exchange groupchat messages carrying stanza ids.

mod common;
mod tokio_client;

use common::TestServer;
use std::str::FromStr;
use tokio_client::XmppClient;
use tokio_xmpp::jid::{BareJid, FullJid, Jid};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::message::{Lang, Message, MessageType};
use tokio_xmpp::parsers::muc::muc::{History, Muc};
use tokio_xmpp::parsers::presence::Presence;
use tokio_xmpp::Stanza;

const MUC_USER: &str = "http://jabber.org/protocol/muc#user";

fn status_codes(presence: &Presence) -> Vec<String> {
    presence
        .payloads
        .iter()
        .filter(|p| p.is("x", MUC_USER))
        .flat_map(|x| {
            x.children()
                .filter(|c| c.name() == "status")
                .filter_map(|c| c.attr("code").map(str::to_string))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn join(room: &str, nick: &str, history: u32) -> Stanza {
    let to = FullJid::from_str(&format!("{room}/{nick}")).unwrap();
    Presence::available()
        .with_to(to)
        .with_payload(Muc::new().with_history(History::new().with_maxstanzas(history)))
        .into()
}

fn groupchat(room: &str, body: &str) -> Stanza {
    let mut message = Message::new(Some(Jid::from(BareJid::from_str(room).unwrap())))
        .with_body(Lang::new(), body.into());
    message.type_ = MessageType::Groupchat;
    message.into()
}

fn stanza_id(message: &Message) -> Option<String> {
    message
        .payloads
        .iter()
        .find(|p| p.is("stanza-id", "urn:xmpp:sid:0"))
        .and_then(|p| p.attr("id"))
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_join_with_history_and_talk() {
    let server = TestServer::start("[c2s]\nrequire_encryption = false\n");
    server.add_user("alice@localhost", "alice-pass");
    server.add_user("bob@localhost", "bob-pass");
    let room = "planning@rooms.localhost";
    let mut alice = XmppClient::login(server.c2s, "alice@localhost/desk", "alice-pass").await;
    let mut bob = XmppClient::login(server.c2s, "bob@localhost/phone", "bob-pass").await;

    // Alice creates the room: her self-presence says 110 (self) and 201 (created).
    alice.send(join(room, "Alice", 0)).await;
    let codes = alice
        .expect("self-presence", |s| match s {
            Stanza::Presence(p)
                if p.from.as_ref().map(|f| f.to_string()) == Some(format!("{room}/Alice")) =>
            {
                Some(status_codes(p))
            }
            _ => None,
        })
        .await;
    assert!(
        codes.contains(&"110".to_string()) && codes.contains(&"201".to_string()),
        "codes: {codes:?}"
    );

    // Until configured the room is locked; an instant room opens it (XEP-0045 §10.1.2).
    let instant: Element = "<query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query>".parse().unwrap();
    let answer = alice.set(room, instant).await;
    assert!(
        matches!(answer, Iq::Result { .. }),
        "instant room: {answer:?}"
    );

    for text in ["one", "two", "three"] {
        alice.send(groupchat(room, text)).await;
    }
    let mut live_ids = Vec::new();
    for _ in 0..3 {
        let message = alice
            .expect("own groupchat echo", |s| match s {
                Stanza::Message(m) if m.type_ == MessageType::Groupchat && !m.bodies.is_empty() => {
                    Some(m.clone())
                }
                _ => None,
            })
            .await;
        live_ids.push(stanza_id(&message).expect("stanza-id on every room message"));
    }

    // Bob joins asking for the last two messages of history, which carry delay stamps.
    bob.send(join(room, "Bob", 2)).await;
    let mut history = Vec::new();
    while history.len() < 2 {
        let message = bob
            .expect("history", |s| match s {
                Stanza::Message(m) if m.type_ == MessageType::Groupchat && !m.bodies.is_empty() => {
                    Some(m.clone())
                }
                _ => None,
            })
            .await;
        assert!(
            message
                .payloads
                .iter()
                .any(|p| p.is("delay", "urn:xmpp:delay")),
            "history is delayed"
        );
        history.push(
            message
                .get_best_body(vec![])
                .map(|(_, b)| b.clone())
                .unwrap_or_default(),
        );
    }
    assert_eq!(history, vec!["two".to_string(), "three".to_string()]);

    // A live message reaches Bob from the room with Alice's occupant JID.
    alice.send(groupchat(room, "welcome bob")).await;
    let live = bob
        .expect("live message", |s| match s {
            Stanza::Message(m)
                if m.get_best_body(vec![])
                    .is_some_and(|(_, b)| b == "welcome bob") =>
            {
                Some(m.clone())
            }
            _ => None,
        })
        .await;
    assert_eq!(
        live.from.as_ref().map(|f| f.to_string()),
        Some(format!("{room}/Alice"))
    );
    let id = stanza_id(&live).unwrap();
    assert!(
        !live_ids.contains(&id),
        "each message gets its own stanza-id"
    );
}
