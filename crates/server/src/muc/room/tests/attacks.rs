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
    assert_eq!(room.occupants[0].sessions, vec![full("alice@localhost/phone")]);
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
    assert!(!seen.iter().any(|p| p.attr("type") == Some("error")), "{seen:?}");
    assert_eq!(room.occupants.len(), 1);
    assert!(room.occupants[0]
        .sessions
        .contains(&full("alice@localhost/laptop")));
}

/// Item 7: the archive of a room a guest created keeps messages for
/// `muc.guest_room_archive_retention_hours` (24 by default); other rooms keep them.
#[tokio::test]
async fn a_guest_rooms_archive_forgets_messages_past_the_guest_retention() {
    use crate::storage::{ArchiveQuery, ArchivedMessage};
    let now = chrono::Utc::now().timestamp_micros();
    let hour = 3_600_000_000i64;
    let stored = |room: &Room| {
        let store = room.context.archive_store();
        let jid = room.jid.to_string();
        async move {
            let query = ArchiveQuery {
                limit: 100,
                ..ArchiveQuery::default()
            };
            let page = store.archive_query(&jid, &query).await.expect("query");
            page.messages.into_iter().map(|m| m.id).collect::<Vec<_>>()
        }
    };
    for guest_room in [true, false] {
        let mut room = owned_room();
        room.record.created_by_guest = guest_room;
        for (id, age) in [("old", 25 * hour), ("new", hour)] {
            let message = ArchivedMessage {
                id: id.into(),
                timestamp: now - age,
                with: format!("{ROOM}/someone"),
                stanza: "<message/>".into(),
            };
            room.context
                .archive_store()
                .archive_append(ROOM, &message)
                .await
                .expect("append");
        }
        room.bound_archive().await;
        let expected: &[&str] = if guest_room { &["new"] } else { &["old", "new"] };
        assert_eq!(stored(&room).await, expected, "guest room: {guest_room}");
    }
}
