//! What SQLite itself costs per archived 1:1 message (the speed issue, target 4): each message
//! is stored once and listed in two archives (the sender's and the recipient's), among 200
//! accounts chatting in pairs as in `salon-bench chat`. Appended through the store's blocking
//! path (the archive writer's), one transaction per message and in larger batches, and, for
//! comparison, the same statements through a sqlx connection. Prints process CPU (user +
//! system, every thread) per message. A benchmark, not a timed test: ignored by default, run
//! in release with
//!
//! ```text
//! cargo test --release -p salon-store --test archive_append_cost -- --ignored --nocapture
//! ```

use salon_server::storage::prelude::*;
use salon_server::storage::ArchivedMessage;
use salon_store::SqliteStorage;
use std::time::Instant;

const ACCOUNTS: usize = 200;
/// Messages per run; `ARCHIVE_COST_MESSAGES` changes it (more gives finer figures: the CPU
/// clock counts in 10 ms ticks).
fn messages() -> usize {
    std::env::var("ARCHIVE_COST_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

/// CPU seconds of this process so far (utime + stime, every thread).
fn process_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("stat");
    // After the command's closing parenthesis: field 14 and 15 of the file are 12 and 13 here.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 =
        fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    ticks / 100.0
}

/// Message `n` from one account of a pair to the other: both archives' copies, sender first.
fn copies(n: usize) -> [(String, ArchivedMessage); 2] {
    let pair = (n.wrapping_mul(0x9e37_79b9) % (ACCOUNTS / 2)) * 2;
    let (from, to) = (
        format!("bench{pair}@localhost"),
        format!("bench{}@localhost", pair + 1),
    );
    let stanza = format!(
        "<message xmlns='jabber:client' from='{from}/r' to='{to}/r' type='chat' id='m{n}'>\
         <body>bench 1765000000000000 {from}</body></message>"
    );
    let copy = |archive: &str, with: &str, side: usize| {
        (
            archive.to_string(),
            ArchivedMessage {
                id: format!(
                    "{:x}{:016x}",
                    1_765_000_000_000_000u64 + n as u64,
                    (n * 2 + side).wrapping_mul(0x9e37_79b9_7f4a_7c15)
                ),
                timestamp: 1_765_000_000_000_000 + n as i64,
                with: with.to_string(),
                stanza: stanza.clone(),
            },
        )
    };
    [copy(&from, &to, 0), copy(&to, &from, 1)]
}

async fn fresh() -> (tempfile::TempDir, SqliteStorage) {
    let dir = tempfile::TempDir::new().expect("tempdir");
    let storage = SqliteStorage::open(&dir.path().join("salon.db"))
        .await
        .expect("open");
    (dir, storage)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark; run with --ignored --nocapture"]
async fn archive_append_cost() {
    for batch in [1, 8, 64, 256, 1024] {
        let (_dir, storage) = fresh().await;
        let storage = std::sync::Arc::new(storage);
        let cpu = process_cpu();
        let started = Instant::now();
        let writer = storage.clone();
        tokio::task::spawn_blocking(move || {
            let mut pending = Vec::new();
            for n in 0..messages() {
                pending.extend(copies(n));
                if pending.len() == batch * 2 {
                    writer
                        .archive_append_blocking(&pending, None)
                        .expect("append");
                    pending.clear();
                }
            }
        })
        .await
        .expect("writer");
        let cpu = process_cpu() - cpu;
        println!(
            "blocking path (one SQLite connection, prepared statements), {batch} message(s) per \
             transaction: {:.1} µs CPU, {:.1} µs wall per message",
            cpu * 1e6 / messages() as f64,
            started.elapsed().as_secs_f64() * 1e6 / messages() as f64
        );
        storage.close().await;
    }

    // The same statements through sqlx: a hand-off to its worker thread and back per statement.
    let (dir, storage) = fresh().await;
    storage.close().await;
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(dir.path().join("salon.db"))
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .synchronous(sqlx::sqlite::SqliteSynchronous::Normal);
    let mut connection = <sqlx::SqliteConnection as sqlx::Connection>::connect_with(&options)
        .await
        .expect("connect");
    for account in 0..ACCOUNTS {
        sqlx::query("INSERT INTO archive_addresses (jid) VALUES (?1)")
            .bind(format!("bench{account}@localhost"))
            .execute(&mut connection)
            .await
            .expect("address");
    }
    let cpu = process_cpu();
    let started = Instant::now();
    for n in 0..messages() {
        let [(a, first), (b, second)] = copies(n);
        let mut tx = sqlx::Connection::begin(&mut connection)
            .await
            .expect("begin");
        let seq = sqlx::query("INSERT INTO archive_stanzas (stanza, refs) VALUES (?1, 2)")
            .bind(&first.stanza)
            .execute(&mut *tx)
            .await
            .expect("stanza")
            .last_insert_rowid();
        for (archive, message) in [(a, first), (b, second)] {
            sqlx::query(
                "INSERT INTO archive_entries (archive, seq, id, timestamp, with_jid, body) \
                 VALUES ((SELECT id FROM archive_addresses WHERE jid = ?1), ?2, ?3, ?4, \
                         (SELECT id FROM archive_addresses WHERE jid = ?5), ?2)",
            )
            .bind(archive)
            .bind(seq)
            .bind(message.id)
            .bind(message.timestamp)
            .bind(message.with)
            .execute(&mut *tx)
            .await
            .expect("entry");
        }
        tx.commit().await.expect("commit");
    }
    let cpu = process_cpu() - cpu;
    println!(
        "sqlx connection, same statements, 1 message per transaction: {:.1} µs CPU, {:.1} µs wall per message",
        cpu * 1e6 / messages() as f64,
        started.elapsed().as_secs_f64() * 1e6 / messages() as f64
    );
}
