//! Salon driven by tokio-xmpp, an independent Rust client library: SCRAM login, 1:1 messages,
//! IQs to the server, and a refused login.

mod common;

use common::TestServer;
use futures::StreamExt;
use std::str::FromStr;
use std::time::Duration;
use tokio_xmpp::connect::DnsConfig;
use tokio_xmpp::jid::{BareJid, Jid};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::message::{Lang, Message};
use tokio_xmpp::parsers::presence::Presence;
use tokio_xmpp::xmlstream::Timeouts;
use tokio_xmpp::{Client, Event, IqRequest, IqResponse, Stanza};

const WAIT: Duration = Duration::from_secs(15);

fn client(server: &TestServer, jid: &str, password: &str) -> Client {
    Client::new_plaintext(
        Jid::from_str(jid).unwrap(),
        password,
        DnsConfig::addr(&server.c2s.to_string()),
        Timeouts::tight(),
    )
}

async fn online(client: &mut Client) -> Jid {
    loop {
        match tokio::time::timeout(WAIT, client.next()).await {
            Ok(Some(Event::Online { bound_jid, .. })) => return bound_jid,
            Ok(Some(Event::Disconnected(e))) => panic!("disconnected before online: {e}"),
            Ok(Some(_)) => continue,
            Ok(None) => panic!("client stream ended"),
            Err(_) => panic!("timed out waiting to get online"),
        }
    }
}

async fn next_message(client: &mut Client) -> Message {
    loop {
        match tokio::time::timeout(WAIT, client.next()).await {
            Ok(Some(Event::Stanza(Stanza::Message(message)))) => return message,
            Ok(Some(Event::Disconnected(e))) => panic!("disconnected: {e}"),
            Ok(Some(_)) => continue,
            Ok(None) => panic!("client stream ended"),
            Err(_) => panic!("timed out waiting for a message"),
        }
    }
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
    let mut alice = client(&server, "alice@localhost/desk", "alice-pass");
    let mut bob = client(&server, "bob@localhost/phone", "bob-pass");
    let alice_jid = online(&mut alice).await;
    let bob_jid = online(&mut bob).await;
    assert_eq!(alice_jid.to_string(), "alice@localhost/desk");
    assert_eq!(bob_jid.to_string(), "bob@localhost/phone");

    // Both announce themselves so that bare-JID messages reach them.
    alice
        .send_stanza(Presence::available().into())
        .await
        .unwrap();
    bob.send_stanza(Presence::available().into()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let message = Message::chat(Some(Jid::from(BareJid::from_str("bob@localhost").unwrap())))
        .with_body(Lang::new(), "hello bob".into());
    alice.send_stanza(message.into()).await.unwrap();
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
        .send_iq(
            Some(Jid::from_str("localhost").unwrap()),
            IqRequest::Get(Element::builder("ping", "urn:xmpp:ping").build()),
        )
        .await;
    match tokio::time::timeout(WAIT, ping)
        .await
        .expect("ping answered")
    {
        Ok(IqResponse::Result(_)) => {}
        other => panic!("ping failed: {other:?}"),
    }
    let version = alice
        .send_iq(
            Some(Jid::from_str("localhost").unwrap()),
            IqRequest::Get(Element::builder("query", "jabber:iq:version").build()),
        )
        .await;
    match tokio::time::timeout(WAIT, version)
        .await
        .expect("version answered")
    {
        Ok(IqResponse::Result(Some(query))) => {
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
        .send_iq(
            Some(Jid::from_str("localhost").unwrap()),
            IqRequest::Get(Element::builder("query", "urn:example:nothing").build()),
        )
        .await;
    match tokio::time::timeout(WAIT, unknown).await.expect("answered") {
        Ok(IqResponse::Error(error)) => {
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
    let mut mallory = client(&server, "alice@localhost/x", "not-her-password");
    // tokio-xmpp keeps retrying after an authentication failure, so watch it for a while:
    // it must never get online, and the server must have refused it.
    let watched = tokio::time::timeout(Duration::from_secs(4), async {
        while let Some(event) = mallory.next().await {
            if let Event::Online { .. } = event {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        !matches!(watched, Ok(true)),
        "logged in with a wrong password"
    );
    let log = server.log();
    assert!(
        log.contains("failed login"),
        "the server logs the failed login:\n{log}"
    );
    assert!(!log.contains("bound"), "no session was bound:\n{log}");
}
