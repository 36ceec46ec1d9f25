//! Blocklists (XEP-0191).

use salon_server::storage::prelude::*;

use crate::fixtures::*;

/// XEP-0191 blocklists: sorted, without duplicates, per account, partly or wholly cleared.
pub(crate) async fn blocklists(s: &dyn Storage) {
    let jids = |list: &[&str]| list.iter().map(|j| j.to_string()).collect::<Vec<_>>();
    assert!(s.blocklist("alice", A).await.expect("list").is_empty());
    s.block(
        "alice",
        A,
        &jids(&["spam.example", "eve@b.example", "mallory@b.example/x"]),
    )
    .await
    .expect("block");
    s.block("alice", A, &jids(&["eve@b.example", "zed@b.example"]))
        .await
        .expect("block again");
    assert_eq!(
        s.blocklist("alice", A).await.expect("list"),
        [
            "eve@b.example",
            "mallory@b.example/x",
            "spam.example",
            "zed@b.example"
        ]
    );
    assert!(s.blocklist("alice", B).await.expect("list").is_empty());
    assert!(s.blocklist("bob", A).await.expect("list").is_empty());
    s.unblock(
        "alice",
        A,
        Some(&jids(&["zed@b.example", "never@b.example"])),
    )
    .await
    .expect("unblock");
    assert_eq!(
        s.blocklist("alice", A).await.expect("list"),
        ["eve@b.example", "mallory@b.example/x", "spam.example"]
    );
    s.block("alice", B, &jids(&["eve@b.example"]))
        .await
        .expect("block on B");
    s.unblock("alice", A, None).await.expect("unblock all");
    assert!(s.blocklist("alice", A).await.expect("list").is_empty());
    assert_eq!(
        s.blocklist("alice", B).await.expect("list"),
        ["eve@b.example"],
        "another domain's alice keeps hers"
    );
    s.unblock("alice", B, None).await.expect("unblock all");
}
