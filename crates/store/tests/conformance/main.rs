//! The behaviour every storage backend must share, one file per feature, written once and run
//! by `run_suite` against each backend (in memory and SQLite; a PostgreSQL backend adds its own
//! `#[tokio::test]` here), plus backend-specific tests: data written for an address without an
//! account (`without_account`), and SQLite persistence and concurrency (`sqlite`).

mod accounts;
mod archive;
mod bans;
mod blocklist;
mod cascades;
mod fixtures;
mod invites;
mod last_activity;
mod offline;
mod pep;
mod private;
mod push;
mod room_invites;
mod rooms;
mod roster;
mod sqlite;
mod uploads;
mod vcard;
mod without_account;

use salon_server::storage::memory::MemoryStorage;
use salon_server::storage::prelude::*;
use salon_store::SqliteStorage;

/// Every trait method, with the results checked exactly.
async fn run_suite(s: &dyn Storage) {
    accounts::accounts(s).await;
    roster::roster(s).await;
    offline::offline_messages(s).await;
    vcard::vcards(s).await;
    last_activity::last_activity(s).await;
    blocklist::blocklists(s).await;
    private::private_xml(s).await;
    rooms::rooms(s).await;
    archive::archives(s).await;
    archive::batched_archive_writes(s).await;
    pep::pep(s).await;
    archive::trimmed_archives(s).await;
    archive::byte_trimmed_archives(s).await;
    cascades::delete_cascades(s).await;
    uploads::uploads(s).await;
    bans::bans(s).await;
    invites::invites(s).await;
    room_invites::room_invites(s).await;
    push::push_registrations(s).await;
    s.flush().await.expect("flush");
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
