//! Salon driven by tokio-xmpp, an independent Rust client library: SCRAM login, 1:1 messages,
//! IQs to the server, and a refused login.

mod common;
mod tokio_client;

use common::TestServer;
use std::str::FromStr;
use std::time::Duration;
use tokio_client::XmppClient;
use tokio_xmpp::jid::{BareJid, Jid};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::message::{Lang, Message};
use tokio_xmpp::parsers::presence::Presence;
use tokio_xmpp::Stanza;

async fn next_message(client: &mut XmppClient) -> Message {
    client
        .expect("a message", |stanza| match stanza {
            Stanza::Message(message) => Some(message.clone()),
            _ => None,
        })
        .await
}

fn plaintext_server() -> TestServer {
    let server = TestServer::start("[c2s]\nrequire_encryption = false\n");
    server.add_user("alice@localhost", "alice-pass");
    server.add_user("bob@localhost", "bob-pass");
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_exchange_messages_and_query_server() {
    let server = plaintext_server();
    let mut alice = XmppClient::login(server.c2s, "alice@localhost/desk", "alice-pass").await;
    let mut bob = XmppClient::login(server.c2s, "bob@localhost/phone", "bob-pass").await;
    assert_eq!(alice.jid.to_string(), "alice@localhost/desk");
    assert_eq!(bob.jid.to_string(), "bob@localhost/phone");

    // Both announce themselves so that bare-JID messages reach them.
    alice.send(Presence::available()).await;
    bob.send(Presence::available()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let message = Message::chat(Some(Jid::from(BareJid::from_str("bob@localhost").unwrap())))
        .with_body(Lang::new(), "hello bob".into());
    alice.send(message).await;
    let received = next_message(&mut bob).await;
    assert_eq!(
        received.from.as_ref().map(|j| j.to_string()).as_deref(),
        Some("alice@localhost/desk")
    );
    assert_eq!(
        received.get_best_body(vec![]).map(|(_, b)| b.as_str()),
        Some("hello bob")
    );

    // Ping the server (XEP-0199) and ask its version (XEP-0092).
    let ping = alice
        .get(
            "localhost",
            Element::builder("ping", "urn:xmpp:ping").build(),
        )
        .await;
    assert!(matches!(ping, Iq::Result { .. }), "ping failed: {ping:?}");
    let version = alice
        .get(
            "localhost",
            Element::builder("query", "jabber:iq:version").build(),
        )
        .await;
    match version {
        Iq::Result {
            payload: Some(query),
            ..
        } => {
            assert_eq!(
                query
                    .get_child("name", "jabber:iq:version")
                    .map(|n| n.text())
                    .as_deref(),
                Some("Salon")
            );
        }
        other => panic!("version failed: {other:?}"),
    }
    // An IQ nobody handles gets service-unavailable.
    let unknown = alice
        .get(
            "localhost",
            Element::builder("query", "urn:example:nothing").build(),
        )
        .await;
    match unknown {
        Iq::Error { error, .. } => {
            assert_eq!(
                format!("{:?}", error.defined_condition),
                "ServiceUnavailable"
            );
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_refused() {
    let server = plaintext_server();
    let mut mallory = tokio_client::open(server.c2s, "alice@localhost/x", "not-her-password");
    // tokio-xmpp keeps retrying after an authentication failure, so watch it for a while:
    // it must never get online, and the server must have refused it.
    assert!(
        !tokio_client::comes_online(&mut mallory, Duration::from_secs(4)).await,
        "logged in with a wrong password"
    );
    let log = server.log();
    assert!(
        log.contains("failed login"),
        "the server logs the failed login:\n{log}"
    );
    assert!(!log.contains("bound"), "no session was bound:\n{log}");
}
