//! The SQLite backend, the default: one database file in the data directory, created on first
//! start, with the schema in `migrations/sqlite/` embedded in the binary and applied on open.
//! Each feature's store is in the file named after it.
//!
//! The file may be opened by more than one process at once (the running server and
//! `salon user add`), so it runs in WAL mode with a busy timeout, multi-statement writes take the
//! write lock up front (`BEGIN IMMEDIATE`), multi-statement reads run in one transaction (one
//! snapshot), and everything else is a single statement.
//!
//! Everything stored for an account references `accounts.id` with `ON DELETE CASCADE`. Writes of
//! per-account data (roster, blocklist, private XML, offline messages, vCard, last activity, PEP)
//! resolve the account inside the same statement or transaction and fail with
//! [`StorageError::NotFound`] if it does not exist, so data can never outlive its account or be
//! attached to one created later under the same name. Reads of a missing account return nothing.
//!
//! MUC room records, message archives and upload records do not reference accounts.
//! `delete_account` deletes the archive named `user@domain` in the same transaction (even when
//! there was no account, which it still reports as `NotFound`), and `create_account` deletes
//! whatever was archived under the name since, so a new account never inherits history.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
#[cfg(doc)]
use salon_server::storage::StorageError;
use salon_server::storage::{Storage, StorageResult};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::Row as _;

use crate::errors::db_error;

mod accounts;
mod admins;
mod archive;
mod archive_append;
mod archive_journal;
mod bans;
mod blocklist;
mod invites;
mod last_activity;
mod offline;
mod pep;
mod private;
mod push;
mod room_invites;
mod rooms;
mod roster;
mod tokens;
mod uploads;
mod vcard;

/// The schema, embedded at compile time.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a statement waits for another connection or process to release the write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections per pool. SQLite has a single writer anyway; a few connections let reads proceed
/// while a write is in progress.
const MAX_CONNECTIONS: u32 = 4;

/// A [`Storage`] in one SQLite database file.
#[derive(Clone, Debug)]
pub struct SqliteStorage {
    pool: SqlitePool,
    /// One connection of its own for archive appends, used from the archive writer's thread
    /// (see `archive_append.rs`); it commits without waiting for the disk (synchronous =
    /// NORMAL): every message is archived, and a sync per commit was a tenth of the server's
    /// CPU under chat load. In WAL mode a power loss can lose the last moments of history this
    /// way, never corrupt the file; a process crash loses nothing. Accounts, rosters and
    /// everything else stay on `pool`, synced.
    archive_appends: Arc<archive_append::AppendConnection>,
    /// Where archived messages are written first (`archive_journal.rs`); `None` when another
    /// process (the server, beside this command) holds it.
    archive_journal: Option<Arc<archive_journal::Journal>>,
}

impl SqliteStorage {
    /// Opens the database at `path`, creating it (and its parent directory) if missing, and
    /// applies any pending migrations.
    pub async fn open(path: &Path) -> anyhow::Result<SqliteStorage> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(parent)
                .await
                .with_context(|| format!("creating directory {}", parent.display()))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit is on disk before the statement returns, even across power loss.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = connect(&options, path, MAX_CONNECTIONS).await?;
        migrate(&pool, path).await?;
        let appends_path = path.to_path_buf();
        let archive_appends = tokio::task::spawn_blocking(move || {
            archive_append::AppendConnection::open(&appends_path)
        })
        .await
        .context("opening the archive connection")?
        .with_context(|| format!("opening database {} for archive appends", path.display()))?;
        let archive_appends = Arc::new(archive_appends);
        let journal_path = path.to_path_buf();
        let appends = archive_appends.clone();
        let archive_journal =
            tokio::task::spawn_blocking(move || open_journal(&journal_path, &appends))
                .await
                .context("opening the archive journal")??;
        Ok(SqliteStorage {
            pool,
            archive_appends,
            archive_journal: archive_journal.map(Arc::new),
        })
    }

    /// Closes every connection, waiting for those in use to be returned. Further calls fail.
    pub async fn close(&self) {
        let appends = self.archive_appends.clone();
        // Waits for a batch being written.
        let _ = tokio::task::spawn_blocking(move || appends.close()).await;
        self.pool.close().await;
    }
}

/// Opens the archive journal and puts what a stopped or killed process left in it into the
/// database; `None` if another process holds it.
fn open_journal(
    database: &Path,
    appends: &archive_append::AppendConnection,
) -> anyhow::Result<Option<archive_journal::Journal>> {
    let (applied, owner) = appends.journal_applied()?;
    let Some((journal, records)) = archive_journal::Journal::open(database, applied, &owner)
        .with_context(|| format!("opening the archive journal of {}", database.display()))?
    else {
        return Ok(None);
    };
    let left: Vec<_> = records.into_iter().filter(|r| r.0 > applied).collect();
    for chunk in left.chunks(1024) {
        let last = chunk.last().map(|r| r.0);
        let messages: Vec<_> = chunk
            .iter()
            .map(|(_, archive, message)| (archive.clone(), message.clone()))
            .collect();
        match appends.append(&messages, last) {
            Ok(()) | Err(salon_server::storage::StorageError::AlreadyExists) => {}
            Err(error) => return Err(anyhow::anyhow!("applying the archive journal: {error}")),
        }
    }
    if !left.is_empty() {
        tracing::info!(
            messages = left.len(),
            "archived messages the last run had journaled are now in the database"
        );
    }
    journal.clear()?;
    Ok(Some(journal))
}

/// How often opening is attempted when another process holds the database lock.
const OPEN_ATTEMPTS: u32 = 5;

/// The pause before the attempt after `attempt`.
fn open_backoff(attempt: u32) -> Duration {
    Duration::from_millis(100 * u64::from(attempt))
}

/// `SQLITE_BUSY` or `SQLITE_LOCKED`, extended codes included.
fn is_busy(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|code| code.parse::<i32>().ok())
            .is_some_and(|code| matches!(code & 0xff, 5 | 6)),
        _ => false,
    }
}

/// Creates the pool. Each connection switches the file to WAL mode, which on a fresh file needs
/// an exclusive lock; two processes doing that at once can get `SQLITE_BUSY` without the busy
/// timeout applying (SQLite refuses to wait where waiting could deadlock). Once one has
/// succeeded the file is in WAL mode for good and the switch is a no-op, so retrying suffices.
async fn connect(
    options: &SqliteConnectOptions,
    path: &Path,
    max_connections: u32,
) -> anyhow::Result<SqlitePool> {
    let mut attempt = 1;
    loop {
        match SqlitePoolOptions::new()
            .max_connections(max_connections)
            .connect_with(options.clone())
            .await
        {
            Ok(pool) => return Ok(pool),
            Err(error) if attempt < OPEN_ATTEMPTS && is_busy(&error) => {
                tracing::debug!(%error, attempt, "opening {} failed; retrying", path.display());
                tokio::time::sleep(open_backoff(attempt)).await;
                attempt += 1;
            }
            Err(error) => {
                return Err(error).with_context(|| format!("opening database {}", path.display()))
            }
        }
    }
}

/// Applies pending migrations. SQLite migrations in sqlx take no lock: two processes opening a
/// fresh file at once may both try to apply the same migration, and the loser fails (busy, table
/// exists, or version already recorded). On another look it finds the migration recorded; a real
/// failure keeps failing and is reported after the last attempt.
async fn migrate(pool: &SqlitePool, path: &Path) -> anyhow::Result<()> {
    let mut attempt = 1;
    loop {
        match MIGRATOR.run(pool).await {
            Ok(()) => return Ok(()),
            Err(
                error @ (sqlx::migrate::MigrateError::Execute(_)
                | sqlx::migrate::MigrateError::ExecuteMigration(..)),
            ) if attempt < OPEN_ATTEMPTS => {
                tracing::debug!(%error, attempt, "migrating {} failed; retrying", path.display());
                tokio::time::sleep(open_backoff(attempt)).await;
                attempt += 1;
            }
            Err(error) => {
                return Err(error).with_context(|| format!("migrating database {}", path.display()))
            }
        }
    }
}

#[async_trait]
impl Storage for SqliteStorage {
    async fn flush(&self) -> StorageResult<()> {
        // Folds the WAL back into the database file, synced, so the file alone is complete
        // (e.g. for a backup after shutdown), archive appends made without a sync included.
        let row = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(&self.pool)
            .await
            .map_err(db_error)?;
        let busy: i64 = row.try_get(0).map_err(db_error)?;
        if busy != 0 {
            // Another connection (say, the CLI) is reading; the WAL stays, nothing is lost.
            tracing::debug!("WAL checkpoint incomplete: database in use by another connection");
        }
        Ok(())
    }
}
