//! The behaviour every `Storage` backend must share, written once in `run_suite` and run against
//! each backend (in memory and SQLite), plus backend-specific tests: data written for an address
//! without an account (refused by SQLite, kept by the memory backend for anonymous visitors), and
//! for SQLite persistence across reopening and two handles (the server and the CLI) writing to
//! the same file at once.
//!
//! Archive paging semantics checked here (and documented in both backends): the page is taken
//! from the messages matching `with`/`start`/`end` strictly between `after_id` and `before_id`,
//! oldest first; `complete` means the page was not cut short by `limit`; `count` ignores
//! `after_id`, `before_id` and `limit`.

use std::path::Path;

use salon_server::storage::memory::MemoryStorage;
use salon_server::storage::prelude::*;
use salon_server::storage::{
    ArchivePage, ArchiveQuery, ArchivedMessage, Credentials, LastActivity, OfflineMessage,
    RosterItem, ScramKeys, StorageError, Subscription, UploadRecord,
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
    blocklists(s).await;
    private_xml(s).await;
    rooms(s).await;
    archives(s).await;
    batched_archive_writes(s).await;
    delete_cascades(s).await;
    uploads(s).await;
    s.flush().await.expect("flush");
}

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
async fn uploads(s: &dyn Storage) {
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
    assert!(s.blocklist("carol", A).await.expect("list").is_empty());
    assert_eq!(
        s.private_xml("carol", A, "x:p").await.expect("private"),
        None
    );
}

/// XEP-0191 blocklists: sorted, without duplicates, per account, partly or wholly cleared.
async fn blocklists(s: &dyn Storage) {
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

/// XEP-0049 private XML: one element per namespace, replaced whole, per account.
async fn private_xml(s: &dyn Storage) {
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

const MUC_A: &str = "muc.a.example";

async fn rooms(s: &dyn Storage) {
    assert!(s.rooms(MUC_A).await.expect("rooms").is_empty());

    // Saved out of order, on several services; none of them is an account.
    let saved = [
        ("zed@muc.a.example", "{\"zed\":1}"),
        ("ümlaut@muc.a.example", "<room name='Ü'/>"),
        ("alpha@muc.a.example", ""),
        ("alpha@muc.b.example", "b"),
        ("beta@sub.muc.a.example", "sub"),
        ("gamma@a.example", "host"),
    ];
    for (room, record) in saved {
        s.save_room(room, record)
            .await
            .unwrap_or_else(|e| panic!("save {room}: {e}"));
    }
    let owned = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(jid, record)| ((*jid).to_owned(), (*record).to_owned()))
            .collect()
    };
    // Sorted by JID in byte order ('ü' is after 'z'), only the exact service.
    assert_eq!(
        s.rooms(MUC_A).await.expect("rooms"),
        owned(&[
            ("alpha@muc.a.example", ""),
            ("zed@muc.a.example", "{\"zed\":1}"),
            ("ümlaut@muc.a.example", "<room name='Ü'/>"),
        ])
    );
    assert_eq!(
        s.rooms("muc.b.example").await.expect("rooms"),
        owned(&[("alpha@muc.b.example", "b")])
    );
    assert_eq!(
        s.rooms("sub.muc.a.example").await.expect("rooms"),
        owned(&[("beta@sub.muc.a.example", "sub")])
    );
    assert_eq!(
        s.rooms(A).await.expect("rooms"),
        owned(&[("gamma@a.example", "host")])
    );
    assert!(s.rooms("a.exampl").await.expect("rooms").is_empty());
    assert!(s.rooms("example").await.expect("rooms").is_empty());
    // Room records are not accounts.
    assert!(!s
        .list_accounts(None)
        .await
        .expect("list")
        .iter()
        .any(|jid| jid.contains("muc")));

    // Saving again replaces the record, without a second entry.
    s.save_room("zed@muc.a.example", "{\"zed\":2}")
        .await
        .expect("replace");
    assert_eq!(
        s.rooms(MUC_A).await.expect("rooms"),
        owned(&[
            ("alpha@muc.a.example", ""),
            ("zed@muc.a.example", "{\"zed\":2}"),
            ("ümlaut@muc.a.example", "<room name='Ü'/>"),
        ])
    );

    // Deleting a room leaves its archive and the other rooms (also the same name elsewhere).
    let kept = archived(0, 1, "x@a.example", "<message>kept</message>");
    s.archive_append("alpha@muc.a.example", &kept)
        .await
        .expect("append");
    s.delete_room("alpha@muc.a.example").await.expect("delete");
    assert_eq!(
        s.rooms(MUC_A).await.expect("rooms"),
        owned(&[
            ("zed@muc.a.example", "{\"zed\":2}"),
            ("ümlaut@muc.a.example", "<room name='Ü'/>"),
        ])
    );
    assert_eq!(
        s.rooms("muc.b.example").await.expect("rooms"),
        owned(&[("alpha@muc.b.example", "b")])
    );
    assert_eq!(
        s.archive_get("alpha@muc.a.example", &kept.id)
            .await
            .expect("get"),
        Some(kept.clone())
    );
    s.archive_delete("alpha@muc.a.example")
        .await
        .expect("archive delete");
    // Deleting what is not there is not an error.
    s.delete_room("alpha@muc.a.example")
        .await
        .expect("delete again");
    s.delete_room("nobody@muc.a.example")
        .await
        .expect("delete unknown");

    // A deleted room saved again starts afresh.
    s.save_room("alpha@muc.a.example", "new")
        .await
        .expect("save again");
    assert_eq!(
        s.rooms(MUC_A).await.expect("rooms"),
        owned(&[
            ("alpha@muc.a.example", "new"),
            ("zed@muc.a.example", "{\"zed\":2}"),
            ("ümlaut@muc.a.example", "<room name='Ü'/>"),
        ])
    );

    for (room, _) in saved {
        s.delete_room(room).await.expect("delete");
    }
    for service in [MUC_A, "muc.b.example", "sub.muc.a.example", A] {
        assert!(s.rooms(service).await.expect("rooms").is_empty());
    }
}

/// Microseconds; a realistic epoch time.
const T0: i64 = 1_700_000_000_000_000;
const SECOND: i64 = 1_000_000;

/// `archive_append_many` appends in the order given, after what was already there.
async fn batched_archive_writes(s: &dyn Storage) {
    const BATCH_ROOM: &str = "batch@muc.a.example";
    s.archive_append(BATCH_ROOM, &archived(90, 1, ROMEO, "<m>first</m>"))
        .await
        .expect("append");
    // Two archives in one batch: each message lands in its own, in order.
    let batch: Vec<(String, ArchivedMessage)> = (91..96)
        .map(|i| {
            (
                BATCH_ROOM.to_string(),
                archived(i, 2, JULIET, &format!("<m>{i}</m>")),
            )
        })
        .chain([(
            "other@muc.a.example".to_string(),
            archived(99, 2, JULIET, "<m/>"),
        )])
        .collect();
    s.archive_append_many(&batch).await.expect("append many");
    let other = query(s, "other@muc.a.example", &limit(10)).await;
    assert_eq!(other.messages.len(), 1);
    s.archive_delete("other@muc.a.example")
        .await
        .expect("delete");
    let page = query(s, BATCH_ROOM, &limit(10)).await;
    let ids: Vec<&str> = page.messages.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["id-90", "id-91", "id-92", "id-93", "id-94", "id-95"]);
    assert!(page.complete);
    s.archive_delete(BATCH_ROOM).await.expect("delete");
}

fn archived(id: usize, timestamp: i64, with: &str, stanza: &str) -> ArchivedMessage {
    ArchivedMessage {
        id: format!("id-{id:02}"),
        timestamp,
        with: with.to_owned(),
        stanza: stanza.to_owned(),
    }
}

const ROOM: &str = "room@muc.a.example";
const ROMEO: &str = "room@muc.a.example/romeo";
const JULIET: &str = "room@muc.a.example/juliet";

/// The 25 messages of [`ROOM`], in append order. Neither ids nor timestamps follow that order:
/// message `i` has id `id-{(13 i) mod 25}` and timestamp `T0 + ((7 i) mod 25)` seconds. Every
/// third message (i = 0, 3, …, 24) is from Romeo, the others from Juliet.
fn room_messages() -> Vec<ArchivedMessage> {
    (0..25)
        .map(|i| {
            let with = if i % 3 == 0 { ROMEO } else { JULIET };
            archived(
                (i * 13) % 25,
                T0 + ((i as i64 * 7) % 25) * SECOND,
                with,
                &format!("<message from='{with}' type='groupchat'><body>{i} ✓</body></message>"),
            )
        })
        .collect()
}

fn pick(all: &[ArchivedMessage], indices: impl IntoIterator<Item = usize>) -> Vec<ArchivedMessage> {
    indices.into_iter().map(|i| all[i].clone()).collect()
}

fn limit(limit: usize) -> ArchiveQuery {
    ArchiveQuery {
        limit,
        ..ArchiveQuery::default()
    }
}

async fn query(s: &dyn Storage, archive: &str, q: &ArchiveQuery) -> ArchivePage {
    s.archive_query(archive, q)
        .await
        .unwrap_or_else(|e| panic!("query {archive} {q:?}: {e}"))
}

fn page(messages: Vec<ArchivedMessage>, complete: bool, count: usize) -> ArchivePage {
    ArchivePage {
        messages,
        complete,
        count,
    }
}

async fn archives(s: &dyn Storage) {
    let all = room_messages();
    let id = |i: usize| Some(all[i].id.clone());

    // Nothing yet.
    assert_eq!(query(s, ROOM, &limit(10)).await, page(vec![], true, 0));
    assert_eq!(s.archive_get(ROOM, &all[0].id).await.expect("get"), None);
    let q = ArchiveQuery {
        after_id: id(0),
        ..limit(10)
    };
    let err = s.archive_query(ROOM, &q).await.expect_err("empty archive");
    assert!(matches!(err, StorageError::NotFound), "{err:?}");

    // Appended interleaved with other archives: another room, and an account's (alice@a has an
    // account, nobody@a does not; archives need none).
    let other = "other@muc.a.example";
    for (i, message) in all.iter().enumerate() {
        s.archive_append(ROOM, message)
            .await
            .unwrap_or_else(|e| panic!("append {i}: {e}"));
        if i % 5 == 0 {
            let theirs = archived(i, T0 + i as i64, "x@b.example", &format!("<o>{i}</o>"));
            s.archive_append(other, &theirs).await.expect("append");
            s.archive_append("alice@a.example", &theirs)
                .await
                .expect("append");
        }
    }
    s.archive_append("nobody@a.example", &archived(99, T0, "x@b.example", "<n/>"))
        .await
        .expect("append, no account");

    // The same id again in the same archive is refused and changes nothing; in another archive
    // it is fine.
    let duplicate = archived(13, T0 + 100 * SECOND, ROMEO, "<dup/>");
    assert_eq!(duplicate.id, all[1].id);
    let err = s
        .archive_append(ROOM, &duplicate)
        .await
        .expect_err("duplicate");
    assert!(matches!(err, StorageError::AlreadyExists), "{err:?}");
    assert_eq!(
        s.archive_get(ROOM, &duplicate.id).await.expect("get"),
        Some(all[1].clone())
    );
    s.archive_append("third@muc.a.example", &duplicate)
        .await
        .expect("same id, other archive");

    // Everything, in append order (not by id, not by timestamp), every field intact.
    assert_eq!(
        query(s, ROOM, &limit(100)).await,
        page(all.clone(), true, 25)
    );
    assert_eq!(
        query(s, ROOM, &limit(25)).await,
        page(all.clone(), true, 25),
        "exactly the limit: nothing beyond"
    );
    assert_eq!(
        query(s, ROOM, &limit(usize::MAX)).await,
        page(all.clone(), true, 25)
    );
    assert_eq!(
        query(s, other, &limit(100)).await.messages.len(),
        5,
        "archives are separate"
    );

    // Paging forwards in pages of 10: 10, 10, 5, complete only on the last.
    let first = query(s, ROOM, &limit(10)).await;
    assert_eq!(first, page(pick(&all, 0..10), false, 25));
    let second = query(
        s,
        ROOM,
        &ArchiveQuery {
            after_id: Some(first.messages[9].id.clone()),
            ..limit(10)
        },
    )
    .await;
    assert_eq!(second, page(pick(&all, 10..20), false, 25));
    let third = query(
        s,
        ROOM,
        &ArchiveQuery {
            after_id: Some(second.messages[9].id.clone()),
            ..limit(10)
        },
    )
    .await;
    assert_eq!(third, page(pick(&all, 20..25), true, 25));
    assert_eq!(
        query(
            s,
            ROOM,
            &ArchiveQuery {
                after_id: id(24),
                ..limit(10)
            }
        )
        .await,
        page(vec![], true, 25),
        "after the last message"
    );

    // Paging backwards from the end: pages still oldest first.
    let back = |before_id: Option<String>| ArchiveQuery {
        before_id,
        from_end: true,
        ..limit(10)
    };
    let last = query(s, ROOM, &back(None)).await;
    assert_eq!(last, page(pick(&all, 15..25), false, 25));
    let middle = query(s, ROOM, &back(Some(last.messages[0].id.clone()))).await;
    assert_eq!(middle, page(pick(&all, 5..15), false, 25));
    let oldest = query(s, ROOM, &back(Some(middle.messages[0].id.clone()))).await;
    assert_eq!(oldest, page(pick(&all, 0..5), true, 25));
    assert_eq!(
        query(s, ROOM, &back(id(0))).await,
        page(vec![], true, 25),
        "before the first message"
    );
    assert_eq!(
        query(s, ROOM, &back(id(10))).await,
        page(pick(&all, 0..10), true, 25),
        "exactly a page left"
    );

    // A before bound paged from the start, and an after bound paged from the end.
    assert_eq!(
        query(
            s,
            ROOM,
            &ArchiveQuery {
                before_id: id(12),
                ..limit(5)
            }
        )
        .await,
        page(pick(&all, 0..5), false, 25)
    );
    assert_eq!(
        query(
            s,
            ROOM,
            &ArchiveQuery {
                after_id: id(20),
                from_end: true,
                ..limit(10)
            }
        )
        .await,
        page(pick(&all, 21..25), true, 25)
    );
    assert_eq!(
        query(
            s,
            ROOM,
            &ArchiveQuery {
                after_id: id(3),
                from_end: true,
                ..limit(2)
            }
        )
        .await,
        page(pick(&all, 23..25), false, 25)
    );

    // Both bounds: the messages strictly between.
    let between = |after: usize, before: usize, n: usize, from_end: bool| ArchiveQuery {
        after_id: id(after),
        before_id: id(before),
        from_end,
        ..limit(n)
    };
    assert_eq!(
        query(s, ROOM, &between(5, 9, 10, false)).await,
        page(pick(&all, 6..9), true, 25)
    );
    assert_eq!(
        query(s, ROOM, &between(5, 9, 2, false)).await,
        page(pick(&all, 6..8), false, 25)
    );
    assert_eq!(
        query(s, ROOM, &between(5, 9, 2, true)).await,
        page(pick(&all, 7..9), false, 25)
    );
    assert_eq!(
        query(s, ROOM, &between(5, 6, 10, false)).await,
        page(vec![], true, 25)
    );
    assert_eq!(
        query(s, ROOM, &between(7, 7, 10, false)).await,
        page(vec![], true, 25)
    );
    assert_eq!(
        query(s, ROOM, &between(9, 5, 10, true)).await,
        page(vec![], true, 25)
    );

    // Limit 0: no messages, but the count and whether any lie beyond.
    assert_eq!(query(s, ROOM, &limit(0)).await, page(vec![], false, 25));
    assert_eq!(
        query(
            s,
            ROOM,
            &ArchiveQuery {
                from_end: true,
                ..limit(0)
            }
        )
        .await,
        page(vec![], false, 25)
    );
    assert_eq!(
        query(
            s,
            ROOM,
            &ArchiveQuery {
                after_id: id(24),
                ..limit(0)
            }
        )
        .await,
        page(vec![], true, 25)
    );
    assert_eq!(
        query(s, "empty@muc.a.example", &limit(0)).await,
        page(vec![], true, 0)
    );

    // The `with` filter: exact match only.
    let romeo: Vec<usize> = (0..25).step_by(3).collect();
    assert_eq!(romeo.len(), 9);
    let with = |who: &str| ArchiveQuery {
        with: Some(who.to_owned()),
        ..limit(100)
    };
    assert_eq!(
        query(s, ROOM, &with(ROMEO)).await,
        page(pick(&all, romeo.iter().copied()), true, 9)
    );
    assert_eq!(query(s, ROOM, &with(JULIET)).await.count, 16);
    assert_eq!(
        query(s, ROOM, &with("room@muc.a.example")).await,
        page(vec![], true, 0)
    );
    assert_eq!(
        query(s, ROOM, &with("room@muc.a.example/Romeo")).await,
        page(vec![], true, 0)
    );
    // Paged, with a position that itself does not match the filter.
    let romeo_page = |after: usize| ArchiveQuery {
        after_id: id(after),
        ..ArchiveQuery {
            limit: 4,
            ..with(ROMEO)
        }
    };
    assert_eq!(
        query(
            s,
            ROOM,
            &ArchiveQuery {
                limit: 4,
                ..with(ROMEO)
            }
        )
        .await,
        page(pick(&all, [0, 3, 6, 9]), false, 9)
    );
    assert_eq!(
        query(s, ROOM, &romeo_page(9)).await,
        page(pick(&all, [12, 15, 18, 21]), false, 9)
    );
    assert_eq!(
        query(s, ROOM, &romeo_page(10)).await,
        page(pick(&all, [12, 15, 18, 21]), false, 9)
    );
    assert_eq!(
        query(s, ROOM, &romeo_page(21)).await,
        page(pick(&all, [24]), true, 9)
    );
    assert_eq!(
        query(s, ROOM, &romeo_page(22)).await,
        page(pick(&all, [24]), true, 9)
    );
    assert_eq!(
        query(
            s,
            ROOM,
            &ArchiveQuery {
                before_id: id(23),
                from_end: true,
                limit: 3,
                ..with(ROMEO)
            }
        )
        .await,
        page(pick(&all, [15, 18, 21]), false, 9)
    );

    // Start and end are inclusive and select by timestamp; results stay in append order.
    let in_range = |lo: i64, hi: i64| -> Vec<usize> {
        (0..25)
            .filter(|&i| (lo..=hi).contains(&all[i].timestamp))
            .collect()
    };
    let range = ArchiveQuery {
        start: Some(T0 + 5 * SECOND),
        end: Some(T0 + 9 * SECOND),
        ..limit(100)
    };
    let expected = in_range(T0 + 5 * SECOND, T0 + 9 * SECOND);
    // (7 i) mod 25 in 5..=9: i = 15, 1, 8, 19, 12, in append order 1, 8, 12, 15, 19.
    assert_eq!(expected, [1, 8, 12, 15, 19]);
    assert_eq!(
        query(s, ROOM, &range).await,
        page(pick(&all, expected.iter().copied()), true, 5)
    );
    assert_eq!(
        query(
            s,
            ROOM,
            &ArchiveQuery {
                limit: 2,
                ..range.clone()
            }
        )
        .await,
        page(pick(&all, [1, 8]), false, 5)
    );
    assert_eq!(
        query(
            s,
            ROOM,
            &ArchiveQuery {
                after_id: id(8),
                limit: 2,
                ..range.clone()
            }
        )
        .await,
        page(pick(&all, [12, 15]), false, 5)
    );
    assert_eq!(
        query(
            s,
            ROOM,
            &ArchiveQuery {
                from_end: true,
                limit: 2,
                ..range.clone()
            }
        )
        .await,
        page(pick(&all, [15, 19]), false, 5)
    );
    let start_only = ArchiveQuery {
        start: Some(T0 + 20 * SECOND),
        ..limit(100)
    };
    assert_eq!(
        query(s, ROOM, &start_only).await,
        page(pick(&all, in_range(T0 + 20 * SECOND, i64::MAX)), true, 5)
    );
    let end_only = ArchiveQuery {
        end: Some(T0),
        ..limit(100)
    };
    assert_eq!(
        query(s, ROOM, &end_only).await,
        page(pick(&all, [0]), true, 1)
    );
    assert_eq!(
        query(
            s,
            ROOM,
            &ArchiveQuery {
                start: Some(T0 + 25 * SECOND),
                ..limit(100)
            }
        )
        .await,
        page(vec![], true, 0)
    );
    assert_eq!(
        query(
            s,
            ROOM,
            &ArchiveQuery {
                start: Some(T0 + 9 * SECOND),
                end: Some(T0 + 5 * SECOND),
                ..limit(100)
            }
        )
        .await,
        page(vec![], true, 0),
        "start after end"
    );
    // All three filters: Romeo's among 1, 8, 12, 15, 19 are 12 and 15.
    assert_eq!(
        query(
            s,
            ROOM,
            &ArchiveQuery {
                with: Some(ROMEO.to_owned()),
                ..range.clone()
            }
        )
        .await,
        page(pick(&all, [12, 15]), true, 2)
    );

    // An unknown position is NotFound, also one that exists only in another archive.
    for (after_id, before_id) in [
        (Some("nope".to_owned()), None),
        (None, Some("nope".to_owned())),
        (id(0), Some("nope".to_owned())),
        (Some("nope".to_owned()), id(0)),
        (Some("id-99".to_owned()), None),
    ] {
        let q = ArchiveQuery {
            after_id,
            before_id,
            ..limit(10)
        };
        let err = s.archive_query(ROOM, &q).await.expect_err("unknown id");
        assert!(matches!(err, StorageError::NotFound), "{q:?}: {err:?}");
    }

    // Lookup by id.
    for message in &all {
        assert_eq!(
            s.archive_get(ROOM, &message.id).await.expect("get"),
            Some(message.clone())
        );
    }
    assert_eq!(s.archive_get(ROOM, "nope").await.expect("get"), None);
    assert_eq!(s.archive_get(ROOM, "id-99").await.expect("get"), None);
    assert_eq!(
        s.archive_get("nothing@muc.a.example", "id-00")
            .await
            .expect("get"),
        None
    );

    // Replacing the stanza (a tombstone) keeps everything else, including the position.
    let tombstone = "<message><retracted xmlns='urn:xmpp:message-retract:1'/></message>";
    s.archive_replace(ROOM, &all[7].id, tombstone)
        .await
        .expect("replace");
    let mut retracted = all.clone();
    retracted[7].stanza = tombstone.to_owned();
    assert_eq!(
        s.archive_get(ROOM, &all[7].id).await.expect("get"),
        Some(retracted[7].clone())
    );
    assert_eq!(
        query(s, ROOM, &limit(100)).await,
        page(retracted.clone(), true, 25)
    );
    assert_eq!(
        s.archive_get(other, &all[7].id).await.expect("get"),
        None,
        "other archives untouched"
    );
    for (archive, id) in [
        (ROOM, "nope"),
        ("nothing@muc.a.example", all[7].id.as_str()),
        (other, all[7].id.as_str()),
    ] {
        let err = s
            .archive_replace(archive, id, "<x/>")
            .await
            .expect_err("absent");
        assert!(
            matches!(err, StorageError::NotFound),
            "{archive} {id}: {err:?}"
        );
    }

    // Expiry: strictly older than `before`, in the archives of one domain. On the MUC domain:
    // in ROOM, timestamps T0 + 0, 1 and 2 s (i = 0, 18, 11); in `other`, everything (all at
    // most T0 + 20 µs); third's duplicate-id message at T0 + 100 s stays. The accounts'
    // archives on a.example (a suffix of muc.a.example) wait for their own domain's expiry.
    assert_eq!(in_range(i64::MIN, T0 + 2 * SECOND), [0, 11, 18]);
    let expire = |domain: &'static str| s.archive_expire(domain, T0 + 3 * SECOND);
    assert_eq!(expire("muc.a.example").await.expect("expire"), 3 + 5);
    assert_eq!(expire("muc.a.example").await.expect("expire"), 0);
    assert_eq!(query(s, "alice@a.example", &limit(100)).await.count, 5);
    assert_eq!(expire("a.example").await.expect("expire"), 5 + 1);
    assert_eq!(expire("a.example").await.expect("expire"), 0);
    let survivors: Vec<usize> = (0..25).filter(|i| ![0, 11, 18].contains(i)).collect();
    assert_eq!(
        query(s, ROOM, &limit(100)).await,
        page(pick(&retracted, survivors.iter().copied()), true, 22)
    );
    assert_eq!(query(s, other, &limit(100)).await, page(vec![], true, 0));
    assert_eq!(query(s, "alice@a.example", &limit(100)).await.count, 0);
    assert_eq!(
        query(s, "third@muc.a.example", &limit(100)).await,
        page(vec![duplicate.clone()], true, 1)
    );
    assert_eq!(s.archive_get(ROOM, &all[0].id).await.expect("get"), None);
    let err = s
        .archive_query(
            ROOM,
            &ArchiveQuery {
                after_id: id(11),
                ..limit(10)
            },
        )
        .await
        .expect_err("expired position");
    assert!(matches!(err, StorageError::NotFound), "{err:?}");
    // Paging still works around the gaps.
    assert_eq!(
        query(
            s,
            ROOM,
            &ArchiveQuery {
                after_id: id(10),
                ..limit(3)
            }
        )
        .await,
        page(pick(&retracted, [12, 13, 14]), false, 22)
    );

    // An expired id can be used again, and new messages go last whatever their timestamp.
    s.archive_append(ROOM, &all[0]).await.expect("append again");
    let mut expected = pick(&retracted, survivors.iter().copied());
    expected.push(all[0].clone());
    assert_eq!(query(s, ROOM, &limit(100)).await, page(expected, true, 23));

    // Deleting an archive deletes only that archive.
    s.archive_delete(ROOM).await.expect("delete");
    assert_eq!(query(s, ROOM, &limit(100)).await, page(vec![], true, 0));
    assert_eq!(s.archive_get(ROOM, &all[1].id).await.expect("get"), None);
    assert_eq!(query(s, "third@muc.a.example", &limit(100)).await.count, 1);
    s.archive_delete(ROOM).await.expect("delete again");
    s.archive_delete("third@muc.a.example")
        .await
        .expect("delete");
    assert_eq!(query(s, "third@muc.a.example", &limit(100)).await.count, 0);

    // A deleted archive starts afresh.
    s.archive_append(ROOM, &all[1]).await.expect("append");
    assert_eq!(
        query(s, ROOM, &limit(100)).await,
        page(vec![all[1].clone()], true, 1)
    );
    s.archive_delete(ROOM).await.expect("delete");
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
        s.block(user, A, &["eve@b.example".to_owned()])
            .await
            .expect("block");
        s.set_private_xml(user, A, "x:p", "<p xmlns='x:p'/>")
            .await
            .expect("private");
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
    assert_eq!(
        query(s, "dave@a.example", &limit(10)).await,
        page(vec![], true, 0),
        "the account's archive goes with it"
    );
    assert_eq!(query(s, "dave@muc.a.example", &limit(10)).await.count, 1);
    s.archive_delete("dave@muc.a.example")
        .await
        .expect("archive delete");

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
    assert!(s.blocklist("dave", A).await.expect("list").is_empty());
    assert_eq!(query(s, "dave@a.example", &limit(10)).await.count, 0);

    // Alice's data is untouched.
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
async fn write_without_account(s: &dyn Storage) -> [Result<(), StorageError>; 6] {
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
    assert_eq!(
        s.blocklist("carol", A).await.expect("list"),
        ["eve@b.example"]
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

#[tokio::test]
async fn sqlite_archives_and_rooms_survive_reopening() {
    let dir = tempfile::TempDir::new().expect("tempdir");
    let path = dir.path().join("salon.db");
    let messages: Vec<ArchivedMessage> = (0..4)
        .map(|i| {
            archived(
                10 - i,
                T0 - i as i64 * SECOND,
                ROMEO,
                &format!("<message>{i} ✓</message>"),
            )
        })
        .collect();

    let storage = open(&path).await;
    for message in &messages[..3] {
        storage.archive_append(ROOM, message).await.expect("append");
    }
    storage
        .save_room(ROOM, "<config persistent='1'/>")
        .await
        .expect("save");
    storage.flush().await.expect("flush");
    storage.close().await;

    let storage = open(&path).await;
    assert_eq!(
        query(&storage, ROOM, &limit(10)).await,
        page(messages[..3].to_vec(), true, 3)
    );
    assert_eq!(
        storage.rooms(MUC_A).await.expect("rooms"),
        [(ROOM.to_owned(), "<config persistent='1'/>".to_owned())]
    );
    // Ids stay unique, and the order continues after reopening.
    let err = storage
        .archive_append(ROOM, &messages[0])
        .await
        .expect_err("duplicate");
    assert!(matches!(err, StorageError::AlreadyExists), "{err:?}");
    storage
        .archive_append(ROOM, &messages[3])
        .await
        .expect("append");
    assert_eq!(
        query(
            &storage,
            ROOM,
            &ArchiveQuery {
                after_id: Some(messages[2].id.clone()),
                ..limit(10)
            }
        )
        .await,
        page(messages[3..].to_vec(), true, 4)
    );
    assert_eq!(
        query(&storage, ROOM, &limit(10)).await,
        page(messages.clone(), true, 4)
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
