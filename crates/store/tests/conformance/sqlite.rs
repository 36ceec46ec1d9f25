//! SQLite only: data survives reopening the file, and two handles (the server and the CLI)
//! write to the same file at once.

use salon_server::storage::prelude::*;
use salon_server::storage::{
    ArchiveQuery, ArchivedMessage, RosterItem, StorageError, Subscription,
};
use salon_store::SqliteStorage;

use crate::fixtures::*;

pub(crate) async fn open(path: &std::path::Path) -> SqliteStorage {
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

/// A new database in `dir` (`salon.db`) as the releases before migration `version` left it:
/// every migration up to the one before, applied.
async fn migrated_before(dir: &tempfile::TempDir, version: &str) -> sqlx::SqlitePool {
    let old = dir.path().join("old-migrations");
    std::fs::create_dir(&old).expect("mkdir");
    let all = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    for entry in std::fs::read_dir(&all).expect("migrations") {
        let entry = entry.expect("entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.as_str() < version {
            std::fs::copy(entry.path(), old.join(&name)).expect("copy");
        }
    }
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(dir.path().join("salon.db"))
        .create_if_missing(true);
    let pool = sqlx::SqlitePool::connect_with(options)
        .await
        .expect("connect");
    let migrator = sqlx::migrate::Migrator::new(old.as_path())
        .await
        .expect("migrator");
    migrator.run(&pool).await.expect("old migrations");
    pool
}

/// The archive schema of migration 2026120600000 4 (one stored stanza per message, entries
/// clustered by archive) takes over what the old `archive_messages` table held: same messages,
/// same order, and positions keep growing past the old sequence.
#[tokio::test]
async fn sqlite_archives_move_to_the_shared_row_schema() {
    let dir = tempfile::TempDir::new().expect("tempdir");
    let path = dir.path().join("salon.db");
    {
        let pool = migrated_before(&dir, "20261206000004").await;
        for (n, archive) in [
            (1, "room@rooms.a.example"),
            (2, "juliet@a.example"),
            (3, "room@rooms.a.example"),
        ] {
            sqlx::query(
                "INSERT INTO archive_messages (archive, id, timestamp, with_jid, stanza) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .bind(archive)
            .bind(format!("old{n}"))
            .bind(n * 1000)
            .bind("romeo@a.example")
            .bind(format!("<message>{n}</message>"))
            .execute(&pool)
            .await
            .expect("old row");
        }
        // The newest old row deleted: its position is never given again.
        sqlx::query("INSERT INTO archive_messages (archive, id, timestamp, with_jid, stanza) VALUES ('x@a.example', 'gone', 0, 'y', '<message/>')")
            .execute(&pool)
            .await
            .expect("row");
        sqlx::query("DELETE FROM archive_messages WHERE id = 'gone'")
            .execute(&pool)
            .await
            .expect("delete");
        pool.close().await;
    }

    let storage = open(&path).await;
    let all = ArchiveQuery {
        limit: 10,
        ..ArchiveQuery::default()
    };
    let page = storage
        .archive_query("room@rooms.a.example", &all)
        .await
        .expect("query");
    let ids: Vec<_> = page.messages.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["old1", "old3"]);
    assert_eq!(page.count, 2);
    assert_eq!(page.messages[1].stanza, "<message>3</message>");
    assert_eq!(page.messages[1].timestamp, 3000);
    let message = ArchivedMessage {
        id: "new".into(),
        timestamp: 4000,
        with: "romeo@a.example".into(),
        stanza: "<message>4</message>".into(),
    };
    storage
        .archive_append("room@rooms.a.example", &message)
        .await
        .expect("append");
    let page = storage
        .archive_query("room@rooms.a.example", &all)
        .await
        .expect("query");
    let ids: Vec<_> = page.messages.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["old1", "old3", "new"]);
    // The count kept per archive took the moved messages over.
    assert_eq!(page.count, 3);
    let juliet = storage
        .archive_query("juliet@a.example", &all)
        .await
        .expect("query");
    assert_eq!(juliet.messages.len(), 1);
    let next: i64 = {
        let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&path);
        let pool = sqlx::SqlitePool::connect_with(options)
            .await
            .expect("connect");
        let seq = sqlx::query_scalar("SELECT MAX(seq) FROM archive_entries")
            .fetch_one(&pool)
            .await
            .expect("seq");
        pool.close().await;
        seq
    };
    assert_eq!(
        next, 5,
        "positions continue after the old sequence (4 was given and deleted)"
    );
}

/// Migration 20261207000001 numbers the addresses: what the text-keyed entries held (order,
/// ids, `with`, shared stanzas, counts) is there after it, `with` filters and deletions work
/// on it, and new appends go on after the old positions.
#[tokio::test]
async fn sqlite_archives_move_to_address_numbers() {
    let dir = tempfile::TempDir::new().expect("tempdir");
    let path = dir.path().join("salon.db");
    {
        let pool = migrated_before(&dir, "20261207000001").await;
        // Two 1:1 messages between juliet and romeo (one stanza each, an entry in both
        // archives) and a room message, as the writer of that version stored them.
        let rows = [
            (1, "juliet@a.example", "romeo@a.example", "j1"),
            (1, "romeo@a.example", "juliet@a.example", "r1"),
            (
                2,
                "room@rooms.a.example",
                "room@rooms.a.example/nurse",
                "m1",
            ),
            (3, "juliet@a.example", "romeo@a.example", "j2"),
            (3, "romeo@a.example", "juliet@a.example", "r2"),
        ];
        for seq in [1, 2, 3] {
            let refs = rows.iter().filter(|r| r.0 == seq).count() as i64;
            sqlx::query("INSERT INTO archive_stanzas (seq, stanza, refs) VALUES (?1, ?2, ?3)")
                .bind(seq)
                .bind(format!("<message>{seq}</message>"))
                .bind(refs)
                .execute(&pool)
                .await
                .expect("stanza");
        }
        for (seq, archive, with, id) in rows {
            sqlx::query(
                "INSERT INTO archive_entries (archive, seq, id, timestamp, with_jid, body) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?2)",
            )
            .bind(archive)
            .bind(seq)
            .bind(id)
            .bind(seq * 1000)
            .bind(with)
            .execute(&pool)
            .await
            .expect("entry");
        }
        sqlx::query(
            "INSERT INTO archive_counts (archive, messages) \
             SELECT archive, COUNT(*) FROM archive_entries GROUP BY archive",
        )
        .execute(&pool)
        .await
        .expect("counts");
        pool.close().await;
    }

    let storage = open(&path).await;
    let all = ArchiveQuery {
        limit: 10,
        ..ArchiveQuery::default()
    };
    let juliet = storage
        .archive_query("juliet@a.example", &all)
        .await
        .expect("query");
    let ids: Vec<_> = juliet.messages.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["j1", "j2"]);
    assert_eq!(juliet.count, 2);
    assert_eq!(juliet.messages[1].with, "romeo@a.example");
    assert_eq!(juliet.messages[1].stanza, "<message>3</message>");
    assert_eq!(juliet.messages[1].timestamp, 3000);
    let with_nurse = ArchiveQuery {
        with: Some("room@rooms.a.example/nurse".into()),
        ..all.clone()
    };
    let room = storage
        .archive_query("room@rooms.a.example", &with_nurse)
        .await
        .expect("query");
    assert_eq!(room.messages.len(), 1);
    assert_eq!(room.messages[0].id, "m1");
    let nobody = ArchiveQuery {
        with: Some("nobody@a.example".into()),
        ..all.clone()
    };
    let none = storage
        .archive_query("juliet@a.example", &nobody)
        .await
        .expect("query");
    assert!(none.messages.is_empty() && none.count == 0);
    // Paging by an old id, and a new message after the old positions, sharing nothing.
    let after_j1 = ArchiveQuery {
        after_id: Some("j1".into()),
        ..all.clone()
    };
    storage
        .archive_append(
            "juliet@a.example",
            &ArchivedMessage {
                id: "j3".into(),
                timestamp: 4000,
                with: "tybalt@a.example".into(),
                stanza: "<message>4</message>".into(),
            },
        )
        .await
        .expect("append");
    let page = storage
        .archive_query("juliet@a.example", &after_j1)
        .await
        .expect("query");
    let ids: Vec<_> = page.messages.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["j2", "j3"]);
    assert_eq!(page.messages[1].with, "tybalt@a.example");
    let juliet = storage
        .archive_query("juliet@a.example", &all)
        .await
        .expect("query");
    assert_eq!(juliet.count, 3, "the count moved over and goes on");
    // Deleting juliet's archive leaves romeo's copies of the shared stanzas whole.
    storage
        .archive_delete("juliet@a.example")
        .await
        .expect("delete");
    let romeo = storage
        .archive_query("romeo@a.example", &all)
        .await
        .expect("query");
    let stanzas: Vec<_> = romeo.messages.iter().map(|m| m.stanza.as_str()).collect();
    assert_eq!(stanzas, ["<message>1</message>", "<message>3</message>"]);
    assert_eq!(romeo.count, 2);
    assert_eq!(
        storage
            .archive_query("juliet@a.example", &all)
            .await
            .expect("query")
            .count,
        0
    );
}
