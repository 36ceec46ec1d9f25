//! HTTP File Upload (XEP-0363) records: add once, usage by quota key and time, expiry order.

use salon_server::storage::prelude::*;
use salon_server::storage::{StorageError, UploadRecord};

use crate::fixtures::*;

fn upload(
    id: &str,
    quota_key: &str,
    size: u64,
    created_at: i64,
    expires_at: Option<i64>,
) -> UploadRecord {
    UploadRecord {
        id: id.to_owned(),
        owner: format!("{quota_key}@{A}"),
        quota_key: quota_key.to_owned(),
        filename: format!("très cool {id}.jpg"),
        content_type: "image/jpeg".to_owned(),
        size,
        created_at,
        expires_at,
    }
}

/// Upload records: add once, look up, usage by quota key and time, total, expiry order.
pub(crate) async fn uploads(s: &dyn Storage) {
    assert_eq!(s.upload_total().await.expect("total"), 0);
    assert_eq!(s.upload_get("u1").await.expect("get"), None);
    let u1 = upload("u1", "alice", 100, 1_000, Some(5_000));
    let u2 = upload("u2", "alice", 20, 2_000, Some(3_000));
    let u3 = upload("u3", "bob", 7, 2_500, None);
    // Larger than any i32, to check the column holds 64 bits.
    let u4 = upload("u4", "bob", 5_000_000_000, 3_000, Some(3_000));
    for u in [&u1, &u2, &u3, &u4] {
        s.upload_add(u).await.expect("add upload");
    }
    let mut again = u1.clone();
    again.size = 1;
    assert!(matches!(
        s.upload_add(&again).await,
        Err(StorageError::AlreadyExists)
    ));
    assert_eq!(s.upload_get("u1").await.expect("get"), Some(u1.clone()));
    assert_eq!(s.upload_get("u3").await.expect("get"), Some(u3.clone()));
    assert_eq!(s.upload_usage("alice", 0).await.expect("usage"), 120);
    assert_eq!(s.upload_usage("alice", 1_500).await.expect("usage"), 20);
    assert_eq!(s.upload_usage("alice", 2_000).await.expect("usage"), 20);
    assert_eq!(s.upload_usage("alice", 2_001).await.expect("usage"), 0);
    assert_eq!(s.upload_usage("carol", 0).await.expect("usage"), 0);
    assert_eq!(s.upload_total().await.expect("total"), 5_000_000_127);
    assert_eq!(s.upload_expired(2_999, 10).await.expect("expired"), []);
    assert_eq!(
        s.upload_expired(3_000, 10).await.expect("expired"),
        [u2.clone(), u4.clone()]
    );
    assert_eq!(
        s.upload_expired(3_000, 1).await.expect("expired"),
        std::slice::from_ref(&u2)
    );
    assert_eq!(
        s.upload_expired(i64::MAX, 10).await.expect("expired"),
        [u2.clone(), u4.clone(), u1.clone()]
    );
    s.upload_delete("u2").await.expect("delete");
    s.upload_delete("u2").await.expect("deleting twice is fine");
    assert_eq!(s.upload_get("u2").await.expect("get"), None);
    assert_eq!(s.upload_usage("alice", 0).await.expect("usage"), 100);
    for id in ["u1", "u3", "u4"] {
        s.upload_delete(id).await.expect("delete");
    }
    assert_eq!(s.upload_total().await.expect("total"), 0);
    assert_eq!(s.upload_expired(i64::MAX, 10).await.expect("expired"), []);
}
