//! Deleting an account deletes everything stored for it, in every feature, and nothing of
//! anyone else.

use salon_server::storage::prelude::*;
use salon_server::storage::{
    PepItem, PepNode, PepNodeConfig, RosterItem, StorageError, Subscription,
};

use crate::fixtures::*;

pub(crate) async fn delete_cascades(s: &dyn Storage) {
    // Give dave@a one of everything, and alice@a (who keeps hers) the same.
    s.create_account("dave", A, &creds(7))
        .await
        .expect("create");
    for user in ["dave", "alice"] {
        let it = RosterItem {
            subscription: Subscription::Both,
            groups: vec!["G".to_owned()],
            ..item("contact@c.example")
        };
        s.put_roster_item(user, A, &it).await.expect("put");
        s.store_offline(user, A, &offline("<message/>", 1))
            .await
            .expect("store");
        s.set_vcard(user, A, "<vCard xmlns='vcard-temp'/>")
            .await
            .expect("vcard");
        s.set_last_activity(user, A, &last(2, "bye"))
            .await
            .expect("last");
        s.block(user, A, &["eve@b.example".to_owned()])
            .await
            .expect("block");
        s.set_private_xml(user, A, "x:p", "<p xmlns='x:p'/>")
            .await
            .expect("private");
        let node = PepNode {
            name: "x:n".to_owned(),
            config: PepNodeConfig::default(),
        };
        s.put_pep_node(user, A, &node, 1).await.expect("pep node");
        let item = PepItem {
            id: "i".to_owned(),
            published: T0,
            payload: "<n xmlns='x:n'/>".to_owned(),
        };
        s.publish_pep_item(user, A, "x:n", &item, 1)
            .await
            .expect("pep item");
        s.archive_append(
            &format!("{user}@{A}"),
            &archived(1, T0, "contact@c.example", "<message/>"),
        )
        .await
        .expect("archive");
    }
    // An archive named like dave's in a room service, and a room, are not dave's.
    s.archive_append(
        "dave@muc.a.example",
        &archived(1, T0, "contact@c.example", "<message/>"),
    )
    .await
    .expect("archive");

    s.delete_account("dave", A).await.expect("delete");
    assert_eq!(s.credentials("dave", A).await.expect("get"), None);
    assert!(!s
        .list_accounts(None)
        .await
        .expect("list")
        .contains(&"dave@a.example".to_owned()));
    assert!(s.roster("dave", A).await.expect("roster").is_empty());
    assert_eq!(s.count_offline("dave", A).await.expect("count"), 0);
    assert_eq!(s.vcard("dave", A).await.expect("vcard"), None);
    assert_eq!(s.last_activity("dave", A).await.expect("last"), None);
    assert!(s.blocklist("dave", A).await.expect("list").is_empty());
    assert_eq!(
        s.private_xml("dave", A, "x:p").await.expect("private"),
        None
    );
    assert!(s.pep_nodes("dave", A).await.expect("pep").is_empty());
    assert_eq!(
        query(s, "dave@a.example", &limit(10)).await,
        page(vec![], true, 0),
        "the account's archive goes with it"
    );
    assert_eq!(query(s, "dave@muc.a.example", &limit(10)).await.count, 1);
    s.archive_delete("dave@muc.a.example")
        .await
        .expect("archive delete");

    // A message archived for dave after the deletion (the archive writer was still holding it,
    // or the deletion came from another process) ...
    s.archive_append(
        "dave@a.example",
        &archived(2, T0, "contact@c.example", "<message/>"),
    )
    .await
    .expect("late archive write");
    // ... and a new account under the same name inherits nothing, archive included.
    s.create_account("dave", A, &creds(8))
        .await
        .expect("recreate");
    assert_eq!(s.credentials("dave", A).await.expect("get"), Some(creds(8)));
    assert!(s.roster("dave", A).await.expect("roster").is_empty());
    assert_eq!(
        s.roster_item("dave", A, "contact@c.example")
            .await
            .expect("item"),
        None
    );
    assert!(s.take_offline("dave", A).await.expect("take").is_empty());
    assert_eq!(s.vcard("dave", A).await.expect("vcard"), None);
    assert_eq!(s.last_activity("dave", A).await.expect("last"), None);
    assert!(s.blocklist("dave", A).await.expect("list").is_empty());
    assert_eq!(query(s, "dave@a.example", &limit(10)).await.count, 0);
    assert!(s
        .pep_item("dave", A, "x:n", "i")
        .await
        .expect("pep")
        .is_none());

    // Alice's data is untouched.
    assert!(s
        .pep_item("alice", A, "x:n", "i")
        .await
        .expect("pep")
        .is_some());
    assert_eq!(s.roster("alice", A).await.expect("roster").len(), 1);
    assert_eq!(s.count_offline("alice", A).await.expect("count"), 1);
    assert!(s.vcard("alice", A).await.expect("vcard").is_some());
    assert_eq!(
        s.last_activity("alice", A).await.expect("last"),
        Some(last(2, "bye"))
    );
    assert_eq!(
        s.blocklist("alice", A).await.expect("list"),
        ["eve@b.example"]
    );
    assert_eq!(
        query(s, "alice@a.example", &limit(10)).await,
        page(
            vec![archived(1, T0, "contact@c.example", "<message/>")],
            true,
            1
        )
    );

    // Deleting an address without an account still drops its archive (SQLite answers NotFound
    // and the memory backend, for whom that is a visitor logging out, too).
    s.archive_append("ghost@a.example", &archived(2, T0, "x@b.example", "<m/>"))
        .await
        .expect("archive");
    let err = s.delete_account("ghost", A).await.expect_err("no account");
    assert!(matches!(err, StorageError::NotFound), "{err:?}");
    assert_eq!(query(s, "ghost@a.example", &limit(10)).await.count, 0);

    // Deleting the last account of a domain leaves the others.
    s.delete_account("alice", B).await.expect("delete");
    assert!(s.list_accounts(Some(B)).await.expect("list").is_empty());
    assert_eq!(
        s.list_accounts(None).await.expect("list"),
        ["alice@a.example", "bob@a.example", "dave@a.example"]
    );
}
