//! Bans for a duration the moderator chooses, and what the outcast list (XEP-0045 §9.5) shows
//! of the address and browser banned with a guest.

use super::*;

const OWNER: &str = "alice@localhost/a";
const TROLL: &str = "1111111111111111@anon.localhost";

fn outcasts(room: &Room) -> Vec<Element> {
    room.admin_get(&full(OWNER), &admin_item("affiliation='outcast'"))
        .expect("the outcast list")
        .expect("a query")
        .children()
        .cloned()
        .collect()
}

fn ban_with(extension: &str) -> Element {
    xml(&format!(
        "<query xmlns='{NS_MUC_ADMIN}'><item affiliation='outcast' jid='{TROLL}'>\
         <reason>flooding</reason>{extension}</item></query>"
    ))
}

fn joined_without_error(handle: &SessionHandle) -> bool {
    !received(handle)
        .iter()
        .any(|p| p.attr("type") == Some("error"))
}

/// A moderator bans a guest for an hour (`<ban xmlns='urn:salon:ban:0' duration='3600'/>`):
/// the outcast list shows when it ends and that the guest's address is banned with it; once
/// the hour is over, a new guest from that address gets in and the list no longer shows it.
#[tokio::test]
async fn a_ban_lasts_the_duration_the_moderator_chose() {
    let mut room = owned_room();
    let alice = join(&mut room, OWNER, "alice", "").await;
    join(&mut room, &format!("{TROLL}/g"), "troll", "").await;
    received(&alice);
    let ban = ban_with("<ban xmlns='urn:salon:ban:0' duration='3600'/>");
    assert_eq!(condition(room.admin_set(&full(OWNER), &ban).await), "ok");

    let listed = outcasts(&room);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].attr("jid"), Some(TROLL));
    let details = listed[0]
        .get_child("ban", "urn:salon:ban:0")
        .expect("the ban's details");
    assert_eq!(details.attr("address"), Some("true"));
    let expires = chrono::DateTime::parse_from_rfc3339(details.attr("expires").expect("an end"))
        .expect("an XEP-0082 date");
    let left = expires.timestamp() - chrono::Utc::now().timestamp();
    assert!((3590..=3600).contains(&left), "ends in {left} s");

    let again = join(&mut room, "2222222222222222@anon.localhost/g", "troll2", "").await;
    assert!(!joined_without_error(&again), "held during the hour");

    // The hour is over.
    room.record
        .ban_expires
        .insert(TROLL.into(), chrono::Utc::now().timestamp() - 1);
    assert!(outcasts(&room).is_empty());
    assert_eq!(
        room.affiliation(&jid::BareJid::new(TROLL).unwrap()),
        Affiliation::None
    );
    send_join(&mut room, "2222222222222222@anon.localhost/g", "troll2", "").await;
    assert!(
        joined_without_error(&again),
        "a new guest from the address gets in"
    );
    // The sweep forgets it.
    assert!(room.forget_ended_bans());
    assert!(room.record.banned_addresses.is_empty());
    assert!(!room.record.affiliations.contains_key(TROLL));
}

/// Without a duration in the request, the room's `salon#roomconfig_banduration` applies,
/// else `muc.ban_duration_seconds`, else the ban holds until lifted (XEP-0045). A ban given
/// again without a duration by a room whose default is "until lifted" drops the end.
#[tokio::test]
async fn a_ban_without_a_duration_takes_the_rooms_then_the_services_default() {
    let mut settings = crate::config::MucConfig::new("rooms.localhost");
    settings.ban_duration_seconds = 600;
    let mut record = RoomRecord::default();
    record
        .affiliations
        .insert("alice@localhost".into(), Affiliation::Owner);
    let mut room = room_with_settings(record, settings);
    join(&mut room, OWNER, "alice", "").await;
    let ban = ban_with("");
    let left = |room: &Room| {
        room.record
            .ban_expires
            .get(TROLL)
            .map(|until| until - chrono::Utc::now().timestamp())
    };
    assert_eq!(condition(room.admin_set(&full(OWNER), &ban).await), "ok");
    assert!(
        left(&room).is_some_and(|s| (590..=600).contains(&s)),
        "{:?}",
        left(&room)
    );

    // The owner sets the room's default in the configuration form.
    let form = xml(&format!(
        "<query xmlns='{}'><x xmlns='jabber:x:data' type='submit'>\
         <field var='FORM_TYPE'><value>{}</value></field>\
         <field var='salon#roomconfig_banduration'><value>60</value></field>\
         </x></query>",
        ns::MUC_OWNER,
        ns::ROOMCONFIG
    ));
    assert_eq!(condition(room.owner_set(&full(OWNER), &form).await), "ok");
    assert_eq!(room.record.config.ban_duration, Some(60));
    assert_eq!(condition(room.admin_set(&full(OWNER), &ban).await), "ok");
    assert!(
        left(&room).is_some_and(|s| (50..=60).contains(&s)),
        "{:?}",
        left(&room)
    );

    room.record.config.ban_duration = Some(0);
    assert_eq!(condition(room.admin_set(&full(OWNER), &ban).await), "ok");
    assert_eq!(left(&room), None, "until lifted");
    assert_eq!(outcasts(&room).len(), 1);

    let bad = ban_with("<ban xmlns='urn:salon:ban:0' duration='soon'/>");
    assert_eq!(
        condition(room.admin_set(&full(OWNER), &bad).await),
        "bad-request"
    );
}
