//! Last activity (XEP-0012): one record per account, replaced whole.

use salon_server::storage::prelude::*;

use crate::fixtures::*;

pub(crate) async fn last_activity(s: &dyn Storage) {
    assert_eq!(s.last_activity("alice", A).await.expect("last"), None);
    s.set_last_activity("alice", A, &last(1_700_000_000, "Gone fishing"))
        .await
        .expect("set");
    assert_eq!(
        s.last_activity("alice", A).await.expect("last"),
        Some(last(1_700_000_000, "Gone fishing"))
    );
    assert_eq!(s.last_activity("alice", B).await.expect("last"), None);
    s.set_last_activity("alice", A, &last(1_800_000_000, ""))
        .await
        .expect("replace");
    assert_eq!(
        s.last_activity("alice", A).await.expect("last"),
        Some(last(1_800_000_000, ""))
    );

    assert_eq!(s.last_activity("carol", A).await.expect("last"), None);
    assert!(s.blocklist("carol", A).await.expect("list").is_empty());
    assert_eq!(
        s.private_xml("carol", A, "x:p").await.expect("private"),
        None
    );
}
