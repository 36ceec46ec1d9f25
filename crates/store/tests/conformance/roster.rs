//! Rosters (RFC 6121 §2): items, subscription states, pending and pre-approved flags, groups.

use salon_server::storage::prelude::*;
use salon_server::storage::{RosterItem, Subscription};

use crate::fixtures::*;

pub(crate) async fn roster(s: &dyn Storage) {
    assert!(s.roster("alice", A).await.expect("roster").is_empty());
    assert_eq!(s.roster_item("alice", A, "x@y").await.expect("item"), None);

    let romeo = RosterItem {
        jid: "romeo@montague.example".to_owned(),
        name: Some("Romeo".to_owned()),
        subscription: Subscription::Both,
        ask_out: false,
        pending_in: false,
        approved: false,
        // Kept in the order given.
        groups: vec![
            "Friends".to_owned(),
            "Family".to_owned(),
            "Ämter".to_owned(),
        ],
    };
    let nurse = RosterItem {
        jid: "nurse@capulet.example".to_owned(),
        name: None,
        subscription: Subscription::None,
        ask_out: true,
        pending_in: true,
        approved: false,
        groups: Vec::new(),
    };
    let benvolio = RosterItem {
        jid: "benvolio@montague.example".to_owned(),
        name: Some(String::new()),
        subscription: Subscription::To,
        ask_out: false,
        pending_in: false,
        // Pre-approved (RFC 6121 §3.4).
        approved: true,
        groups: vec!["Friends".to_owned()],
    };
    for it in [&romeo, &nurse, &benvolio] {
        s.put_roster_item("alice", A, it).await.expect("put");
    }
    // Another user's roster with an item for the same contact stays separate.
    let bobs_romeo = RosterItem {
        subscription: Subscription::To,
        groups: vec!["Other".to_owned()],
        ..item("romeo@montague.example")
    };
    s.put_roster_item("bob", A, &bobs_romeo).await.expect("put");

    assert_eq!(
        s.roster("alice", A).await.expect("roster"),
        [benvolio.clone(), nurse.clone(), romeo.clone()],
        "sorted by contact JID, every field intact"
    );
    assert_eq!(
        s.roster_item("alice", A, &romeo.jid).await.expect("item"),
        Some(romeo.clone())
    );
    assert_eq!(
        s.roster_item("alice", A, &nurse.jid).await.expect("item"),
        Some(nurse.clone())
    );
    assert_eq!(
        s.roster_item("bob", A, &romeo.jid).await.expect("item"),
        Some(bobs_romeo.clone())
    );
    assert_eq!(
        s.roster("bob", A).await.expect("roster"),
        std::slice::from_ref(&bobs_romeo)
    );
    assert!(s.roster("alice", B).await.expect("roster").is_empty());

    // Replacing overwrites every field, including dropping groups and the name.
    let romeo2 = RosterItem {
        jid: romeo.jid.clone(),
        name: None,
        subscription: Subscription::To,
        ask_out: true,
        pending_in: false,
        approved: true,
        groups: vec!["Family".to_owned()],
    };
    s.put_roster_item("alice", A, &romeo2)
        .await
        .expect("replace");
    assert_eq!(
        s.roster_item("alice", A, &romeo.jid).await.expect("item"),
        Some(romeo2.clone())
    );
    let nurse2 = RosterItem {
        name: Some("Nurse".to_owned()),
        subscription: Subscription::Both,
        ask_out: false,
        pending_in: false,
        groups: vec!["B".to_owned(), "A".to_owned()],
        ..nurse.clone()
    };
    s.put_roster_item("alice", A, &nurse2)
        .await
        .expect("replace");
    assert_eq!(
        s.roster("alice", A).await.expect("roster"),
        [benvolio.clone(), nurse2.clone(), romeo2.clone()]
    );
    assert_eq!(
        s.roster_item("bob", A, &romeo.jid).await.expect("item"),
        Some(bobs_romeo.clone()),
        "replacing alice's item left bob's alone"
    );

    // "remove" is only for pushes and is never stored.
    let removed = RosterItem {
        subscription: Subscription::Remove,
        ..romeo.clone()
    };
    assert!(s.put_roster_item("alice", A, &removed).await.is_err());
    assert_eq!(
        s.roster_item("alice", A, &romeo.jid).await.expect("item"),
        Some(romeo2.clone())
    );

    // Reading the roster of an address without an account gives nothing.
    assert!(s.roster("carol", A).await.expect("roster").is_empty());

    s.remove_roster_item("alice", A, &nurse.jid)
        .await
        .expect("remove");
    assert_eq!(
        s.roster_item("alice", A, &nurse.jid).await.expect("item"),
        None
    );
    assert_eq!(
        s.roster("alice", A).await.expect("roster"),
        [benvolio.clone(), romeo2.clone()]
    );
    // Removing what is not there is not an error.
    s.remove_roster_item("alice", A, &nurse.jid)
        .await
        .expect("remove again");
    s.remove_roster_item("carol", A, &nurse.jid)
        .await
        .expect("remove, no account");

    // A removed item put back starts afresh.
    s.put_roster_item("alice", A, &nurse)
        .await
        .expect("put back");
    assert_eq!(
        s.roster_item("alice", A, &nurse.jid).await.expect("item"),
        Some(nurse.clone())
    );
    s.remove_roster_item("alice", A, &nurse.jid)
        .await
        .expect("remove");

    s.remove_roster_item("alice", A, &romeo.jid)
        .await
        .expect("remove");
    s.remove_roster_item("alice", A, &benvolio.jid)
        .await
        .expect("remove");
    assert!(s.roster("alice", A).await.expect("roster").is_empty());
    assert_eq!(s.roster("bob", A).await.expect("roster"), [bobs_romeo]);
}
