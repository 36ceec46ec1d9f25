//! The room's rules without sockets: a room is built on a test server, sessions are router
//! handles whose queues the tests read, and stanzas go in as a client would send them.

use super::{HistoryEntry, Room};
use crate::config::Config;
use crate::muc::config::{Affiliation, Role, RoomRecord};
use crate::muc::{MucService, RoomHandle, RoomSummary};
use crate::router::{SessionHandle, Signal};
use crate::service::ServiceContext;
use crate::stanza::ns::MUC_ADMIN as NS_MUC_ADMIN;
use crate::stanza::ns::OCCUPANT_ID as NS_OCCUPANT_ID;
use crate::stanza::ns::SID as NS_SID;
use crate::stanza::Bare;
use crate::stanza::{ns, Build, StanzaError};
use crate::storage::memory::MemoryStorage;
use minidom::Element;
use std::sync::{Arc, Mutex};

const ROOM: &str = "lounge@rooms.localhost";

/// A room that already exists (not locked), owned by alice@localhost.
fn room_with(record: RoomRecord) -> Room {
    room_with_settings(record, crate::config::MucConfig::new("rooms.localhost"))
}

/// As [`room_with`], with the service's settings given.
fn room_with_settings(record: RoomRecord, settings: crate::config::MucConfig) -> Room {
    // The server keeps its self-signed certificate in data_dir: one per test, out of the tree.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let data_dir = format!("salon-room-test-{}-{n}", std::process::id());
    let config = Config {
        data_dir: std::env::temp_dir().join(data_dir),
        upload: None,
        ..Config::development()
    };
    let server = crate::build(config, Arc::new(MemoryStorage::new())).expect("a test server");
    let visitors = crate::muc::visitor::VisitorSecrets::new(vec![7; 32]);
    let service = MucService::new(settings, visitors);
    let (sender, _receiver) = tokio::sync::mpsc::channel(1);
    let handle = Arc::new(RoomHandle {
        sender,
        summary: Mutex::new(RoomSummary::default()),
        id: 1,
    });
    let jid = jid::BareJid::new(ROOM).expect("a room address");
    let context = ServiceContext::new(server, "rooms.localhost");
    Room::new(context, service, handle, jid, record, false)
}

fn owned_room() -> Room {
    let mut record = RoomRecord::default();
    record
        .affiliations
        .insert("alice@localhost".into(), Affiliation::Owner);
    room_with(record)
}

fn full(jid: &str) -> jid::FullJid {
    jid::FullJid::new(jid).expect("a full JID")
}

fn xml(text: &str) -> Element {
    text.parse().expect("well-formed test stanza")
}

/// A client session known to the router, whose queue the test reads.
fn session(room: &Room, jid: &str) -> Arc<SessionHandle> {
    let handle = SessionHandle::new(full(jid), false, 1000, [127, 0, 0, 1].into());
    room.context.bind_session(handle.clone());
    handle
}

/// Everything queued for a session so far, parsed.
fn received(handle: &SessionHandle) -> Vec<Element> {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let std::task::Poll::Ready(Signal::Queued(queue)) = handle.poll_signal(&mut cx) else {
        return Vec::new();
    };
    queue
        .iter()
        .map(|item| {
            let mut bytes = Vec::new();
            item.write_to(&mut bytes);
            let text = String::from_utf8(bytes).expect("UTF-8 on the wire");
            salon_xml::parse_stored(&text, ns::CLIENT).expect("a stanza on the wire")
        })
        .collect()
}

/// `jid` joins as `nick`, with an optional `<history/>` request; returns its session.
async fn join(room: &mut Room, jid: &str, nick: &str, history: &str) -> Arc<SessionHandle> {
    let handle = session(room, jid);
    send_join(room, jid, nick, history).await;
    handle
}

async fn send_join(room: &mut Room, jid: &str, nick: &str, history: &str) {
    room.on_presence(xml(&format!(
        "<presence xmlns='jabber:client' from='{jid}' to='{ROOM}/{nick}'>\
         <x xmlns='http://jabber.org/protocol/muc'>{history}</x></presence>"
    )))
    .await;
}

fn condition(result: Result<Option<Element>, StanzaError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(error) => error.condition.name(),
    }
}

fn admin_item(attrs: &str) -> Element {
    xml(&format!(
        "<query xmlns='{NS_MUC_ADMIN}'><item {attrs}/></query>"
    ))
}

fn muc_item(presence: &Element) -> Option<&Element> {
    presence
        .get_child("x", ns::MUC_USER)?
        .get_child("item", ns::MUC_USER)
}

fn status_codes(stanza: &Element) -> Vec<String> {
    stanza
        .get_child("x", ns::MUC_USER)
        .map(|x| {
            x.children()
                .filter(|c| c.is("status", ns::MUC_USER))
                .filter_map(|c| c.attr("code").map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

// ----- Nicks (§7.2.9) -----

#[tokio::test]
async fn nick_checks_refuse_look_alikes_and_registered_nicks_of_others() {
    let mut room = owned_room();
    room.record
        .registered_nicks
        .insert("carol@localhost".into(), "Carol".into());
    join(&mut room, "alice@localhost/a", "Alice", "").await;
    let bob = jid::BareJid::new("bob@localhost").unwrap();
    let alice = jid::BareJid::new("alice@localhost").unwrap();
    let conflict = |r: Result<String, StanzaError>| r.err().map(|e| e.condition.name());
    // Cyrillic А looks like Latin A: the same nick for the room.
    assert_eq!(
        conflict(room.check_nick("\u{0410}lice", &bob, None)),
        Some("conflict")
    );
    assert_eq!(
        conflict(room.check_nick("alice", &bob, None)),
        Some("conflict")
    );
    // Alice herself may use it (another session, or a case change).
    assert_eq!(room.check_nick("alice", &alice, Some(0)).unwrap(), "alice");
    assert_eq!(
        conflict(room.check_nick("carol", &bob, None)),
        Some("conflict")
    );
    assert_eq!(
        conflict(room.check_nick("\u{200B}", &bob, None)),
        Some("jid-malformed")
    );
    assert_eq!(room.check_nick("Bob", &bob, None).unwrap(), "Bob");
}

// ----- Roles and affiliations (§5, §8, §9) -----

/// §7.12: disco#info on the node `x-roomuser-item` tells the asker its registered nick (an
/// identity's name), or is empty; it is not the room's info.
#[tokio::test]
async fn the_reserved_nick_node_answers_with_the_askers_registered_nick() {
    let mut room = owned_room();
    room.record
        .registered_nicks
        .insert("bob@localhost".into(), "Bobby".into());
    for (jid, expected) in [
        ("bob@localhost/b", Some("Bobby")),
        ("carol@localhost/c", None),
    ] {
        let asker = session(&room, jid);
        room.on_iq(xml(&format!(
            "<iq xmlns='jabber:client' type='get' id='n1' from='{jid}' to='{ROOM}'>\
             <query xmlns='{}' node='x-roomuser-item'/></iq>",
            ns::DISCO_INFO
        )))
        .await;
        let replies = received(&asker);
        let query = replies
            .iter()
            .find(|r| r.attr("type") == Some("result"))
            .and_then(|r| r.get_child("query", ns::DISCO_INFO))
            .expect("a disco#info result");
        assert_eq!(query.attr("node"), Some("x-roomuser-item"));
        let identities: Vec<_> = query.children().collect();
        match expected {
            Some(nick) => {
                assert_eq!(identities.len(), 1, "{query:?}");
                assert_eq!(identities[0].attr("name"), Some(nick));
                assert_eq!(identities[0].attr("category"), Some("conference"));
            }
            None => assert!(identities.is_empty(), "{query:?}"),
        }
    }
}

#[tokio::test]
async fn default_role_follows_affiliation_and_moderation() {
    let mut room = owned_room();
    assert_eq!(room.default_role(Affiliation::Owner), Role::Moderator);
    assert_eq!(room.default_role(Affiliation::Admin), Role::Moderator);
    assert_eq!(room.default_role(Affiliation::Member), Role::Participant);
    assert_eq!(room.default_role(Affiliation::None), Role::Participant);
    assert_eq!(room.default_role(Affiliation::Outcast), Role::None);
    room.record.config.moderated = true;
    assert_eq!(room.default_role(Affiliation::None), Role::Visitor);
    assert_eq!(room.default_role(Affiliation::Member), Role::Participant);
}

#[tokio::test]
async fn an_admin_cannot_demote_an_owner_nor_make_admins() {
    let mut room = owned_room();
    room.record
        .affiliations
        .insert("dave@localhost".into(), Affiliation::Admin);
    let dave = full("dave@localhost/d");
    let demote = admin_item("affiliation='member' jid='alice@localhost'");
    assert_eq!(condition(room.admin_set(&dave, &demote).await), "forbidden");
    assert_eq!(
        room.affiliation(&jid::BareJid::new("alice@localhost").unwrap()),
        Affiliation::Owner
    );
    let promote = admin_item("affiliation='admin' jid='erin@localhost'");
    assert_eq!(
        condition(room.admin_set(&dave, &promote).await),
        "forbidden"
    );
    // What an admin may do: make members.
    let member = admin_item("affiliation='member' jid='erin@localhost'");
    assert_eq!(condition(room.admin_set(&dave, &member).await), "ok");
    assert_eq!(
        room.affiliation(&jid::BareJid::new("erin@localhost").unwrap()),
        Affiliation::Member
    );
    // A member may change no affiliation at all.
    let erin = full("erin@localhost/e");
    let other = admin_item("affiliation='member' jid='frank@localhost'");
    assert_eq!(condition(room.admin_set(&erin, &other).await), "forbidden");
}

#[tokio::test]
async fn the_last_owner_cannot_give_up_ownership() {
    let mut room = owned_room();
    let alice = full("alice@localhost/a");
    let step_down = admin_item("affiliation='admin' jid='alice@localhost'");
    assert_eq!(
        condition(room.admin_set(&alice, &step_down).await),
        "conflict"
    );
    assert_eq!(room.affiliation(&alice.bare()), Affiliation::Owner);
    let co_owner = admin_item("affiliation='owner' jid='bob@localhost'");
    assert_eq!(condition(room.admin_set(&alice, &co_owner).await), "ok");
    assert_eq!(condition(room.admin_set(&alice, &step_down).await), "ok");
    assert_eq!(room.affiliation(&alice.bare()), Affiliation::Admin);
}

#[tokio::test]
async fn affiliation_changes_are_checked_all_together_before_any_is_applied() {
    let mut room = owned_room();
    room.record
        .affiliations
        .insert("dave@localhost".into(), Affiliation::Admin);
    let both = xml(&format!(
        "<query xmlns='{NS_MUC_ADMIN}'>\
         <item affiliation='member' jid='erin@localhost'/>\
         <item affiliation='outcast' jid='alice@localhost'/></query>"
    ));
    let dave = full("dave@localhost/d");
    assert_eq!(condition(room.admin_set(&dave, &both).await), "forbidden");
    assert_eq!(
        room.affiliation(&jid::BareJid::new("erin@localhost").unwrap()),
        Affiliation::None,
        "the allowed first item must not be applied when the second is refused"
    );
}

#[tokio::test]
async fn a_banned_occupant_is_removed_with_301_and_cannot_come_back() {
    let mut room = owned_room();
    let alice = join(&mut room, "alice@localhost/a", "alice", "").await;
    let bob = join(&mut room, "bob@localhost/b", "bob", "").await;
    received(&alice);
    received(&bob);
    let ban = admin_item("affiliation='outcast' jid='bob@localhost'");
    assert_eq!(
        condition(room.admin_set(&full("alice@localhost/a"), &ban).await),
        "ok"
    );
    assert_eq!(room.occupants.len(), 1);
    let told = received(&bob);
    let own = told
        .iter()
        .find(|p| p.attr("type") == Some("unavailable"))
        .expect("bob is told he left");
    let codes = status_codes(own);
    assert!(codes.contains(&"301".to_string()), "{codes:?}");
    assert!(codes.contains(&"110".to_string()), "{codes:?}");
    assert_eq!(
        muc_item(own).and_then(|i| i.attr("affiliation")),
        Some("outcast")
    );
    // Back again: refused, and the room does not grow.
    send_join(&mut room, "bob@localhost/b", "bob", "").await;
    let refusal = received(&bob);
    assert!(
        refusal.iter().any(|p| p.attr("type") == Some("error")
            && p.get_child("error", ns::CLIENT)
                .is_some_and(|e| e.get_child("forbidden", ns::STANZAS_ERROR).is_some())),
        "{refusal:?}"
    );
    assert_eq!(room.occupants.len(), 1);
}

#[tokio::test]
async fn a_participant_cannot_kick_a_moderator() {
    let mut room = owned_room();
    join(&mut room, "alice@localhost/a", "alice", "").await;
    join(&mut room, "bob@localhost/b", "bob", "").await;
    let kick = admin_item("role='none' nick='alice'");
    assert_eq!(
        condition(room.admin_set(&full("bob@localhost/b"), &kick).await),
        "forbidden"
    );
    assert_eq!(room.occupants.len(), 2);
}

// ----- Who sees real JIDs (§7.2.3, §7.2.4) -----

#[tokio::test]
async fn real_jids_go_to_moderators_only_unless_the_room_is_non_anonymous() {
    let mut room = owned_room();
    let alice = join(&mut room, "alice@localhost/a", "alice", "").await;
    let bob = join(&mut room, "bob@localhost/b", "bob", "").await;
    received(&alice);
    received(&bob);
    join(&mut room, "carol@localhost/c", "carol", "").await;
    let jid_of_carol = |seen: Vec<Element>| {
        seen.iter()
            .find(|p| p.attr("from") == Some(&format!("{ROOM}/carol")))
            .and_then(muc_item)
            .and_then(|i| i.attr("jid").map(str::to_string))
    };
    assert_eq!(
        jid_of_carol(received(&alice)).as_deref(),
        Some("carol@localhost/c"),
        "the owner is a moderator and sees real JIDs"
    );
    assert_eq!(jid_of_carol(received(&bob)), None, "a participant must not");
    let participant = &room.occupants[1];
    assert!(!room.may_see_real_jids(participant));
    room.record.config.whois_anyone = true;
    assert!(room.may_see_real_jids(&room.occupants[1]));
}

// ----- Configuration (§10.2) -----

#[tokio::test]
async fn the_configuration_form_round_trips_and_only_owners_see_it() {
    let mut room = owned_room();
    let alice = full("alice@localhost/a");
    assert_eq!(
        condition(room.owner_get(&full("bob@localhost/b"))),
        "forbidden"
    );
    let query = room.owner_get(&alice).unwrap().expect("a form");
    let mut form = query
        .get_child("x", ns::DATA_FORMS)
        .expect("a data form")
        .clone();
    let before = room.record.config.clone();
    // The form as given, submitted unchanged, leaves the configuration as it was.
    crate::stanza::set_attr(&mut form, "type", "submit".to_string());
    let submit = |form: &Element| {
        Build::new("query", ns::MUC_OWNER)
            .child(form.clone())
            .build()
    };
    assert_eq!(
        condition(room.owner_set(&alice, &submit(&form)).await),
        "ok"
    );
    assert_eq!(room.record.config, before);
    // A changed field comes back changed.
    for field in form.children_mut() {
        if field.attr("var") == Some("muc#roomconfig_roomname") {
            let value = Build::new("value", ns::DATA_FORMS).text("Tea room").build();
            field.remove_child("value", ns::DATA_FORMS);
            field.append_child(value);
        }
    }
    assert_eq!(
        condition(room.owner_set(&alice, &submit(&form)).await),
        "ok"
    );
    assert_eq!(room.record.config.name, "Tea room");
    let again = room.owner_get(&alice).unwrap().expect("a form");
    assert!(
        String::from(&again).contains("Tea room"),
        "the new name is in the form"
    );
    assert_eq!(
        condition(
            room.owner_set(&full("bob@localhost/b"), &submit(&form))
                .await
        ),
        "forbidden"
    );
}

// ----- History on join (§7.2.15) -----

fn remember(room: &mut Room, text: &str, at: i64) {
    let stanza = xml(&format!(
        "<message xmlns='jabber:client' type='groupchat' from='{ROOM}/alice'>\
         <body>{text}</body></message>"
    ));
    room.history.push_back(HistoryEntry {
        chars: 100,
        template: crate::router::AddressedTemplate::new(&stanza),
        stanza_id: format!("id-{text}"),
        at,
        commit: None,
    });
}

fn bodies(seen: &[Element]) -> Vec<String> {
    seen.iter()
        .filter(|m| m.get_child("delay", ns::DELAY).is_some())
        .filter_map(|m| m.get_child("body", ns::CLIENT).map(|b| b.text()))
        .collect()
}

#[tokio::test]
async fn history_is_limited_by_the_room_and_by_the_request() {
    let now = crate::stanza::now_unix();
    let mut room = owned_room();
    for (i, age) in [4000, 3000, 200, 100, 10].iter().enumerate() {
        remember(&mut room, &format!("m{i}"), now - age);
    }
    let all = join(&mut room, "a@localhost/1", "a", "").await;
    assert_eq!(bodies(&received(&all)), ["m0", "m1", "m2", "m3", "m4"]);
    let two = join(&mut room, "b@localhost/1", "b", "<history maxstanzas='2'/>").await;
    assert_eq!(bodies(&received(&two)), ["m3", "m4"]);
    let chars = join(&mut room, "c@localhost/1", "c", "<history maxchars='250'/>").await;
    assert_eq!(bodies(&received(&chars)), ["m3", "m4"]);
    let none = join(&mut room, "d@localhost/1", "d", "<history maxchars='0'/>").await;
    assert!(bodies(&received(&none)).is_empty());
    let recent = join(&mut room, "e@localhost/1", "e", "<history seconds='500'/>").await;
    assert_eq!(bodies(&received(&recent)), ["m2", "m3", "m4"]);
    room.record.config.history_length = 1;
    let short = join(&mut room, "f@localhost/1", "f", "").await;
    assert_eq!(bodies(&received(&short)), ["m4"]);
}

#[tokio::test]
async fn a_shorter_history_set_by_the_owner_keeps_the_newest_messages() {
    let now = crate::stanza::now_unix();
    let mut room = owned_room();
    for i in 0..5 {
        remember(&mut room, &format!("m{i}"), now - 10);
    }
    let alice = full("alice@localhost/a");
    let query = room.owner_get(&alice).unwrap().expect("a form");
    let mut form = query
        .get_child("x", ns::DATA_FORMS)
        .expect("a data form")
        .clone();
    crate::stanza::set_attr(&mut form, "type", "submit".to_string());
    for field in form.children_mut() {
        if field.attr("var") == Some("muc#roomconfig_historylength") {
            field.remove_child("value", ns::DATA_FORMS);
            field.append_child(Build::new("value", ns::DATA_FORMS).text("2").build());
        }
    }
    let submit = Build::new("query", ns::MUC_OWNER).child(form).build();
    assert_eq!(condition(room.owner_set(&alice, &submit).await), "ok");
    assert_eq!(room.record.config.history_length, 2);
    let newcomer = join(&mut room, "z@localhost/1", "z", "").await;
    assert_eq!(bodies(&received(&newcomer)), ["m3", "m4"]);
}

// ----- Stanza ids (XEP-0359) and retraction (XEP-0425) -----

#[tokio::test]
async fn only_the_room_gives_stanza_ids_and_occupant_ids() {
    let room = owned_room();
    let own = xml(&format!("<stanza-id xmlns='{NS_SID}' id='x' by='{ROOM}'/>"));
    let elsewhere = xml(&format!(
        "<stanza-id xmlns='{NS_SID}' id='x' by='alice@localhost'/>"
    ));
    let occupant_id = xml(&format!("<occupant-id xmlns='{NS_OCCUPANT_ID}' id='x'/>"));
    assert!(room.is_forged(&own));
    assert!(!room.is_forged(&elsewhere));
    assert!(room.is_forged(&occupant_id));
    assert!(!room.is_forged(&xml("<body xmlns='jabber:client'>hi</body>")));
}

#[test]
fn a_tombstone_keeps_the_envelope_and_ids_but_not_the_content() {
    let stored = format!(
        "<message xmlns='jabber:client' type='groupchat' from='{ROOM}/bob' id='m1'>\
         <body>something regrettable</body>\
         <occupant-id xmlns='{NS_OCCUPANT_ID}' id='oid'/>\
         <stanza-id xmlns='{NS_SID}' id='sid' by='{ROOM}'/></message>"
    );
    let retracted = Element::bare("retracted", ns::RETRACT);
    let tombstone = super::messages::tombstone(&stored, retracted).expect("a tombstone");
    let kept = salon_xml::parse_stored(&tombstone, ns::CLIENT).unwrap();
    assert_eq!(kept.attr("from"), Some(&*format!("{ROOM}/bob")));
    assert_eq!(kept.attr("id"), Some("m1"));
    assert_eq!(kept.attr("type"), Some("groupchat"));
    assert!(kept.get_child("body", ns::CLIENT).is_none(), "{tombstone}");
    assert!(!tombstone.contains("regrettable"), "{tombstone}");
    assert!(kept.get_child("occupant-id", ns::OCCUPANT_ID).is_some());
    assert!(kept.get_child("stanza-id", ns::SID).is_some());
    assert!(kept.get_child("retracted", ns::RETRACT).is_some());
    assert_eq!(
        super::messages::tombstone("<message", Element::bare("r", "x")),
        None
    );
}

/// A groupchat message from `jid`, with an optional body and `extra` children.
async fn say(room: &mut Room, jid: &str, body: Option<&str>, extra: &str) {
    let body = body
        .map(|b| format!("<body>{b}</body>"))
        .unwrap_or_default();
    room.on_message(xml(&format!(
        "<message xmlns='jabber:client' type='groupchat' from='{jid}' to='{ROOM}'>\
         {body}{extra}</message>"
    )))
    .await;
    // Copies wait in the queues until the archive write commits.
    room.archive.flush().await;
}

#[tokio::test]
async fn a_message_the_room_does_not_store_carries_no_stanza_id() {
    let mut room = owned_room();
    join(&mut room, "alice@localhost/a", "alice", "").await;
    let bob = join(&mut room, "bob@localhost/b", "bob", "").await;
    received(&bob);
    let composing = "<composing xmlns='http://jabber.org/protocol/chatstates'/>\
                     <no-store xmlns='urn:xmpp:hints'/>";
    say(&mut room, "alice@localhost/a", None, composing).await;
    say(&mut room, "alice@localhost/a", Some("hello"), "").await;
    let seen = received(&bob);
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(
        seen[0].get_child("stanza-id", ns::SID).is_none(),
        "a chat state is not archived, so it has no stanza-id: {seen:?}"
    );
    assert!(seen[0].get_child("occupant-id", ns::OCCUPANT_ID).is_some());
    let stanza_id = seen[1]
        .get_child("stanza-id", ns::SID)
        .expect("a stored message has a stanza-id");
    assert_eq!(stanza_id.attr("by"), Some(ROOM));
    assert_eq!(
        room.history.len(),
        1,
        "only the message with a body is kept"
    );
}

mod attacks;
mod bans;
mod visitor;
