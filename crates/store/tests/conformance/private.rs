//! Private XML storage (XEP-0049).

use salon_server::storage::prelude::*;

use crate::fixtures::*;

/// XEP-0049 private XML: one element per namespace, replaced whole, per account.
pub(crate) async fn private_xml(s: &dyn Storage) {
    const NS: &str = "storage:bookmarks";
    assert_eq!(s.private_xml("alice", A, NS).await.expect("get"), None);
    assert_eq!(s.count_private_xml("alice", A).await.expect("count"), 0);
    s.set_private_xml("alice", A, NS, "<storage xmlns='storage:bookmarks'/>")
        .await
        .expect("set");
    s.set_private_xml("alice", A, "x:notes", "<notes xmlns='x:notes'>é</notes>")
        .await
        .expect("set");
    s.set_private_xml(
        "alice",
        A,
        NS,
        "<storage xmlns='storage:bookmarks'><url/></storage>",
    )
    .await
    .expect("replace");
    assert_eq!(
        s.private_xml("alice", A, NS).await.expect("get").as_deref(),
        Some("<storage xmlns='storage:bookmarks'><url/></storage>")
    );
    assert_eq!(
        s.private_xml("alice", A, "x:notes")
            .await
            .expect("get")
            .as_deref(),
        Some("<notes xmlns='x:notes'>é</notes>")
    );
    assert_eq!(s.count_private_xml("alice", A).await.expect("count"), 2);
    assert_eq!(s.private_xml("bob", A, NS).await.expect("get"), None);
    assert_eq!(s.private_xml("alice", B, NS).await.expect("get"), None);
}
