//! Archive queries at scale (the speed issue, target 5): the last page of a 1,000,000-message
//! room archive and a `with`-filtered page of a 1,000,000-message account archive, each timed
//! on the SQLite store. A benchmark, not a timed test: ignored by default, run in release with
//!
//! ```text
//! cargo test --release -p salon-store --test archive_scale -- --ignored --nocapture
//! ```
//!
//! (`ARCHIVE_SCALE_MESSAGES` changes the size). It prints the figures recorded in
//! bench/RESULTS.md and fails only if a query returns the wrong page.

use salon_server::storage::prelude::*;
use salon_server::storage::{ArchiveQuery, ArchivedMessage};
use salon_store::SqliteStorage;
use std::time::{Duration, Instant};

const ROOM: &str = "big@rooms.localhost";
const ACCOUNT: &str = "juliet@localhost";
/// Contacts of the account: the `with` filter picks one of them (1 message in 100).
const CONTACTS: usize = 100;
const PAGE: usize = 50;

fn size() -> usize {
    std::env::var("ARCHIVE_SCALE_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

fn message(n: usize, with: String) -> ArchivedMessage {
    ArchivedMessage {
        id: format!("{n:016x}{:016x}", n.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        timestamp: 1_700_000_000_000_000 + n as i64 * 1000,
        stanza: format!(
            "<message xmlns='jabber:client' from='{with}' type='chat' id='m{n}'>\
             <body>message number {n} of the archive at scale, about as long as a chat line</body>\
             </message>"
        ),
        with,
    }
}

/// Fill `archive` with `count` messages through the writer's path (batches of 256).
async fn fill(
    storage: &SqliteStorage,
    archive: &str,
    count: usize,
    with: impl Fn(usize) -> String,
) {
    let started = Instant::now();
    let mut batch = Vec::with_capacity(256);
    for n in 0..count {
        batch.push((archive.to_string(), message(n, with(n))));
        if batch.len() == 256 || n + 1 == count {
            storage.archive_append_many(&batch).await.expect("append");
            batch.clear();
        }
    }
    println!(
        "filled {archive} with {count} messages in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// Median and worst of `runs` timings of `query` on `archive`, after one warm-up.
async fn time(
    storage: &SqliteStorage,
    archive: &str,
    query: &ArchiveQuery,
    expect_last: usize,
) -> (Duration, Duration) {
    let mut timings = Vec::new();
    for run in 0..=20 {
        let started = Instant::now();
        let page = storage.archive_query(archive, query).await.expect("query");
        let took = started.elapsed();
        assert_eq!(page.messages.len(), PAGE);
        assert_eq!(
            page.messages.last().map(|m| m.id.clone()),
            Some(message(expect_last, String::new()).id)
        );
        if run > 0 {
            timings.push(took);
        }
    }
    timings.sort();
    (timings[timings.len() / 2], timings[timings.len() - 1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: builds two archives of a million messages"]
async fn last_pages_of_million_message_archives() {
    let count = size();
    let dir = tempfile::TempDir::new().expect("tempdir");
    let storage = SqliteStorage::open(&dir.path().join("salon.db"))
        .await
        .expect("open");
    fill(&storage, ROOM, count, |n| format!("{ROOM}/nick{}", n % 500)).await;
    fill(&storage, ACCOUNT, count, |n| {
        format!("contact{}@localhost", n % CONTACTS)
    })
    .await;

    let last_page = ArchiveQuery {
        limit: PAGE,
        from_end: true,
        ..ArchiveQuery::default()
    };
    let (median, worst) = time(&storage, ROOM, &last_page, count - 1).await;
    println!("room archive of {count}: last page of {PAGE} in {median:?} (median of 20; worst {worst:?})");

    let contact = 7;
    let with_page = ArchiveQuery {
        with: Some(format!("contact{contact}@localhost")),
        limit: PAGE,
        from_end: true,
        ..ArchiveQuery::default()
    };
    let last_with = (0..count)
        .rev()
        .find(|n| n % CONTACTS == contact)
        .expect("a message");
    let (median, worst) = time(&storage, ACCOUNT, &with_page, last_with).await;
    println!(
        "account archive of {count}: last page of {PAGE} with one of {CONTACTS} contacts in {median:?} (median of 20; worst {worst:?})"
    );
}
