//! Data written for an address without an account: refused by SQLite, so none can be
//! inherited by an account created later; kept by the memory backend for anonymous visitors.

use salon_server::storage::memory::MemoryStorage;
use salon_server::storage::prelude::*;
use salon_server::storage::{PepNode, PepNodeConfig, RosterItem, StorageError};

use crate::fixtures::*;
use crate::sqlite::open;

/// Writes one of each kind of per-address data for carol@a.example, who has no account.
async fn write_without_account(s: &dyn Storage) -> [Result<(), StorageError>; 7] {
    let it = RosterItem {
        groups: vec!["G".to_owned()],
        ..item("romeo@montague.example")
    };
    [
        s.put_roster_item("carol", A, &it).await,
        s.store_offline("carol", A, &offline("<message/>", 1)).await,
        s.set_vcard("carol", A, "<vCard/>").await,
        s.set_last_activity("carol", A, &last(1, "x")).await,
        s.block("carol", A, &["eve@b.example".to_owned()]).await,
        s.set_private_xml("carol", A, "x:p", "<p xmlns='x:p'/>")
            .await,
        s.put_pep_node(
            "carol",
            A,
            &PepNode {
                name: "x:n".to_owned(),
                config: PepNodeConfig::default(),
            },
            1,
        )
        .await,
    ]
}

/// Nothing is visible for carol@a.example.
async fn assert_nothing_for_carol(s: &dyn Storage) {
    assert_eq!(s.credentials("carol", A).await.expect("get"), None);
    assert!(s.roster("carol", A).await.expect("roster").is_empty());
    assert_eq!(s.count_offline("carol", A).await.expect("count"), 0);
    assert_eq!(s.vcard("carol", A).await.expect("vcard"), None);
    assert_eq!(s.last_activity("carol", A).await.expect("last"), None);
    assert!(s.pep_nodes("carol", A).await.expect("nodes").is_empty());
}

/// SQLite never stores data for an address without an account, so none can be inherited by an
/// account created later.
#[tokio::test]
async fn sqlite_refuses_data_without_account() {
    let dir = tempfile::TempDir::new().expect("tempdir");
    let s = open(&dir.path().join("salon.db")).await;
    for result in write_without_account(&s).await {
        let err = result.expect_err("no account");
        assert!(matches!(err, StorageError::NotFound), "{err:?}");
    }
    assert_nothing_for_carol(&s).await;
    s.create_account("carol", A, &creds(1))
        .await
        .expect("create");
    assert!(s.roster("carol", A).await.expect("roster").is_empty());
    assert!(s.take_offline("carol", A).await.expect("take").is_empty());
    s.close().await;
}

/// Anonymous visitors have no account in the memory backend; their data is kept all the same,
/// without making the address an account, and `delete_account` clears it at logout.
#[tokio::test]
async fn memory_keeps_data_without_account() {
    let s = MemoryStorage::new();
    s.create_account("alice", A, &creds(1))
        .await
        .expect("create");
    for result in write_without_account(&s).await {
        result.expect("stored without account");
    }
    assert_eq!(s.roster("carol", A).await.expect("roster").len(), 1);
    assert_eq!(s.count_offline("carol", A).await.expect("count"), 1);
    assert_eq!(
        s.vcard("carol", A).await.expect("vcard").as_deref(),
        Some("<vCard/>")
    );
    assert_eq!(
        s.last_activity("carol", A).await.expect("last"),
        Some(last(1, "x"))
    );
    assert_eq!(
        s.blocklist("carol", A).await.expect("list"),
        ["eve@b.example"]
    );
    assert_eq!(s.pep_nodes("carol", A).await.expect("nodes").len(), 1);
    // Still not an account.
    assert_eq!(s.credentials("carol", A).await.expect("get"), None);
    assert_eq!(
        s.list_accounts(None).await.expect("list"),
        ["alice@a.example"]
    );
    let err = s
        .set_credentials("carol", A, &creds(2))
        .await
        .expect_err("no account");
    assert!(matches!(err, StorageError::NotFound), "{err:?}");

    // Logout: the data goes, and the answer says there was no account.
    let err = s.delete_account("carol", A).await.expect_err("no account");
    assert!(matches!(err, StorageError::NotFound), "{err:?}");
    assert_nothing_for_carol(&s).await;
    assert_eq!(
        s.list_accounts(None).await.expect("list"),
        ["alice@a.example"]
    );

    // Taking the last data forgets the address; writing again starts afresh.
    s.store_offline("carol", A, &offline("<message/>", 2))
        .await
        .expect("store");
    assert_eq!(s.take_offline("carol", A).await.expect("take").len(), 1);
    assert_nothing_for_carol(&s).await;
    let err = s.delete_account("carol", A).await.expect_err("forgotten");
    assert!(matches!(err, StorageError::NotFound), "{err:?}");

    // An account created for an address keeps what was written for it before.
    s.set_vcard("carol", A, "<vCard/>").await.expect("vcard");
    s.create_account("carol", A, &creds(3))
        .await
        .expect("create");
    assert_eq!(
        s.credentials("carol", A).await.expect("get"),
        Some(creds(3))
    );
    assert_eq!(
        s.vcard("carol", A).await.expect("vcard").as_deref(),
        Some("<vCard/>")
    );
    let err = s
        .create_account("carol", A, &creds(4))
        .await
        .expect_err("duplicate");
    assert!(matches!(err, StorageError::AlreadyExists), "{err:?}");
    s.delete_account("carol", A).await.expect("delete");
    assert_nothing_for_carol(&s).await;
}
