//! Persistent storage backends for Salon behind the server's [`Storage`] trait. The default is
//! SQLite: one database file in the data directory, created on first start, with the schema in
//! `migrations/` embedded in the binary and applied on open.
//!
//! The file may be opened by more than one process at once (the running server and
//! `salon user add`), so it runs in WAL mode with a busy timeout, multi-statement writes take the
//! write lock up front (`BEGIN IMMEDIATE`), multi-statement reads run in one transaction (one
//! snapshot), and everything else is a single statement.
//!
//! Everything stored for an account references `accounts.id` with `ON DELETE CASCADE`. Writes of
//! per-account data (roster, offline messages, vCard, last activity) resolve the account inside
//! the same statement and fail with [`StorageError::NotFound`] if it does not exist, so data can
//! never outlive its account or be attached to one created later under the same name. Reads of a
//! missing account return nothing.
//!
//! MUC room records and message archives do not reference accounts: a room is not an account,
//! and an archive is named by a bare JID that may be a room or an account, so appending needs no
//! account. `delete_account` deletes the archive named `user@domain` in the same transaction
//! (even when there was no account, which it still reports as `NotFound`); `delete_room` leaves
//! the room's archive for `archive_delete`, and deleting a room that is not stored is not an
//! error.
//!
//! Upload records (XEP-0363) do not reference accounts either: anonymous visitors upload too, and
//! a record must outlive its uploader until the sweep has deleted the file. Sizes are 64-bit.
//!
//! Archives are ordered by an `AUTOINCREMENT` sequence (append order); timestamps only filter.
//! A query's page is taken from the "window": the messages matching `with`/`start`/`end` that lie
//! strictly after `after_id` and strictly before `before_id` (both optional, both allowed at
//! once). `complete` is true when the window holds no message beyond the page, i.e. the page was
//! not cut short by `limit`; with only one of `after_id`/`before_id` given that is exactly
//! "nothing further in the paging direction". `count` ignores `after_id`, `before_id` and
//! `limit`. An `after_id` or `before_id` not in the archive is [`StorageError::NotFound`]; one
//! that is in the archive but does not match the filters still marks a position.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use salon_server::storage::{
    ArchivePage, ArchiveQuery, ArchivedMessage, Credentials, LastActivity, OfflineMessage,
    RosterItem, ScramKeys, Storage, StorageError, StorageResult, Subscription, UploadRecord,
};
use sqlx::sqlite::{
    Sqlite, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool,
    SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row as _};

/// The schema, embedded at compile time.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How long a statement waits for another connection or process to release the write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections per pool. SQLite has a single writer anyway; a few connections let reads proceed
/// while a write is in progress.
const MAX_CONNECTIONS: u32 = 4;

/// A [`Storage`] in one SQLite database file.
#[derive(Clone, Debug)]
pub struct SqliteStorage {
    pool: SqlitePool,
    /// One connection for the room archive's appends, which commit without waiting for the
    /// disk (synchronous = NORMAL): every groupchat message is archived, and a sync per
    /// commit was a tenth of the server's CPU under chat load. In WAL mode a power loss can
    /// lose the last moments of history this way, never corrupt the file; a process crash
    /// loses nothing. Accounts, rosters and everything else stay on `pool`, synced.
    archive_pool: SqlitePool,
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
        let archive_options = options.synchronous(SqliteSynchronous::Normal);
        let archive_pool = connect(&archive_options, path, 1).await?;
        Ok(SqliteStorage { pool, archive_pool })
    }

    /// Closes every connection, waiting for those in use to be returned. Further calls fail.
    pub async fn close(&self) {
        self.archive_pool.close().await;
        self.pool.close().await;
    }
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

/// Maps a sqlx error: unique-constraint violations mean the account exists already, anything
/// else is a backend failure.
fn db_error(error: sqlx::Error) -> StorageError {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => StorageError::AlreadyExists,
        _ => StorageError::Backend(error.to_string()),
    }
}

fn corrupt(what: &str) -> StorageError {
    StorageError::Backend(format!("corrupt data in database: {what}"))
}

/// `NotFound` when a statement that should have touched the account's row touched nothing.
fn require_row(rows_affected: u64) -> StorageResult<()> {
    if rows_affected == 0 {
        Err(StorageError::NotFound)
    } else {
        Ok(())
    }
}

fn credentials_from_row(row: &SqliteRow) -> StorageResult<Credentials> {
    let iterations: i64 = row.try_get("iterations").map_err(db_error)?;
    Ok(Credentials {
        iterations: u32::try_from(iterations).map_err(|_| corrupt("iteration count"))?,
        salt: row.try_get("salt").map_err(db_error)?,
        sha1: ScramKeys {
            stored_key: row.try_get("sha1_stored_key").map_err(db_error)?,
            server_key: row.try_get("sha1_server_key").map_err(db_error)?,
        },
        sha256: ScramKeys {
            stored_key: row.try_get("sha256_stored_key").map_err(db_error)?,
            server_key: row.try_get("sha256_server_key").map_err(db_error)?,
        },
    })
}

/// Columns selected by the roster queries: one row per (item, group), items without groups once
/// with a NULL group, ordered by contact and then group position.
const ROSTER_SELECT: &str = "SELECT r.id, r.contact, r.name, r.subscription, r.ask_out, \
     r.pending_in, r.approved, g.name AS group_name \
     FROM accounts a \
     JOIN roster_items r ON r.account_id = a.id \
     LEFT JOIN roster_groups g ON g.item_id = r.id \
     WHERE a.user = ?1 AND a.domain = ?2";

/// Folds the rows of a [`ROSTER_SELECT`] query into items.
fn roster_from_rows(rows: &[SqliteRow]) -> StorageResult<Vec<RosterItem>> {
    let mut items: Vec<RosterItem> = Vec::new();
    let mut current_id: Option<i64> = None;
    for row in rows {
        let id: i64 = row.try_get("id").map_err(db_error)?;
        if current_id != Some(id) {
            current_id = Some(id);
            let subscription: String = row.try_get("subscription").map_err(db_error)?;
            let subscription = Subscription::parse(&subscription)
                .filter(|s| *s != Subscription::Remove)
                .ok_or_else(|| corrupt("roster subscription"))?;
            items.push(RosterItem {
                jid: row.try_get("contact").map_err(db_error)?,
                name: row.try_get("name").map_err(db_error)?,
                subscription,
                ask_out: row.try_get("ask_out").map_err(db_error)?,
                pending_in: row.try_get("pending_in").map_err(db_error)?,
                approved: row.try_get("approved").map_err(db_error)?,
                groups: Vec::new(),
            });
        }
        let group: Option<String> = row.try_get("group_name").map_err(db_error)?;
        if let (Some(group), Some(item)) = (group, items.last_mut()) {
            item.groups.push(group);
        }
    }
    Ok(items)
}

/// The domain of a bare JID (everything after the `@`, or all of it for a domain JID).
fn jid_domain(jid: &str) -> &str {
    jid.split_once('@').map_or(jid, |(_, domain)| domain)
}

/// Columns of an [`ArchivedMessage`], for [`archived_from_row`].
const ARCHIVE_COLUMNS: &str = "id, timestamp, with_jid, stanza";

fn archived_from_row(row: &SqliteRow) -> StorageResult<ArchivedMessage> {
    Ok(ArchivedMessage {
        id: row.try_get("id").map_err(db_error)?,
        timestamp: row.try_get("timestamp").map_err(db_error)?,
        with: row.try_get("with_jid").map_err(db_error)?,
        stanza: row.try_get("stanza").map_err(db_error)?,
    })
}

/// Appends `WHERE` with the archive and the query's `with`/`start`/`end` filters. Only the
/// filters present are written, so each combination is its own statement with its own plan
/// (a `?n IS NULL OR ...` form would keep SQLite from using the indexes).
fn push_archive_filters<'a>(
    builder: &mut QueryBuilder<'a, Sqlite>,
    archive: &'a str,
    query: &'a ArchiveQuery,
) {
    builder.push(" WHERE archive = ").push_bind(archive);
    if let Some(with) = &query.with {
        builder.push(" AND with_jid = ").push_bind(with.as_str());
    }
    if let Some(start) = query.start {
        builder.push(" AND timestamp >= ").push_bind(start);
    }
    if let Some(end) = query.end {
        builder.push(" AND timestamp <= ").push_bind(end);
    }
}

/// The sequence number of the message with stanza-id `id` in `archive`; `NotFound` if none.
async fn archive_position(
    conn: &mut SqliteConnection,
    archive: &str,
    id: Option<&str>,
) -> StorageResult<Option<i64>> {
    let Some(id) = id else {
        return Ok(None);
    };
    let seq: Option<i64> =
        sqlx::query_scalar("SELECT seq FROM archive_messages WHERE archive = ?1 AND id = ?2")
            .bind(archive)
            .bind(id)
            .fetch_optional(conn)
            .await
            .map_err(db_error)?;
    seq.map(Some).ok_or(StorageError::NotFound)
}

/// Columns of an [`UploadRecord`], for [`upload_from_row`].
const UPLOAD_COLUMNS: &str =
    "id, owner, quota_key, filename, content_type, size, created_at, expires_at";

fn upload_from_row(row: &SqliteRow) -> StorageResult<UploadRecord> {
    let size: i64 = row.try_get("size").map_err(db_error)?;
    Ok(UploadRecord {
        id: row.try_get("id").map_err(db_error)?,
        owner: row.try_get("owner").map_err(db_error)?,
        quota_key: row.try_get("quota_key").map_err(db_error)?,
        filename: row.try_get("filename").map_err(db_error)?,
        content_type: row.try_get("content_type").map_err(db_error)?,
        size: u64::try_from(size).map_err(|_| corrupt("upload size"))?,
        created_at: row.try_get("created_at").map_err(db_error)?,
        expires_at: row.try_get("expires_at").map_err(db_error)?,
    })
}

/// A byte total from `SUM(size)` (NULL when no row matched).
fn byte_total(total: Option<i64>) -> StorageResult<u64> {
    u64::try_from(total.unwrap_or(0)).map_err(|_| corrupt("upload size total"))
}

#[async_trait]
impl Storage for SqliteStorage {
    async fn create_account(
        &self,
        user: &str,
        domain: &str,
        credentials: &Credentials,
    ) -> StorageResult<()> {
        sqlx::query(
            "INSERT INTO accounts (user, domain, iterations, salt, sha1_stored_key, \
             sha1_server_key, sha256_stored_key, sha256_server_key) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .bind(user)
        .bind(domain)
        .bind(i64::from(credentials.iterations))
        .bind(&credentials.salt[..])
        .bind(&credentials.sha1.stored_key[..])
        .bind(&credentials.sha1.server_key[..])
        .bind(&credentials.sha256.stored_key[..])
        .bind(&credentials.sha256.server_key[..])
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn set_credentials(
        &self,
        user: &str,
        domain: &str,
        credentials: &Credentials,
    ) -> StorageResult<()> {
        let result = sqlx::query(
            "UPDATE accounts SET iterations = ?3, salt = ?4, sha1_stored_key = ?5, \
             sha1_server_key = ?6, sha256_stored_key = ?7, sha256_server_key = ?8 \
             WHERE user = ?1 AND domain = ?2",
        )
        .bind(user)
        .bind(domain)
        .bind(i64::from(credentials.iterations))
        .bind(&credentials.salt[..])
        .bind(&credentials.sha1.stored_key[..])
        .bind(&credentials.sha1.server_key[..])
        .bind(&credentials.sha256.stored_key[..])
        .bind(&credentials.sha256.server_key[..])
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        require_row(result.rows_affected())
    }

    async fn delete_account(&self, user: &str, domain: &str) -> StorageResult<()> {
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_error)?;
        // Roster items (and their groups), offline messages, vCard and last activity go with
        // the row through ON DELETE CASCADE.
        let result = sqlx::query("DELETE FROM accounts WHERE user = ?1 AND domain = ?2")
            .bind(user)
            .bind(domain)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        // The archive is not tied to the account row; it goes even if there was no account.
        sqlx::query("DELETE FROM archive_messages WHERE archive = ?1")
            .bind(format!("{user}@{domain}"))
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        require_row(result.rows_affected())
    }

    async fn credentials(&self, user: &str, domain: &str) -> StorageResult<Option<Credentials>> {
        let row = sqlx::query(
            "SELECT iterations, salt, sha1_stored_key, sha1_server_key, sha256_stored_key, \
             sha256_server_key FROM accounts WHERE user = ?1 AND domain = ?2",
        )
        .bind(user)
        .bind(domain)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.as_ref().map(credentials_from_row).transpose()
    }

    async fn list_accounts(&self, domain: Option<&str>) -> StorageResult<Vec<String>> {
        // BINARY collation compares UTF-8 bytes, which is the order of Rust's `str`.
        let rows = match domain {
            Some(domain) => {
                sqlx::query(
                    "SELECT user || '@' || domain AS jid FROM accounts WHERE domain = ?1 \
                     ORDER BY jid",
                )
                .bind(domain)
                .fetch_all(&self.pool)
                .await
            }
            None => {
                sqlx::query("SELECT user || '@' || domain AS jid FROM accounts ORDER BY jid")
                    .fetch_all(&self.pool)
                    .await
            }
        }
        .map_err(db_error)?;
        rows.iter()
            .map(|row| row.try_get("jid").map_err(db_error))
            .collect()
    }

    async fn roster(&self, user: &str, domain: &str) -> StorageResult<Vec<RosterItem>> {
        let rows = sqlx::query(&format!("{ROSTER_SELECT} ORDER BY r.contact, g.position"))
            .bind(user)
            .bind(domain)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        roster_from_rows(&rows)
    }

    async fn roster_item(
        &self,
        user: &str,
        domain: &str,
        contact: &str,
    ) -> StorageResult<Option<RosterItem>> {
        let rows = sqlx::query(&format!(
            "{ROSTER_SELECT} AND r.contact = ?3 ORDER BY g.position"
        ))
        .bind(user)
        .bind(domain)
        .bind(contact)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(roster_from_rows(&rows)?.into_iter().next())
    }

    async fn put_roster_item(
        &self,
        user: &str,
        domain: &str,
        item: &RosterItem,
    ) -> StorageResult<()> {
        if item.subscription == Subscription::Remove {
            return Err(StorageError::Backend(
                "subscription \"remove\" is never stored".to_owned(),
            ));
        }
        // IMMEDIATE: take the write lock now, so the busy timeout applies to acquiring it rather
        // than failing on a lock upgrade halfway through.
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_error)?;
        let item_id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO roster_items (account_id, contact, name, subscription, ask_out, \
             pending_in, approved) \
             SELECT id, ?3, ?4, ?5, ?6, ?7, ?8 FROM accounts WHERE user = ?1 AND domain = ?2 \
             ON CONFLICT (account_id, contact) DO UPDATE SET name = excluded.name, \
             subscription = excluded.subscription, ask_out = excluded.ask_out, \
             pending_in = excluded.pending_in, approved = excluded.approved \
             RETURNING id",
        )
        .bind(user)
        .bind(domain)
        .bind(&item.jid)
        .bind(item.name.as_deref())
        .bind(item.subscription.as_str())
        .bind(item.ask_out)
        .bind(item.pending_in)
        .bind(item.approved)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        // No account: nothing was written; dropping the transaction rolls it back.
        let item_id = item_id.ok_or(StorageError::NotFound)?;
        sqlx::query("DELETE FROM roster_groups WHERE item_id = ?1")
            .bind(item_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        for (position, group) in item.groups.iter().enumerate() {
            let position = i64::try_from(position).map_err(|_| corrupt("group position"))?;
            sqlx::query("INSERT INTO roster_groups (item_id, position, name) VALUES (?1, ?2, ?3)")
                .bind(item_id)
                .bind(position)
                .bind(group)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)
    }

    async fn remove_roster_item(
        &self,
        user: &str,
        domain: &str,
        contact: &str,
    ) -> StorageResult<()> {
        // Groups go with the item through ON DELETE CASCADE.
        sqlx::query(
            "DELETE FROM roster_items WHERE contact = ?3 \
             AND account_id = (SELECT id FROM accounts WHERE user = ?1 AND domain = ?2)",
        )
        .bind(user)
        .bind(domain)
        .bind(contact)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn store_offline(
        &self,
        user: &str,
        domain: &str,
        message: &OfflineMessage,
    ) -> StorageResult<()> {
        let result = sqlx::query(
            "INSERT INTO offline_messages (account_id, stanza, received_at) \
             SELECT id, ?3, ?4 FROM accounts WHERE user = ?1 AND domain = ?2",
        )
        .bind(user)
        .bind(domain)
        .bind(&message.stanza)
        .bind(message.received_at)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        require_row(result.rows_affected())
    }

    async fn count_offline(&self, user: &str, domain: &str) -> StorageResult<usize> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM offline_messages \
             WHERE account_id = (SELECT id FROM accounts WHERE user = ?1 AND domain = ?2)",
        )
        .bind(user)
        .bind(domain)
        .fetch_one(&self.pool)
        .await
        .map_err(db_error)?;
        usize::try_from(count).map_err(|_| corrupt("offline message count"))
    }

    async fn take_offline(&self, user: &str, domain: &str) -> StorageResult<Vec<OfflineMessage>> {
        // One statement, so a message stored concurrently is either taken now or kept for the
        // next time, never lost. RETURNING gives no order guarantee; sort by id afterwards.
        let rows = sqlx::query(
            "DELETE FROM offline_messages \
             WHERE account_id = (SELECT id FROM accounts WHERE user = ?1 AND domain = ?2) \
             RETURNING id, stanza, received_at",
        )
        .bind(user)
        .bind(domain)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        let mut messages = rows
            .iter()
            .map(|row| {
                Ok((
                    row.try_get::<i64, _>("id").map_err(db_error)?,
                    OfflineMessage {
                        stanza: row.try_get("stanza").map_err(db_error)?,
                        received_at: row.try_get("received_at").map_err(db_error)?,
                    },
                ))
            })
            .collect::<StorageResult<Vec<_>>>()?;
        messages.sort_unstable_by_key(|(id, _)| *id);
        Ok(messages.into_iter().map(|(_, message)| message).collect())
    }

    async fn vcard(&self, user: &str, domain: &str) -> StorageResult<Option<String>> {
        sqlx::query_scalar(
            "SELECT v.vcard FROM vcards v JOIN accounts a ON a.id = v.account_id \
             WHERE a.user = ?1 AND a.domain = ?2",
        )
        .bind(user)
        .bind(domain)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)
    }

    async fn set_vcard(&self, user: &str, domain: &str, vcard: &str) -> StorageResult<()> {
        let result = sqlx::query(
            "INSERT INTO vcards (account_id, vcard) \
             SELECT id, ?3 FROM accounts WHERE user = ?1 AND domain = ?2 \
             ON CONFLICT (account_id) DO UPDATE SET vcard = excluded.vcard",
        )
        .bind(user)
        .bind(domain)
        .bind(vcard)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        require_row(result.rows_affected())
    }

    async fn last_activity(&self, user: &str, domain: &str) -> StorageResult<Option<LastActivity>> {
        let row = sqlx::query(
            "SELECT l.at, l.status FROM last_activity l JOIN accounts a ON a.id = l.account_id \
             WHERE a.user = ?1 AND a.domain = ?2",
        )
        .bind(user)
        .bind(domain)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.map(|row| {
            Ok(LastActivity {
                at: row.try_get("at").map_err(db_error)?,
                status: row.try_get("status").map_err(db_error)?,
            })
        })
        .transpose()
    }

    async fn set_last_activity(
        &self,
        user: &str,
        domain: &str,
        activity: &LastActivity,
    ) -> StorageResult<()> {
        let result = sqlx::query(
            "INSERT INTO last_activity (account_id, at, status) \
             SELECT id, ?3, ?4 FROM accounts WHERE user = ?1 AND domain = ?2 \
             ON CONFLICT (account_id) DO UPDATE SET at = excluded.at, status = excluded.status",
        )
        .bind(user)
        .bind(domain)
        .bind(activity.at)
        .bind(&activity.status)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        require_row(result.rows_affected())
    }

    async fn private_xml(
        &self,
        user: &str,
        domain: &str,
        namespace: &str,
    ) -> StorageResult<Option<String>> {
        sqlx::query_scalar(
            "SELECT p.xml FROM accounts a JOIN private_xml p ON p.account_id = a.id \
             WHERE a.user = ?1 AND a.domain = ?2 AND p.namespace = ?3",
        )
        .bind(user)
        .bind(domain)
        .bind(namespace)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)
    }

    async fn set_private_xml(
        &self,
        user: &str,
        domain: &str,
        namespace: &str,
        xml: &str,
    ) -> StorageResult<()> {
        let result = sqlx::query(
            "INSERT INTO private_xml (account_id, namespace, xml) \
             SELECT id, ?3, ?4 FROM accounts WHERE user = ?1 AND domain = ?2 \
             ON CONFLICT (account_id, namespace) DO UPDATE SET xml = excluded.xml",
        )
        .bind(user)
        .bind(domain)
        .bind(namespace)
        .bind(xml)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        require_row(result.rows_affected())
    }

    async fn count_private_xml(&self, user: &str, domain: &str) -> StorageResult<usize> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM accounts a JOIN private_xml p ON p.account_id = a.id \
             WHERE a.user = ?1 AND a.domain = ?2",
        )
        .bind(user)
        .bind(domain)
        .fetch_one(&self.pool)
        .await
        .map_err(db_error)?;
        usize::try_from(count).map_err(|_| corrupt("private XML count"))
    }

    async fn blocklist(&self, user: &str, domain: &str) -> StorageResult<Vec<String>> {
        sqlx::query_scalar(
            "SELECT b.jid FROM accounts a JOIN blocklist_items b ON b.account_id = a.id \
             WHERE a.user = ?1 AND a.domain = ?2 ORDER BY b.jid",
        )
        .bind(user)
        .bind(domain)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)
    }

    async fn block(&self, user: &str, domain: &str, jids: &[String]) -> StorageResult<()> {
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_error)?;
        let account: Option<i64> =
            sqlx::query_scalar("SELECT id FROM accounts WHERE user = ?1 AND domain = ?2")
                .bind(user)
                .bind(domain)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_error)?;
        let account = account.ok_or(StorageError::NotFound)?;
        for jid in jids {
            sqlx::query("INSERT OR IGNORE INTO blocklist_items (account_id, jid) VALUES (?1, ?2)")
                .bind(account)
                .bind(jid)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)
    }

    async fn unblock(
        &self,
        user: &str,
        domain: &str,
        jids: Option<&[String]>,
    ) -> StorageResult<()> {
        let account = "SELECT id FROM accounts WHERE user = ?1 AND domain = ?2";
        match jids {
            None => {
                sqlx::query(&format!(
                    "DELETE FROM blocklist_items WHERE account_id IN ({account})"
                ))
                .bind(user)
                .bind(domain)
                .execute(&self.pool)
                .await
                .map_err(db_error)?;
            }
            Some(jids) => {
                let mut tx = self
                    .pool
                    .begin_with("BEGIN IMMEDIATE")
                    .await
                    .map_err(db_error)?;
                for jid in jids {
                    sqlx::query(&format!(
                        "DELETE FROM blocklist_items WHERE account_id IN ({account}) AND jid = ?3"
                    ))
                    .bind(user)
                    .bind(domain)
                    .bind(jid)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
                }
                tx.commit().await.map_err(db_error)?;
            }
        }
        Ok(())
    }

    async fn save_room(&self, room: &str, record: &str) -> StorageResult<()> {
        sqlx::query(
            "INSERT INTO rooms (jid, service, record) VALUES (?1, ?2, ?3) \
             ON CONFLICT (jid) DO UPDATE SET record = excluded.record",
        )
        .bind(room)
        .bind(jid_domain(room))
        .bind(record)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn delete_room(&self, room: &str) -> StorageResult<()> {
        // Deleting a room that is not stored is not an error; the archive stays.
        sqlx::query("DELETE FROM rooms WHERE jid = ?1")
            .bind(room)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn rooms(&self, service: &str) -> StorageResult<Vec<(String, String)>> {
        // BINARY collation compares UTF-8 bytes, which is the order of Rust's `str`.
        let rows = sqlx::query("SELECT jid, record FROM rooms WHERE service = ?1 ORDER BY jid")
            .bind(service)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get("jid").map_err(db_error)?,
                    row.try_get("record").map_err(db_error)?,
                ))
            })
            .collect()
    }

    async fn archive_append(&self, archive: &str, message: &ArchivedMessage) -> StorageResult<()> {
        // A duplicate id violates UNIQUE (archive, id): `AlreadyExists`.
        sqlx::query(
            "INSERT INTO archive_messages (archive, id, timestamp, with_jid, stanza) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(archive)
        .bind(&message.id)
        .bind(message.timestamp)
        .bind(&message.with)
        .bind(&message.stanza)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn archive_append_many(
        &self,
        messages: &[(String, ArchivedMessage)],
    ) -> StorageResult<()> {
        // One multi-row INSERT per chunk: one statement is one transaction and one trip to
        // SQLite's worker thread, however many messages arrived meanwhile.
        for chunk in messages.chunks(200) {
            let mut insert = QueryBuilder::new(
                "INSERT INTO archive_messages (archive, id, timestamp, with_jid, stanza) ",
            );
            insert.push_values(chunk, |mut row, (archive, message)| {
                row.push_bind(archive)
                    .push_bind(&message.id)
                    .push_bind(message.timestamp)
                    .push_bind(&message.with)
                    .push_bind(&message.stanza);
            });
            insert
                .build()
                .execute(&self.archive_pool)
                .await
                .map_err(db_error)?;
        }
        Ok(())
    }

    async fn archive_query(
        &self,
        archive: &str,
        query: &ArchiveQuery,
    ) -> StorageResult<ArchivePage> {
        // One read transaction: positions, count and page come from the same snapshot.
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let after = archive_position(&mut tx, archive, query.after_id.as_deref()).await?;
        let before = archive_position(&mut tx, archive, query.before_id.as_deref()).await?;

        let mut count = QueryBuilder::new("SELECT COUNT(*) FROM archive_messages");
        push_archive_filters(&mut count, archive, query);
        let count: i64 = count
            .build_query_scalar()
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?;
        let count = usize::try_from(count).map_err(|_| corrupt("archive message count"))?;

        // One more than the page, to learn whether the page is the last.
        let wanted = i64::try_from(query.limit.saturating_add(1)).unwrap_or(i64::MAX);
        let mut page = QueryBuilder::new(format!("SELECT {ARCHIVE_COLUMNS} FROM archive_messages"));
        push_archive_filters(&mut page, archive, query);
        if let Some(after) = after {
            page.push(" AND seq > ").push_bind(after);
        }
        if let Some(before) = before {
            page.push(" AND seq < ").push_bind(before);
        }
        page.push(if query.from_end {
            " ORDER BY seq DESC LIMIT "
        } else {
            " ORDER BY seq LIMIT "
        })
        .push_bind(wanted);
        let rows = page.build().fetch_all(&mut *tx).await.map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;

        let mut messages = rows
            .iter()
            .map(archived_from_row)
            .collect::<StorageResult<Vec<_>>>()?;
        let complete = messages.len() <= query.limit;
        messages.truncate(query.limit);
        if query.from_end {
            messages.reverse();
        }
        Ok(ArchivePage {
            messages,
            complete,
            count,
        })
    }

    async fn archive_get(&self, archive: &str, id: &str) -> StorageResult<Option<ArchivedMessage>> {
        let row = sqlx::query(&format!(
            "SELECT {ARCHIVE_COLUMNS} FROM archive_messages WHERE archive = ?1 AND id = ?2"
        ))
        .bind(archive)
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.as_ref().map(archived_from_row).transpose()
    }

    async fn archive_replace(&self, archive: &str, id: &str, stanza: &str) -> StorageResult<()> {
        let result =
            sqlx::query("UPDATE archive_messages SET stanza = ?3 WHERE archive = ?1 AND id = ?2")
                .bind(archive)
                .bind(id)
                .bind(stanza)
                .execute(&self.pool)
                .await
                .map_err(db_error)?;
        require_row(result.rows_affected())
    }

    async fn archive_expire(&self, domain: &str, before: i64) -> StorageResult<usize> {
        // Compared as a suffix, not with LIKE, whose `_` would match any character.
        let result = sqlx::query(
            "DELETE FROM archive_messages WHERE timestamp < ?1 \
             AND substr(archive, -(length(?2) + 1)) = '@' || ?2",
        )
        .bind(before)
        .bind(domain)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        usize::try_from(result.rows_affected()).map_err(|_| corrupt("expired message count"))
    }

    async fn archive_delete(&self, archive: &str) -> StorageResult<()> {
        sqlx::query("DELETE FROM archive_messages WHERE archive = ?1")
            .bind(archive)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn upload_add(&self, record: &UploadRecord) -> StorageResult<()> {
        let size = i64::try_from(record.size)
            .map_err(|_| StorageError::Backend("upload size out of range".to_owned()))?;
        // A duplicate id violates the primary key: `AlreadyExists`.
        sqlx::query(&format!(
            "INSERT INTO uploads ({UPLOAD_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
        ))
        .bind(&record.id)
        .bind(&record.owner)
        .bind(&record.quota_key)
        .bind(&record.filename)
        .bind(&record.content_type)
        .bind(size)
        .bind(record.created_at)
        .bind(record.expires_at)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn upload_get(&self, id: &str) -> StorageResult<Option<UploadRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = ?1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.as_ref().map(upload_from_row).transpose()
    }

    async fn upload_usage(&self, quota_key: &str, since: i64) -> StorageResult<u64> {
        let total: Option<i64> = sqlx::query_scalar(
            "SELECT SUM(size) FROM uploads WHERE quota_key = ?1 AND created_at >= ?2",
        )
        .bind(quota_key)
        .bind(since)
        .fetch_one(&self.pool)
        .await
        .map_err(db_error)?;
        byte_total(total)
    }

    async fn upload_total(&self) -> StorageResult<u64> {
        let total: Option<i64> = sqlx::query_scalar("SELECT SUM(size) FROM uploads")
            .fetch_one(&self.pool)
            .await
            .map_err(db_error)?;
        byte_total(total)
    }

    async fn upload_expired(&self, now: i64, limit: usize) -> StorageResult<Vec<UploadRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE expires_at IS NOT NULL \
             AND expires_at <= ?1 ORDER BY expires_at, id LIMIT ?2"
        ))
        .bind(now)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter().map(upload_from_row).collect()
    }

    async fn upload_delete(&self, id: &str) -> StorageResult<()> {
        sqlx::query("DELETE FROM uploads WHERE id = ?1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

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
