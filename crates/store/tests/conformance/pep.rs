//! Personal eventing nodes and items (XEP-0163).

use salon_server::storage::prelude::*;
use salon_server::storage::{
    AccessModel, PepItem, PepNode, PepNodeConfig, SendLastItem, StorageError,
};

use crate::fixtures::*;

fn node(name: &str, config: PepNodeConfig) -> PepNode {
    PepNode {
        name: name.to_owned(),
        config,
    }
}

fn pep_item(id: &str, published: i64) -> PepItem {
    PepItem {
        id: id.to_owned(),
        published,
        payload: format!("<p xmlns='x:p'>{id} é</p>"),
    }
}

async fn ids(s: &dyn Storage, node: &str, limit: Option<usize>) -> Vec<String> {
    s.pep_items("alice", A, node, limit)
        .await
        .expect("items")
        .into_iter()
        .map(|i| i.id)
        .collect()
}

/// Nodes with every configuration field round-tripped; items ordered by publication, a
/// republished id becoming the newest, trimmed to what the node keeps; retract, purge, delete.
pub(crate) async fn pep(s: &dyn Storage) {
    const MOOD: &str = "http://jabber.org/protocol/mood";
    const NOTES: &str = "urn:x:notes";
    assert!(s.pep_nodes("alice", A).await.expect("nodes").is_empty());
    assert_eq!(s.pep_node("alice", A, MOOD).await.expect("node"), None);
    let err = s
        .publish_pep_item("alice", A, MOOD, &pep_item("1", T0), 10)
        .await
        .expect_err("no node");
    assert!(matches!(err, StorageError::NotFound), "{err:?}");

    let notes = PepNodeConfig {
        access_model: AccessModel::Roster,
        roster_groups_allowed: vec!["Friends".to_owned(), "Work place".to_owned()],
        persist_items: true,
        max_items: None,
        send_last_published_item: SendLastItem::Never,
        whitelist: vec!["bob@b.example".to_owned(), "carol@c.example".to_owned()],
    };
    s.put_pep_node("alice", A, &node(NOTES, notes.clone()), 100)
        .await
        .expect("create");
    s.put_pep_node("alice", A, &node(MOOD, PepNodeConfig::default()), 100)
        .await
        .expect("create");
    assert_eq!(
        s.pep_nodes("alice", A).await.expect("nodes"),
        [
            node(MOOD, PepNodeConfig::default()),
            node(NOTES, notes.clone())
        ]
    );
    assert_eq!(
        s.pep_node("alice", A, NOTES).await.expect("node"),
        Some(node(NOTES, notes.clone()))
    );
    assert!(s.pep_nodes("bob", A).await.expect("nodes").is_empty());
    assert!(s.pep_nodes("alice", B).await.expect("nodes").is_empty());

    for (n, id) in ["a", "b", "c", "d"].into_iter().enumerate() {
        s.publish_pep_item("alice", A, NOTES, &pep_item(id, T0 + n as i64), 3)
            .await
            .expect("publish");
    }
    assert_eq!(
        ids(s, NOTES, None).await,
        ["b", "c", "d"],
        "the oldest is dropped"
    );
    s.publish_pep_item("alice", A, NOTES, &pep_item("b", T0 + 9), 3)
        .await
        .expect("republish");
    assert_eq!(ids(s, NOTES, None).await, ["c", "d", "b"]);
    assert_eq!(ids(s, NOTES, Some(2)).await, ["d", "b"], "the newest two");
    assert_eq!(
        s.pep_item("alice", A, NOTES, "b").await.expect("item"),
        Some(pep_item("b", T0 + 9))
    );
    assert_eq!(
        s.pep_item("alice", A, NOTES, "a").await.expect("item"),
        None
    );
    assert_eq!(s.pep_item("alice", A, MOOD, "b").await.expect("item"), None);

    assert!(s
        .retract_pep_item("alice", A, NOTES, "d")
        .await
        .expect("retract"));
    assert!(!s
        .retract_pep_item("alice", A, NOTES, "d")
        .await
        .expect("retract"));
    assert_eq!(ids(s, NOTES, None).await, ["c", "b"]);

    // Reconfiguring keeps the items, down to the new limit.
    let one = PepNodeConfig {
        max_items: Some(1),
        ..notes.clone()
    };
    s.put_pep_node("alice", A, &node(NOTES, one.clone()), 1)
        .await
        .expect("configure");
    assert_eq!(
        s.pep_node("alice", A, NOTES).await.expect("node"),
        Some(node(NOTES, one))
    );
    assert_eq!(ids(s, NOTES, None).await, ["b"]);

    s.publish_pep_item("alice", A, MOOD, &pep_item("m", T0), 1)
        .await
        .expect("publish");
    s.purge_pep_node("alice", A, NOTES).await.expect("purge");
    assert!(ids(s, NOTES, None).await.is_empty());
    assert!(s.pep_node("alice", A, NOTES).await.expect("node").is_some());
    assert_eq!(ids(s, MOOD, None).await, ["m"], "other nodes keep theirs");

    assert!(s.delete_pep_node("alice", A, NOTES).await.expect("delete"));
    assert!(!s.delete_pep_node("alice", A, NOTES).await.expect("delete"));
    assert_eq!(s.pep_node("alice", A, NOTES).await.expect("node"), None);
    assert!(ids(s, NOTES, None).await.is_empty());
    // A node created again under the name starts empty.
    s.put_pep_node("alice", A, &node(NOTES, notes), 10)
        .await
        .expect("recreate");
    assert!(ids(s, NOTES, None).await.is_empty());
}
