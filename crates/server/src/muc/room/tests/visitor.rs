//! The browser secret of returning guests (`urn:salon:visitor:0`, muc/visitor.rs): issued in a
//! guest's self-presence, banned with the guest, and the only way for a new guest login to take
//! a waiting occupant's place back.

use super::*;

const VISITOR: &str = "urn:salon:visitor:0";
const FIRST: &str = "1111111111111111@anon.localhost/g";
const AGAIN: &str = "2222222222222222@anon.localhost/g";

/// The secret handed to a session in its self-presence (status 110), if any.
fn issued_secret(seen: &[Element]) -> Option<String> {
    seen.iter()
        .filter(|p| status_codes(p).iter().any(|c| c == "110"))
        .find_map(|p| p.get_child("visitor", VISITOR))
        .and_then(|v| v.attr("secret"))
        .map(str::to_string)
}

/// A guest session from `ip`, joining `nick` with an optional secret.
async fn guest_joins(
    room: &mut Room,
    jid: &str,
    ip: [u8; 4],
    nick: &str,
    secret: Option<&str>,
) -> Arc<SessionHandle> {
    let handle = SessionHandle::new(full(jid), false, 1000, ip.into());
    room.context.bind_session(handle.clone());
    let visitor = secret
        .map(|s| format!("<visitor xmlns='{VISITOR}' secret='{s}'/>"))
        .unwrap_or_default();
    room.on_presence(xml(&format!(
        "<presence xmlns='jabber:client' from='{jid}' to='{ROOM}/{nick}'>\
         <x xmlns='http://jabber.org/protocol/muc'/>{visitor}</presence>"
    )))
    .await;
    handle
}

fn refused_with(seen: &[Element], condition: &str) -> bool {
    seen.iter().any(|p| {
        p.attr("type") == Some("error")
            && p.get_child("error", ns::CLIENT)
                .is_some_and(|e| e.get_child(condition, ns::STANZAS_ERROR).is_some())
    })
}

/// A guest without a secret gets one in its self-presence, nobody else sees it, and it
/// verifies; an account gets none; a guest that offers a valid one gets no new one.
#[tokio::test]
async fn a_guest_gets_a_browser_secret_with_its_self_presence_only() {
    let mut room = owned_room();
    let alice = join(&mut room, "alice@localhost/a", "alice", "").await;
    assert_eq!(issued_secret(&received(&alice)), None, "accounts get none");
    let guest = guest_joins(&mut room, FIRST, [127, 0, 0, 1], "guest", None).await;
    let secret = issued_secret(&received(&guest)).expect("a secret for the guest");
    assert!(room.service.visitors.verify(&secret).is_some());
    let others_saw = received(&alice);
    assert!(!others_saw.is_empty());
    assert!(others_saw
        .iter()
        .all(|p| p.get_child("visitor", VISITOR).is_none()));
    // A presence update carrying it does not pass it on either.
    room.on_presence(xml(&format!(
        "<presence xmlns='jabber:client' from='{FIRST}' to='{ROOM}/guest'>\
         <show>away</show><visitor xmlns='{VISITOR}' secret='{secret}'/></presence>"
    )))
    .await;
    assert!(received(&alice)
        .iter()
        .all(|p| p.get_child("visitor", VISITOR).is_none()));
    let again = guest_joins(&mut room, AGAIN, [127, 0, 0, 1], "other", Some(&secret)).await;
    assert_eq!(issued_secret(&received(&again)), None);
    // A forged secret counts as none: a new one is issued.
    let forged = format!("{}x", &secret[..secret.len() - 1]);
    let third = guest_joins(
        &mut room,
        "3333333333333333@anon.localhost/g",
        [127, 0, 0, 1],
        "third",
        Some(&forged),
    )
    .await;
    let fresh = issued_secret(&received(&third)).expect("a new secret");
    assert_ne!(fresh, secret);
}

/// A guest session that joins again (another room, or this one after leaving) before it
/// offers its secret gets the same one: a page joining several rooms at once keeps one id.
#[tokio::test]
async fn one_guest_session_gets_one_browser_secret() {
    let mut room = owned_room();
    let guest = guest_joins(&mut room, FIRST, [127, 0, 0, 1], "guest", None).await;
    let first = issued_secret(&received(&guest)).expect("a secret");
    room.on_presence(xml(&format!(
        "<presence xmlns='jabber:client' type='unavailable' from='{FIRST}' to='{ROOM}/guest'/>"
    )))
    .await;
    assert!(room.occupants.is_empty());
    room.on_presence(xml(&format!(
        "<presence xmlns='jabber:client' from='{FIRST}' to='{ROOM}/guest'>\
         <x xmlns='http://jabber.org/protocol/muc'/></presence>"
    )))
    .await;
    assert_eq!(issued_secret(&received(&guest)), Some(first));
}

/// Banning a guest bans its browser in the room: the same browser is refused from another
/// address; another browser from there gets in; lifting the ban lifts the browser too.
#[tokio::test]
async fn banning_a_guest_bans_its_browser_until_lifted() {
    let mut room = owned_room();
    let alice = join(&mut room, "alice@localhost/a", "alice", "").await;
    let troll = guest_joins(&mut room, FIRST, [127, 0, 0, 1], "troll", None).await;
    let secret = issued_secret(&received(&troll)).expect("a secret");
    received(&alice);
    let ban = admin_item("affiliation='outcast' jid='1111111111111111@anon.localhost'");
    assert_eq!(
        condition(room.admin_set(&full("alice@localhost/a"), &ban).await),
        "ok"
    );
    let outcasts = room
        .admin_get(
            &full("alice@localhost/a"),
            &admin_item("affiliation='outcast'"),
        )
        .expect("the list")
        .expect("a query");
    let details = outcasts
        .children()
        .find_map(|i| i.get_child("ban", "urn:salon:ban:0"))
        .expect("the ban's details");
    assert_eq!(details.attr("browser"), Some("true"));
    // The same browser, as a new guest from another network.
    let back = guest_joins(&mut room, AGAIN, [192, 0, 2, 1], "troll2", Some(&secret)).await;
    assert!(refused_with(&received(&back), "forbidden"));
    // Another browser from that network gets in.
    let other = guest_joins(
        &mut room,
        "3333333333333333@anon.localhost/g",
        [192, 0, 2, 1],
        "visitor",
        None,
    )
    .await;
    assert!(!refused_with(&received(&other), "forbidden"));
    let lift = admin_item("affiliation='none' jid='1111111111111111@anon.localhost'");
    assert_eq!(
        condition(room.admin_set(&full("alice@localhost/a"), &lift).await),
        "ok"
    );
    let back = guest_joins(&mut room, AGAIN, [192, 0, 2, 1], "troll2", Some(&secret)).await;
    assert!(!refused_with(&received(&back), "forbidden"));
}

/// A guest owner's page reloads without resuming: its only session waits for resumption.
/// A new guest login from another browser (or with no secret, or a forged one) asking for the
/// nick gets `<conflict/>`; the same browser's secret takes the place back, with the nick,
/// the affiliation and the occupant id; the waiting session is told it is out.
#[tokio::test]
async fn the_same_browser_takes_a_waiting_guests_place_back() {
    let mut record = RoomRecord::default();
    record
        .affiliations
        .insert("1111111111111111@anon.localhost".into(), Affiliation::Owner);
    let mut room = room_with(record);
    let bob = join(&mut room, "bob@localhost/b", "bob", "").await;
    let first = guest_joins(&mut room, FIRST, [127, 0, 0, 1], "Host", None).await;
    let secret = issued_secret(&received(&first)).expect("a secret");
    let occupant_id = room.occupants[1].occupant_id.clone();
    received(&bob);

    // While the session is live, not even the same browser takes it over.
    let early = guest_joins(&mut room, AGAIN, [127, 0, 0, 1], "Host", Some(&secret)).await;
    assert!(refused_with(&received(&early), "conflict"));
    first.set_detached(true);
    let (_, other_secret) = room.service.visitors.issue();
    let forged = format!("{}x", &secret[..secret.len() - 1]);
    for (n, offered) in [None, Some(other_secret.as_str()), Some(forged.as_str())]
        .into_iter()
        .enumerate()
    {
        let jid = format!("444444444444444{n}@anon.localhost/g");
        let stranger = guest_joins(&mut room, &jid, [127, 0, 0, 1], "Host", offered).await;
        assert!(
            refused_with(&received(&stranger), "conflict"),
            "{offered:?}"
        );
    }
    assert_eq!(
        room.occupants[1].real.as_str(),
        "1111111111111111@anon.localhost"
    );

    let back = guest_joins(&mut room, AGAIN, [127, 0, 0, 1], "Host", Some(&secret)).await;
    let seen = received(&back);
    assert!(
        !seen.iter().any(|p| p.attr("type") == Some("error")),
        "{seen:?}"
    );
    let own = seen
        .iter()
        .find(|p| status_codes(p).iter().any(|c| c == "110"))
        .expect("a self-presence");
    assert_eq!(own.attr("from"), Some(&*format!("{ROOM}/Host")));
    assert_eq!(
        muc_item(own).and_then(|i| i.attr("affiliation")),
        Some("owner")
    );
    assert_eq!(room.occupants.len(), 2);
    assert_eq!(room.occupants[1].sessions, vec![full(AGAIN)]);
    assert_eq!(room.occupants[1].occupant_id, occupant_id);
    let again = jid::BareJid::new("2222222222222222@anon.localhost").unwrap();
    assert_eq!(room.affiliation(&again), Affiliation::Owner);
    let before = jid::BareJid::new("1111111111111111@anon.localhost").unwrap();
    assert_eq!(room.affiliation(&before), Affiliation::None);
    // The waiting session was told it is out; bob saw no one leave.
    assert!(received(&first)
        .iter()
        .any(|p| p.attr("type") == Some("unavailable")));
    assert!(!received(&bob)
        .iter()
        .any(|p| p.attr("type") == Some("unavailable")));
}
