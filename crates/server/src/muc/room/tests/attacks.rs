//! The attacks of the hardening issue against one room, without sockets: each test does what
//! the attacker did and checks that the room holds.

use super::*;

fn is_error(stanza: &Element, condition: &str) -> bool {
    stanza.attr("type") == Some("error")
        && stanza
            .get_child("error", ns::CLIENT)
            .is_some_and(|e| e.get_child(condition, ns::STANZAS_ERROR).is_some())
}

/// Item 5: the owner's only session waits for resumption; a newcomer from the same address
/// asks for the owner's nick. It gets a conflict: no take-over, no affiliation, no acting as
/// the owner.
#[tokio::test]
async fn a_newcomer_from_the_same_address_cannot_take_a_waiting_owner_over() {
    let mut room = owned_room();
    let alice = join(&mut room, "alice@localhost/phone", "Alice", "").await;
    received(&alice);
    alice.set_detached(true);

    let mallory = join(&mut room, "mallory@localhost/m", "Alice", "").await;
    let refusal = received(&mallory);
    assert!(
        refusal.iter().any(|p| is_error(p, "conflict")),
        "{refusal:?}"
    );
    assert_eq!(room.occupants.len(), 1);
    assert_eq!(room.occupants[0].real.as_str(), "alice@localhost");
    assert_eq!(
        room.occupants[0].sessions,
        vec![full("alice@localhost/phone")]
    );
    assert_eq!(
        room.affiliation(&jid::BareJid::new("mallory@localhost").unwrap()),
        Affiliation::None
    );
    assert_eq!(
        room.affiliation(&jid::BareJid::new("alice@localhost").unwrap()),
        Affiliation::Owner
    );
    // Not an occupant, so it cannot ban the owner either.
    let ban = admin_item("affiliation='outcast' jid='alice@localhost'");
    assert_eq!(
        condition(room.admin_set(&full("mallory@localhost/m"), &ban).await),
        "forbidden"
    );
    assert_eq!(
        room.affiliation(&jid::BareJid::new("alice@localhost").unwrap()),
        Affiliation::Owner
    );
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    assert!(
        alice.poll_kicked(&mut cx).is_pending(),
        "the waiting session is not kicked"
    );
}

/// The same account coming back on a new session (no resumption) shares its occupant.
#[tokio::test]
async fn the_same_account_gets_its_nick_back_on_a_new_session() {
    let mut room = owned_room();
    let phone = join(&mut room, "alice@localhost/phone", "Alice", "").await;
    received(&phone);
    phone.set_detached(true);
    let laptop = join(&mut room, "alice@localhost/laptop", "Alice", "").await;
    let seen = received(&laptop);
    assert!(
        !seen.iter().any(|p| p.attr("type") == Some("error")),
        "{seen:?}"
    );
    assert_eq!(room.occupants.len(), 1);
    assert!(room.occupants[0]
        .sessions
        .contains(&full("alice@localhost/laptop")));
}

/// The ids in the room's archive, oldest first.
async fn archived_ids(room: &Room) -> Vec<String> {
    let query = crate::storage::ArchiveQuery {
        limit: 100,
        ..crate::storage::ArchiveQuery::default()
    };
    let store = room.context.archive_store();
    let page = store.archive_query(ROOM, &query).await.expect("query");
    page.messages.into_iter().map(|m| m.id).collect()
}

/// Put a message archived at `timestamp` (µs) straight into the room's archive.
async fn archive_at(room: &Room, id: &str, timestamp: i64) {
    let message = crate::storage::ArchivedMessage {
        id: id.into(),
        timestamp,
        with: format!("{ROOM}/someone"),
        stanza: "<message/>".into(),
    };
    room.context
        .archive_store()
        .archive_append(ROOM, &message)
        .await
        .expect("append");
}

const HOUR_MICROS: i64 = 3_600_000_000;

/// Item 7: the archive of a room a guest created keeps messages for
/// `muc.guest_room_archive_retention_hours` (24 by default); other rooms keep them.
#[tokio::test]
async fn a_guest_rooms_archive_forgets_messages_past_the_guest_retention() {
    let now = chrono::Utc::now().timestamp_micros();
    for guest_room in [true, false] {
        let mut room = owned_room();
        room.record.created_by_guest = guest_room;
        for (id, age) in [("old", 25 * HOUR_MICROS), ("new", HOUR_MICROS)] {
            archive_at(&room, id, now - age).await;
        }
        room.bound_archive().await;
        let expected: &[&str] = if guest_room {
            &["new"]
        } else {
            &["old", "new"]
        };
        assert_eq!(
            archived_ids(&room).await,
            expected,
            "guest room: {guest_room}"
        );
    }
}

/// The trims a busy guest room makes as it archives (every hundred messages) apply the
/// guests' retention at most once a [`super::super::archive_bounds::AGE_TRIM_EVERY`]: the first
/// does, one within that time does not, one after it does again.
#[tokio::test]
async fn a_busy_guest_rooms_trims_apply_the_retention_once_a_minute() {
    use super::super::archive_bounds::AGE_TRIM_EVERY;
    let expired = chrono::Utc::now().timestamp_micros() - 25 * HOUR_MICROS;
    let mut room = owned_room();
    room.record.created_by_guest = true;
    // A hundred messages archived: one trim.
    async fn hundred(room: &mut Room) {
        for _ in 0..100 {
            room.archived_one(10).await;
        }
    }
    archive_at(&room, "first", expired).await;
    hundred(&mut room).await;
    assert!(
        archived_ids(&room).await.is_empty(),
        "the first trim applies the retention"
    );
    archive_at(&room, "second", expired).await;
    hundred(&mut room).await;
    assert_eq!(
        archived_ids(&room).await,
        ["second"],
        "not again within the minute"
    );
    room.last_age_trim = room.last_age_trim.map(|at| at - AGE_TRIM_EVERY);
    hundred(&mut room).await;
    assert!(
        archived_ids(&room).await.is_empty(),
        "again once the minute is over"
    );
}

/// Bodies of the groupchat messages `handle` received, and the conditions of errors.
fn said_and_refused(handle: &SessionHandle) -> (Vec<String>, Vec<String>) {
    let mut said = Vec::new();
    let mut refused = Vec::new();
    for stanza in received(handle) {
        if stanza.attr("type") == Some("error") {
            let error = stanza.get_child("error", ns::CLIENT);
            let kind = error.and_then(|e| e.attr("type")).unwrap_or_default();
            let condition = error
                .and_then(|e| e.children().find(|c| c.ns() == ns::STANZAS_ERROR))
                .map(|c| c.name().to_string())
                .unwrap_or_default();
            refused.push(format!("{kind}/{condition}"));
        } else if let Some(body) = stanza.get_child("body", ns::CLIENT) {
            said.push(body.text());
        }
    }
    (said, refused)
}

/// Item 9: XEP-0500 slow mode. A guest waits `muc.guest_slow_mode_seconds` (1 here; off by
/// default) between two
/// messages; the owner's `slow_mode_duration` holds everyone but admins and owners; a message
/// sent too soon is refused (`wait`/`policy-violation`) and reaches nobody.
#[tokio::test]
async fn slow_mode_refuses_a_second_message_sent_too_soon() {
    let mut settings = crate::config::MucConfig::new("rooms.localhost");
    settings.guest_slow_mode_seconds = 1;
    let mut record = RoomRecord::default();
    record
        .affiliations
        .insert("alice@localhost".into(), Affiliation::Owner);
    let mut room = room_with_settings(record, settings);
    let alice = join(&mut room, "alice@localhost/a", "alice", "").await;
    let guest = join(&mut room, "0123456789abcdef@anon.localhost/g", "guest", "").await;
    let bob = join(&mut room, "bob@localhost/b", "bob", "").await;
    for handle in [&alice, &guest, &bob] {
        received(handle);
    }
    // A guest flooding: only the first goes out.
    for n in 0..5 {
        say(
            &mut room,
            "0123456789abcdef@anon.localhost/g",
            Some(&format!("g{n}")),
            "",
        )
        .await;
    }
    let (said, refused) = said_and_refused(&guest);
    assert_eq!(said, ["g0"]);
    assert_eq!(refused, ["wait/policy-violation"; 4]);
    assert_eq!(said_and_refused(&alice).0, ["g0"]);
    received(&bob);
    // An account is not limited by default; chat states (no body) never are.
    for n in 0..3 {
        say(&mut room, "bob@localhost/b", Some(&format!("b{n}")), "").await;
    }
    assert_eq!(said_and_refused(&bob).0, ["b0", "b1", "b2"]);
    // The owner turns slow mode on: bob is held, the owner is not.
    room.record.config.slow_mode_duration = 30;
    say(&mut room, "bob@localhost/b", Some("b3"), "").await;
    say(
        &mut room,
        "bob@localhost/b",
        None,
        "<active xmlns='http://jabber.org/protocol/chatstates'/>",
    )
    .await;
    let (said, refused) = said_and_refused(&bob);
    assert!(said.is_empty(), "{said:?}");
    assert_eq!(refused, ["wait/policy-violation"]);
    received(&alice);
    say(&mut room, "alice@localhost/a", Some("a0"), "").await;
    say(&mut room, "alice@localhost/a", Some("a1"), "").await;
    assert_eq!(said_and_refused(&alice).0, ["a0", "a1"]);
}

/// Item 9: banning a guest bans its address in the room: a new guest login from there is
/// refused, a guest from elsewhere and an account from the same address are not, and lifting
/// the guest's ban (its outcast entry) lifts the address too.
#[tokio::test]
async fn banning_a_guest_bans_its_address_until_lifted() {
    let mut room = owned_room();
    let alice = join(&mut room, "alice@localhost/a", "alice", "").await;
    join(&mut room, "1111111111111111@anon.localhost/g", "troll", "").await;
    received(&alice);
    let ban = admin_item("affiliation='outcast' jid='1111111111111111@anon.localhost'");
    assert_eq!(
        condition(room.admin_set(&full("alice@localhost/a"), &ban).await),
        "ok"
    );
    // The same troll logs in again as a new guest, from the same address.
    let again = join(&mut room, "2222222222222222@anon.localhost/g", "troll2", "").await;
    assert!(
        received(&again).iter().any(|p| is_error(p, "forbidden")),
        "a new guest from the banned address got in"
    );
    // A guest from another address, and an account behind the same address, get in.
    let elsewhere = SessionHandle::new(
        full("3333333333333333@anon.localhost/g"),
        false,
        1000,
        [192, 0, 2, 9].into(),
    );
    room.context.bind_session(elsewhere.clone());
    send_join(
        &mut room,
        "3333333333333333@anon.localhost/g",
        "visitor",
        "",
    )
    .await;
    let bob = join(&mut room, "bob@localhost/b", "bob", "").await;
    assert!(!received(&elsewhere)
        .iter()
        .any(|p| p.attr("type") == Some("error")));
    assert!(!received(&bob)
        .iter()
        .any(|p| p.attr("type") == Some("error")));
    assert_eq!(room.occupants.len(), 3);
    // Listed under the guest's JID; lifting it lifts the address.
    let outcasts = room
        .admin_get(
            &full("alice@localhost/a"),
            &admin_item("affiliation='outcast'"),
        )
        .expect("the outcast list")
        .expect("a query");
    assert!(outcasts
        .children()
        .any(|i| i.attr("jid") == Some("1111111111111111@anon.localhost")));
    let lift = admin_item("affiliation='none' jid='1111111111111111@anon.localhost'");
    assert_eq!(
        condition(room.admin_set(&full("alice@localhost/a"), &lift).await),
        "ok"
    );
    send_join(&mut room, "2222222222222222@anon.localhost/g", "troll2", "").await;
    assert!(!received(&again)
        .iter()
        .any(|p| p.attr("type") == Some("error")));
    assert_eq!(room.occupants.len(), 4);
}

/// Item 7: a room's archive keeps at most `muc.max_archive_bytes` of stanzas: large messages
/// push the oldest out, whatever the message count allows.
#[tokio::test]
async fn a_rooms_archive_keeps_at_most_its_byte_cap_oldest_first() {
    use crate::storage::ArchiveQuery;
    let mut settings = crate::config::MucConfig::new("rooms.localhost");
    settings.max_archive_bytes = 10_000;
    let mut record = RoomRecord::default();
    record
        .affiliations
        .insert("alice@localhost".into(), Affiliation::Owner);
    let mut room = room_with_settings(record, settings);
    join(&mut room, "alice@localhost/a", "alice", "").await;
    for n in 0..40 {
        let body = format!("{n:02}{}", "x".repeat(1_000));
        say(&mut room, "alice@localhost/a", Some(&body), "").await;
    }
    // No explicit trim: the room trims as it archives (a tenth of the cap at most between).
    let query = ArchiveQuery {
        limit: 100,
        ..ArchiveQuery::default()
    };
    let page = room
        .context
        .archive_store()
        .archive_query(ROOM, &query)
        .await
        .expect("query");
    let bytes: usize = page.messages.iter().map(|m| m.stanza.len()).sum();
    assert!(bytes <= 10_000, "{bytes} bytes kept");
    assert!(bytes > 7_000, "only {bytes} bytes kept");
    let kept: Vec<String> = page
        .messages
        .iter()
        .map(|m| m.stanza.split("<body>").nth(1).unwrap_or_default()[..2].to_string())
        .collect();
    assert_eq!(
        kept.last().map(String::as_str),
        Some("39"),
        "the newest stay"
    );
    assert!(kept.len() < 10, "{kept:?}");
}
