//! Accounts and SCRAM credentials (RFC 5802): create once, change, list, delete.

use salon_server::storage::prelude::*;
use salon_server::storage::StorageError;

use crate::fixtures::*;

pub(crate) async fn accounts(s: &dyn Storage) {
    assert_eq!(
        s.list_accounts(None).await.expect("list"),
        Vec::<String>::new()
    );
    assert_eq!(s.credentials("alice", A).await.expect("credentials"), None);

    // Created out of order, to check sorting.
    for (user, domain, seed) in [
        ("zoë", A, 1),
        ("bob", A, 2),
        ("alice", B, 3),
        ("alice", A, 4),
    ] {
        s.create_account(user, domain, &creds(seed))
            .await
            .unwrap_or_else(|e| panic!("create {user}@{domain}: {e}"));
    }
    let err = s
        .create_account("bob", A, &creds(9))
        .await
        .expect_err("duplicate");
    assert!(matches!(err, StorageError::AlreadyExists), "{err:?}");
    // The failed duplicate changed nothing.
    assert_eq!(
        s.credentials("bob", A).await.expect("credentials"),
        Some(creds(2))
    );

    assert_eq!(
        s.list_accounts(None).await.expect("list all"),
        [
            "alice@a.example",
            "alice@b.example",
            "bob@a.example",
            "zoë@a.example"
        ]
    );
    assert_eq!(
        s.list_accounts(Some(A)).await.expect("list A"),
        ["alice@a.example", "bob@a.example", "zoë@a.example"]
    );
    assert_eq!(
        s.list_accounts(Some(B)).await.expect("list B"),
        ["alice@b.example"]
    );
    assert!(s
        .list_accounts(Some("c.example"))
        .await
        .expect("list C")
        .is_empty());

    // Credentials round-trip and are per (user, domain).
    assert_eq!(
        s.credentials("alice", A).await.expect("get"),
        Some(creds(4))
    );
    assert_eq!(
        s.credentials("alice", B).await.expect("get"),
        Some(creds(3))
    );
    assert_eq!(s.credentials("zoë", A).await.expect("get"), Some(creds(1)));
    assert_eq!(s.credentials("carol", A).await.expect("get"), None);
    assert_eq!(s.credentials("zoë", B).await.expect("get"), None);

    let mut changed = creds(200);
    changed.iterations = u32::MAX;
    changed.salt = Vec::new();
    s.set_credentials("alice", A, &changed).await.expect("set");
    assert_eq!(s.credentials("alice", A).await.expect("get"), Some(changed));
    assert_eq!(
        s.credentials("alice", B).await.expect("get"),
        Some(creds(3))
    );

    let err = s
        .set_credentials("carol", A, &creds(5))
        .await
        .expect_err("missing");
    assert!(matches!(err, StorageError::NotFound), "{err:?}");
    assert_eq!(s.credentials("carol", A).await.expect("get"), None);

    let err = s.delete_account("carol", A).await.expect_err("missing");
    assert!(matches!(err, StorageError::NotFound), "{err:?}");
    let err = s.delete_account("zoë", B).await.expect_err("missing");
    assert!(matches!(err, StorageError::NotFound), "{err:?}");

    s.delete_account("zoë", A).await.expect("delete");
    assert_eq!(s.credentials("zoë", A).await.expect("get"), None);
    assert_eq!(
        s.list_accounts(Some(A)).await.expect("list A"),
        ["alice@a.example", "bob@a.example"]
    );
    let err = s.delete_account("zoë", A).await.expect_err("deleted twice");
    assert!(matches!(err, StorageError::NotFound), "{err:?}");
}
