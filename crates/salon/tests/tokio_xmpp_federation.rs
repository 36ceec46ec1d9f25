//! Federation between two real Salon processes (RFC 6120 server-to-server, XEP-0220 dialback),
//! driven on both sides by tokio-xmpp, a client library we did not write: a.test and b.test on
//! 127.0.0.1, each finding the other through `s2s.hosts`, with self-signed certificates (so
//! Server Dialback authenticates the streams, allowed by `default_policy`). Messages and IQs
//! cross both ways, and a user of b.test talks in a room of rooms.a.test.
//!
//! Also XEP-0220 §8 (multiplexing): the room's stanzas to b.test ride the stream a.test already
//! opened to b.test, so a.test holds one TCP connection to b.test's s2s port instead of two.

mod common;
mod tokio_client;

use common::{free_ports, TestServer};
use std::str::FromStr;
use std::time::{Duration, Instant};
use tokio_client::XmppClient;
use tokio_xmpp::jid::{BareJid, FullJid, Jid};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::message::{Lang, Message, MessageType};
use tokio_xmpp::parsers::muc::muc::Muc;
use tokio_xmpp::parsers::presence::Presence;
use tokio_xmpp::Stanza;

/// Two Salons federating with each other: (a.test, b.test), and b.test's s2s port.
fn two_salons() -> (TestServer, TestServer, u16) {
    let [s2s_a, s2s_b] = free_ports();
    let start = |domain: &str, own: std::net::SocketAddr| {
        let hosts: String = [("a.test", s2s_a), ("b.test", s2s_b)]
            .iter()
            .flat_map(|(d, addr)| {
                [d.to_string(), format!("rooms.{d}"), format!("anon.{d}")]
                    .into_iter()
                    .map(move |name| format!("\"{name}\" = \"{addr}\"\n"))
            })
            .collect();
        TestServer::start_domain(
            domain,
            &format!("s2s = \"{own}\""),
            &format!(
                "[c2s]\nrequire_encryption = false\n\
                 [s2s]\ndefault_policy = \"allow_dialback\"\ndns_timeout_seconds = 1\n\
                 [s2s.hosts]\n{hosts}"
            ),
        )
    };
    let a = start("a.test", s2s_a);
    let b = start("b.test", s2s_b);
    a.add_user("alice@a.test", "alice-pass");
    b.add_user("bob@b.test", "bob-pass");
    (a, b, s2s_b.port())
}

fn chat(to: &str, body: &str) -> Message {
    Message::chat(Some(Jid::from_str(to).unwrap())).with_body(Lang::new(), body.into())
}

fn body(message: &Message) -> Option<&str> {
    message.get_best_body(vec![]).map(|(_, b)| b.as_str())
}

async fn message_with_body(client: &mut XmppClient, text: &str) -> Message {
    client
        .expect(
            &format!("a message saying {text:?}"),
            |stanza| match stanza {
                Stanza::Message(m) if body(m) == Some(text) => Some(m.clone()),
                _ => None,
            },
        )
        .await
}

/// Established TCP connections to `port` on 127.0.0.1, seen from the connecting side
/// (/proc/net/tcp lists both ends of a loopback connection; this counts the client ends).
fn connections_to(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() > 3 && fields[3] == "01" && fields[2] == format!("0100007F:{port:04X}")
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_xmpp_users_of_two_salons_talk_one_to_one_and_in_a_room() {
    let (a, b, b_s2s_port) = two_salons();
    let mut alice = XmppClient::login(a.c2s, "alice@a.test/desk", "alice-pass").await;
    let mut bob = XmppClient::login(b.c2s, "bob@b.test/phone", "bob-pass").await;
    alice.send(Presence::available()).await;
    bob.send(Presence::available()).await;

    // 1:1 across: a.test -> b.test to the bare JID, then back to the full JID.
    alice.send(chat("bob@b.test", "hello from a.test")).await;
    let got = message_with_body(&mut bob, "hello from a.test").await;
    assert_eq!(
        got.from.map(|j| j.to_string()).as_deref(),
        Some("alice@a.test/desk")
    );
    bob.send(chat("alice@a.test/desk", "hello back from b.test"))
        .await;
    let got = message_with_body(&mut alice, "hello back from b.test").await;
    assert_eq!(
        got.from.map(|j| j.to_string()).as_deref(),
        Some("bob@b.test/phone")
    );

    // An IQ crosses and its answer comes back from the other server (XEP-0030 for the account).
    let disco: Element = "<query xmlns='http://jabber.org/protocol/disco#info'/>"
        .parse()
        .unwrap();
    let answer = alice.get("bob@b.test", disco).await;
    match answer {
        Iq::Result { from, .. } | Iq::Error { from, .. } => {
            assert_eq!(from.map(|j| j.to_string()).as_deref(), Some("bob@b.test"))
        }
        other => panic!("not an answer: {other:?}"),
    }

    // A room on rooms.a.test: alice makes it, bob joins across federation, both talk.
    let room = "fedroom@rooms.a.test";
    let join = |nick: &str| -> Stanza {
        Presence::available()
            .with_to(FullJid::from_str(&format!("{room}/{nick}")).unwrap())
            .with_payload(Muc::new())
            .into()
    };
    let self_presence = |nick: &'static str| {
        move |s: &Stanza| match s {
            Stanza::Presence(p)
                if p.from.as_ref().map(|f| f.to_string()) == Some(format!("{room}/{nick}")) =>
            {
                Some(())
            }
            _ => None,
        }
    };
    alice.send(join("alice")).await;
    alice
        .expect("alice's self-presence", self_presence("alice"))
        .await;
    let instant: Element = "<query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query>".parse().unwrap();
    assert!(matches!(alice.set(room, instant).await, Iq::Result { .. }));
    bob.send(join("bob")).await;
    bob.expect(
        "bob's self-presence from the remote room",
        self_presence("bob"),
    )
    .await;
    let mut said = Message::new(Some(Jid::from(BareJid::from_str(room).unwrap())))
        .with_body(Lang::new(), "bob in alice's room".into());
    said.type_ = MessageType::Groupchat;
    bob.send(said).await;
    for (who, client) in [("alice", &mut alice), ("bob", &mut bob)] {
        let got = message_with_body(client, "bob in alice's room").await;
        assert_eq!(got.type_, MessageType::Groupchat, "at {who}");
        assert_eq!(
            got.from.map(|j| j.to_string()).as_deref(),
            Some("fedroom@rooms.a.test/bob"),
            "at {who}"
        );
    }

    // XEP-0220 §8: a.test and rooms.a.test both sent to b.test, on one TCP connection. (Short
    // dialback verification streams may still be closing: wait for the count to settle.)
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut count = connections_to(b_s2s_port);
    while count != 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        count = connections_to(b_s2s_port);
    }
    assert_eq!(
        count,
        1,
        "connections from a.test's server to b.test's s2s port\n--- a.test log ---\n{}",
        a.log()
            .lines()
            .filter(|l| l.contains("s2s"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        a.log().contains("multiplexed"),
        "no multiplexed domain pair in a.test's log"
    );
}
