//! The behaviour every `Storage` backend must share, written once in `run_suite` and run against
//! each backend (in memory and SQLite), plus backend-specific tests: data written for an address
//! without an account (refused by SQLite, kept by the memory backend for anonymous visitors), and
//! for SQLite persistence across reopening and two handles (the server and the CLI) writing to
//! the same file at once.

use std::path::Path;

use salon_server::storage::memory::MemoryStorage;
use salon_server::storage::{
    Credentials, LastActivity, OfflineMessage, RosterItem, ScramKeys, Storage, StorageError,
    Subscription,
};
use salon_store::SqliteStorage;

const A: &str = "a.example";
const B: &str = "b.example";

/// Distinct credentials per `seed`, with keys covering every byte value so BLOBs round-trip.
fn creds(seed: u8) -> Credentials {
    let bytes = |offset: u8, len: usize| -> Vec<u8> {
        (0..len)
            .map(|i| {
                (i as u8)
                    .wrapping_mul(7)
                    .wrapping_add(seed)
                    .wrapping_add(offset)
            })
            .collect()
    };
    Credentials {
        iterations: 4096 + u32::from(seed),
        salt: bytes(0, 16),
        sha1: ScramKeys {
            stored_key: bytes(1, 20),
            server_key: bytes(2, 20),
        },
        sha256: ScramKeys {
            stored_key: bytes(3, 256),
            server_key: bytes(4, 32),
        },
    }
}

fn item(jid: &str) -> RosterItem {
    RosterItem {
        jid: jid.to_owned(),
        ..RosterItem::default()
    }
}

fn offline(stanza: &str, received_at: i64) -> OfflineMessage {
    OfflineMessage {
        stanza: stanza.to_owned(),
        received_at,
    }
}

fn last(at: i64, status: &str) -> LastActivity {
    LastActivity {
        at,
        status: status.to_owned(),
    }
}

/// Every trait method, with the results checked exactly.
async fn run_suite(s: &dyn Storage) {
    accounts(s).await;
    roster(s).await;
    offline_messages(s).await;
    vcards(s).await;
    last_activity(s).await;
    delete_cascades(s).await;
    s.flush().await.expect("flush");
}

async fn accounts(s: &dyn Storage) {
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

async fn roster(s: &dyn Storage) {
    assert!(s.roster("alice", A).await.expect("roster").is_empty());
    assert_eq!(s.roster_item("alice", A, "x@y").await.expect("item"), None);

    let romeo = RosterItem {
        jid: "romeo@montague.example".to_owned(),
        name: Some("Romeo".to_owned()),
        subscription: Subscription::Both,
        ask_out: false,
        pending_in: false,
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
        groups: Vec::new(),
    };
    let benvolio = RosterItem {
        jid: "benvolio@montague.example".to_owned(),
        name: Some(String::new()),
        subscription: Subscription::From,
        ask_out: false,
        pending_in: true,
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

async fn offline_messages(s: &dyn Storage) {
    assert_eq!(s.count_offline("alice", A).await.expect("count"), 0);
    assert!(s.take_offline("alice", A).await.expect("take").is_empty());

    // Ordered by arrival, not by timestamp.
    let messages = [
        offline("<message id='1'>first</message>", 1_700_000_100),
        offline("<message id='2'>second</message>", 1_700_000_000),
        offline("<message id='3'>third</message>", 1_700_000_000),
        offline("<message id='4'>fourth ✓</message>", 1_700_000_200),
    ];
    for m in &messages[..3] {
        s.store_offline("alice", A, m).await.expect("store");
    }
    s.store_offline("alice", B, &offline("<message id='b'/>", 5))
        .await
        .expect("store");
    s.store_offline("alice", A, &messages[3])
        .await
        .expect("store");
    assert_eq!(s.count_offline("alice", A).await.expect("count"), 4);
    assert_eq!(s.count_offline("alice", B).await.expect("count"), 1);
    assert_eq!(s.count_offline("bob", A).await.expect("count"), 0);

    assert_eq!(s.count_offline("carol", A).await.expect("count"), 0);
    assert!(s.take_offline("carol", A).await.expect("take").is_empty());

    assert_eq!(s.take_offline("alice", A).await.expect("take"), messages);
    // Taking deletes.
    assert_eq!(s.count_offline("alice", A).await.expect("count"), 0);
    assert!(s
        .take_offline("alice", A)
        .await
        .expect("take again")
        .is_empty());
    // Others' queues are untouched.
    assert_eq!(s.count_offline("alice", B).await.expect("count"), 1);

    // The queue keeps working after being emptied.
    s.store_offline("alice", A, &messages[1])
        .await
        .expect("store");
    s.store_offline("alice", A, &messages[0])
        .await
        .expect("store");
    assert_eq!(s.count_offline("alice", A).await.expect("count"), 2);
    assert_eq!(
        s.take_offline("alice", A).await.expect("take"),
        [messages[1].clone(), messages[0].clone()]
    );
    assert_eq!(
        s.take_offline("alice", B).await.expect("take"),
        [offline("<message id='b'/>", 5)]
    );
}

async fn vcards(s: &dyn Storage) {
    assert_eq!(s.vcard("alice", A).await.expect("vcard"), None);
    let first = "<vCard xmlns='vcard-temp'><FN>Alice</FN></vCard>";
    let second =
        "<vCard xmlns='vcard-temp'><FN>Alice Ä. Example</FN><NICKNAME>al</NICKNAME></vCard>";
    s.set_vcard("alice", A, first).await.expect("set");
    assert_eq!(
        s.vcard("alice", A).await.expect("vcard").as_deref(),
        Some(first)
    );
    assert_eq!(s.vcard("alice", B).await.expect("vcard"), None);
    assert_eq!(s.vcard("bob", A).await.expect("vcard"), None);
    s.set_vcard("alice", A, second).await.expect("replace");
    assert_eq!(
        s.vcard("alice", A).await.expect("vcard").as_deref(),
        Some(second)
    );

    assert_eq!(s.vcard("carol", A).await.expect("vcard"), None);
}

async fn last_activity(s: &dyn Storage) {
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
}

async fn delete_cascades(s: &dyn Storage) {
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
    }

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

    // A new account under the same name inherits nothing.
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

    // Alice's data is untouched.
    assert_eq!(s.roster("alice", A).await.expect("roster").len(), 1);
    assert_eq!(s.count_offline("alice", A).await.expect("count"), 1);
    assert!(s.vcard("alice", A).await.expect("vcard").is_some());
    assert_eq!(
        s.last_activity("alice", A).await.expect("last"),
        Some(last(2, "bye"))
    );

    // Deleting the last account of a domain leaves the others.
    s.delete_account("alice", B).await.expect("delete");
    assert!(s.list_accounts(Some(B)).await.expect("list").is_empty());
    assert_eq!(
        s.list_accounts(None).await.expect("list"),
        ["alice@a.example", "bob@a.example", "dave@a.example"]
    );
}

#[tokio::test]
async fn memory_conformance() {
    run_suite(&MemoryStorage::new()).await;
}

#[tokio::test]
async fn sqlite_conformance() {
    let dir = tempfile::TempDir::new().expect("tempdir");
    let storage = SqliteStorage::open(&dir.path().join("salon.db"))
        .await
        .expect("open");
    run_suite(&storage).await;
    storage.close().await;
}

/// Writes one of each kind of per-address data for carol@a.example, who has no account.
async fn write_without_account(s: &dyn Storage) -> [Result<(), StorageError>; 4] {
    let it = RosterItem {
        groups: vec!["G".to_owned()],
        ..item("romeo@montague.example")
    };
    [
        s.put_roster_item("carol", A, &it).await,
        s.store_offline("carol", A, &offline("<message/>", 1)).await,
        s.set_vcard("carol", A, "<vCard/>").await,
        s.set_last_activity("carol", A, &last(1, "x")).await,
    ]
}

/// Nothing is visible for carol@a.example.
async fn assert_nothing_for_carol(s: &dyn Storage) {
    assert_eq!(s.credentials("carol", A).await.expect("get"), None);
    assert!(s.roster("carol", A).await.expect("roster").is_empty());
    assert_eq!(s.count_offline("carol", A).await.expect("count"), 0);
    assert_eq!(s.vcard("carol", A).await.expect("vcard"), None);
    assert_eq!(s.last_activity("carol", A).await.expect("last"), None);
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

async fn open(path: &Path) -> SqliteStorage {
    SqliteStorage::open(path)
        .await
        .unwrap_or_else(|e| panic!("open {}: {e:#}", path.display()))
}

#[tokio::test]
async fn sqlite_data_survives_reopening() {
    let dir = tempfile::TempDir::new().expect("tempdir");
    // The parent directory does not exist yet either.
    let path = dir.path().join("data").join("nested").join("salon.db");
    let romeo = RosterItem {
        name: Some("Romeo".to_owned()),
        subscription: Subscription::To,
        ask_out: true,
        groups: vec!["Friends".to_owned(), "Family".to_owned()],
        ..item("romeo@montague.example")
    };

    let storage = open(&path).await;
    storage
        .create_account("juliet", A, &creds(1))
        .await
        .expect("create");
    storage
        .put_roster_item("juliet", A, &romeo)
        .await
        .expect("put");
    storage
        .store_offline("juliet", A, &offline("<message>1</message>", 10))
        .await
        .expect("store");
    storage
        .store_offline("juliet", A, &offline("<message>2</message>", 20))
        .await
        .expect("store");
    storage
        .set_vcard("juliet", A, "<vCard/>")
        .await
        .expect("vcard");
    storage
        .set_last_activity("juliet", A, &last(30, "asleep"))
        .await
        .expect("last");
    storage.flush().await.expect("flush");
    storage.close().await;
    assert!(path.is_file(), "database file created");

    // Opening again runs the migrations again, which must be a no-op.
    let storage = open(&path).await;
    assert_eq!(
        storage.list_accounts(None).await.expect("list"),
        ["juliet@a.example"]
    );
    assert_eq!(
        storage.credentials("juliet", A).await.expect("get"),
        Some(creds(1))
    );
    assert_eq!(storage.roster("juliet", A).await.expect("roster"), [romeo]);
    assert_eq!(
        storage.take_offline("juliet", A).await.expect("take"),
        [
            offline("<message>1</message>", 10),
            offline("<message>2</message>", 20)
        ]
    );
    assert_eq!(
        storage.vcard("juliet", A).await.expect("vcard").as_deref(),
        Some("<vCard/>")
    );
    assert_eq!(
        storage.last_activity("juliet", A).await.expect("last"),
        Some(last(30, "asleep"))
    );
    // Ids keep increasing after reopening, so order holds for messages stored now.
    storage
        .store_offline("juliet", A, &offline("<message>3</message>", 5))
        .await
        .expect("store");
    storage
        .store_offline("juliet", A, &offline("<message>4</message>", 1))
        .await
        .expect("store");
    assert_eq!(
        storage.take_offline("juliet", A).await.expect("take"),
        [
            offline("<message>3</message>", 5),
            offline("<message>4</message>", 1)
        ]
    );
    storage.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_two_handles_write_concurrently() {
    let dir = tempfile::TempDir::new().expect("tempdir");
    let path = dir.path().join("salon.db");
    // Both open a fresh file at the same moment, as a server and a CLI started together might.
    let (server, cli) = tokio::join!(open(&path), open(&path));
    server
        .create_account("owner", A, &creds(0))
        .await
        .expect("create");

    const EACH: usize = 25;
    let mut tasks = Vec::new();
    for (name, handle) in [("server", server.clone()), ("cli", cli.clone())] {
        tasks.push(tokio::spawn(async move {
            for i in 0..EACH {
                handle
                    .create_account(&format!("{name}{i:02}"), A, &creds(i as u8))
                    .await
                    .unwrap_or_else(|e| panic!("{name} create {i}: {e}"));
                // A multi-statement write, and single-statement ones on a shared account.
                let it = RosterItem {
                    groups: vec![name.to_owned(), format!("g{i}")],
                    ..item(&format!("{name}{i:02}@a.example"))
                };
                handle
                    .put_roster_item("owner", A, &it)
                    .await
                    .unwrap_or_else(|e| panic!("{name} put {i}: {e}"));
                handle
                    .store_offline("owner", A, &offline(&format!("{name} {i}"), 0))
                    .await
                    .unwrap_or_else(|e| panic!("{name} store {i}: {e}"));
            }
        }));
    }
    for task in tasks {
        task.await.expect("writer task");
    }

    // Each handle sees everything either wrote.
    for handle in [&server, &cli] {
        let accounts = handle.list_accounts(Some(A)).await.expect("list");
        assert_eq!(accounts.len(), 2 * EACH + 1);
        let roster = handle.roster("owner", A).await.expect("roster");
        assert_eq!(roster.len(), 2 * EACH);
        assert!(roster.iter().all(|it| it.groups.len() == 2));
        assert_eq!(
            handle.count_offline("owner", A).await.expect("count"),
            2 * EACH
        );
    }
    // Per writer, offline messages come out in the order that writer stored them.
    let taken = cli.take_offline("owner", A).await.expect("take");
    for name in ["server", "cli"] {
        let mine: Vec<String> = taken
            .iter()
            .filter(|m| m.stanza.starts_with(&format!("{name} ")))
            .map(|m| m.stanza.clone())
            .collect();
        let expected: Vec<String> = (0..EACH).map(|i| format!("{name} {i}")).collect();
        assert_eq!(mine, expected);
    }
    assert_eq!(server.count_offline("owner", A).await.expect("count"), 0);

    server.flush().await.expect("flush");
    cli.flush().await.expect("flush");
    server.close().await;
    cli.close().await;
}
