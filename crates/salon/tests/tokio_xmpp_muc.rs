//! A multi-user chat session driven by tokio-xmpp (with xmpp-parsers' XEP-0045 types): create
//! an instant room, join with history, exchange groupchat messages carrying stanza ids.

mod common;

use common::TestServer;
use futures::StreamExt;
use std::str::FromStr;
use std::time::Duration;
use tokio_xmpp::connect::DnsConfig;
use tokio_xmpp::jid::{BareJid, FullJid, Jid};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::message::{Lang, Message, MessageType};
use tokio_xmpp::parsers::muc::muc::{History, Muc};
use tokio_xmpp::parsers::presence::Presence;
use tokio_xmpp::xmlstream::Timeouts;
use tokio_xmpp::{Client, Event, IqRequest, IqResponse, Stanza};

const WAIT: Duration = Duration::from_secs(15);
const MUC_USER: &str = "http://jabber.org/protocol/muc#user";

async fn login(server: &TestServer, jid: &str, password: &str) -> Client {
    let mut client = Client::new_plaintext(
        Jid::from_str(jid).unwrap(),
        password,
        DnsConfig::addr(&server.c2s.to_string()),
        Timeouts::tight(),
    );
    loop {
        match tokio::time::timeout(WAIT, client.next()).await {
            Ok(Some(Event::Online { .. })) => return client,
            Ok(Some(Event::Disconnected(e))) => panic!("{jid} disconnected: {e}"),
            Ok(Some(_)) => {}
            other => panic!("{jid} did not get online: {other:?}"),
        }
    }
}

/// Wait for a stanza matching `wanted`, skipping others.
async fn expect<T>(
    client: &mut Client,
    what: &str,
    mut wanted: impl FnMut(&Stanza) -> Option<T>,
) -> T {
    tokio::time::timeout(WAIT, async {
        loop {
            match client.next().await {
                Some(Event::Stanza(stanza)) => {
                    if let Some(found) = wanted(&stanza) {
                        return found;
                    }
                }
                Some(Event::Disconnected(e)) => {
                    panic!("disconnected while waiting for {what}: {e}")
                }
                Some(_) => {}
                None => panic!("stream ended while waiting for {what}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

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
    let mut alice = login(&server, "alice@localhost/desk", "alice-pass").await;
    let mut bob = login(&server, "bob@localhost/phone", "bob-pass").await;

    // Alice creates the room: her self-presence says 110 (self) and 201 (created).
    alice.send_stanza(join(room, "Alice", 0)).await.unwrap();
    let codes = expect(&mut alice, "self-presence", |s| match s {
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
    let answer = alice
        .send_iq(Some(Jid::from_str(room).unwrap()), IqRequest::Set(instant))
        .await;
    assert!(matches!(
        tokio::time::timeout(WAIT, answer).await.unwrap(),
        Ok(IqResponse::Result(_))
    ));

    for text in ["one", "two", "three"] {
        alice.send_stanza(groupchat(room, text)).await.unwrap();
    }
    let mut live_ids = Vec::new();
    for _ in 0..3 {
        let message = expect(&mut alice, "own groupchat echo", |s| match s {
            Stanza::Message(m) if m.type_ == MessageType::Groupchat && !m.bodies.is_empty() => {
                Some(m.clone())
            }
            _ => None,
        })
        .await;
        live_ids.push(stanza_id(&message).expect("stanza-id on every room message"));
    }

    // Bob joins asking for the last two messages of history, which carry delay stamps.
    bob.send_stanza(join(room, "Bob", 2)).await.unwrap();
    let mut history = Vec::new();
    while history.len() < 2 {
        let message = expect(&mut bob, "history", |s| match s {
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
    alice
        .send_stanza(groupchat(room, "welcome bob"))
        .await
        .unwrap();
    let live = expect(&mut bob, "live message", |s| match s {
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
