//! The archive's append path in SQLite (XEP-0313 storage): one connection of its own, used from
//! the archive writer's thread (`salon_server::archive::ArchiveWriter`) without going through
//! the async pool, with its statements prepared once and one transaction per batch.
//!
//! Why not the pool: every append through sqlx is a hand-off to the connection's worker thread
//! and back to the runtime, on top of the writer's own; with one commit per message at 1:1 chat
//! rates those hand-offs cost more than SQLite's work. This connection commits with
//! synchronous = NORMAL: in WAL mode a commit is in the operating system's hands when it
//! returns, so a killed process loses nothing (what XEP-0198 acknowledged or a room echoed is
//! stored); a power loss can lose the last moments of history, never corrupt the file.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{params, Connection, ErrorCode, OpenFlags, TransactionBehavior};
use salon_server::storage::{ArchivedMessage, StorageError, StorageResult};

use super::BUSY_TIMEOUT;

/// The connection, `None` once closed.
#[derive(Debug)]
pub(super) struct AppendConnection(Mutex<Option<Connection>>);

/// Stores a message's text once, with how many entries refer to it.
const INSERT_STANZA: &str = "INSERT INTO archive_stanzas (stanza, refs) VALUES (?1, ?2)";
/// One archive's entry for a stored message, at the message's position.
const INSERT_ENTRY: &str =
    "INSERT INTO archive_entries (archive, seq, id, timestamp, with_jid, body) \
                            VALUES (?1, ?2, ?3, ?4, ?5, ?2)";
/// Fewer entries than planned refer to a stored message (a duplicate id was refused).
const SET_REFS: &str = "UPDATE archive_stanzas SET refs = ?2 WHERE seq = ?1";
const DELETE_STANZA: &str = "DELETE FROM archive_stanzas WHERE seq = ?1";
/// The last journal record the database holds (`archive_journal.rs`).
const SET_JOURNAL_APPLIED: &str = "UPDATE archive_journal_applied SET record = ?1 WHERE id = 1";
const JOURNAL_APPLIED: &str = "SELECT record FROM archive_journal_applied WHERE id = 1";

fn sql_error(error: rusqlite::Error) -> StorageError {
    match &error {
        rusqlite::Error::SqliteFailure(e, _) if e.code == ErrorCode::ConstraintViolation => {
            StorageError::AlreadyExists
        }
        _ => StorageError::Backend(error.to_string()),
    }
}

impl AppendConnection {
    /// Opens the database the pool has opened (and migrated) already.
    pub(super) fn open(path: &Path) -> anyhow::Result<AppendConnection> {
        let connection = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        connection.busy_timeout(BUSY_TIMEOUT)?;
        // The pool put the file in WAL mode for good; this only reads it back.
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "NORMAL")?;
        connection.pragma_update(None, "foreign_keys", true)?;
        Ok(AppendConnection(Mutex::new(Some(connection))))
    }

    fn lock(&self) -> MutexGuard<'_, Option<Connection>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Closes the connection (waiting for a batch being written); appends fail from then on.
    pub(super) fn close(&self) {
        self.lock().take();
    }

    /// The number of the last journal record the database holds.
    pub(super) fn journal_applied(&self) -> StorageResult<u64> {
        let guard = self.lock();
        let connection = guard
            .as_ref()
            .ok_or_else(|| StorageError::Backend("the archive connection is closed".into()))?;
        connection
            .query_row(JOURNAL_APPLIED, [], |row| row.get::<_, i64>(0))
            .map(|n| n.max(0) as u64)
            .map_err(sql_error)
    }

    /// Appends `messages` in order, in one transaction, blocking the calling thread. The copies
    /// of a 1:1 message come one after the other (the sender's archive, then the recipient's,
    /// with the same text): they share one stored stanza. A message whose id its archive holds
    /// already is left out and reported (`AlreadyExists`) once the rest is committed.
    /// `journaled` is the last journal record among them, recorded in the same transaction.
    pub(super) fn append(
        &self,
        messages: &[(String, ArchivedMessage)],
        journaled: Option<u64>,
    ) -> StorageResult<()> {
        let mut guard = self.lock();
        let connection = guard
            .as_mut()
            .ok_or_else(|| StorageError::Backend("the archive connection is closed".into()))?;
        let transaction = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql_error)?;
        let mut refused = None;
        {
            let mut insert_stanza = transaction
                .prepare_cached(INSERT_STANZA)
                .map_err(sql_error)?;
            let mut insert_entry = transaction
                .prepare_cached(INSERT_ENTRY)
                .map_err(sql_error)?;
            let mut start = 0;
            while start < messages.len() {
                let end = start + shared_run(&messages[start..]);
                let group = &messages[start..end];
                start = end;
                insert_stanza
                    .execute(params![group[0].1.stanza, group.len() as i64])
                    .map_err(sql_error)?;
                let seq = transaction.last_insert_rowid();
                let mut entries = 0;
                for (archive, message) in group {
                    match insert_entry.execute(params![
                        archive,
                        seq,
                        message.id,
                        message.timestamp,
                        message.with
                    ]) {
                        Ok(_) => entries += 1,
                        Err(error) => match sql_error(error) {
                            StorageError::AlreadyExists => {
                                refused.get_or_insert(StorageError::AlreadyExists);
                            }
                            other => return Err(other),
                        },
                    }
                }
                if entries == 0 {
                    transaction
                        .prepare_cached(DELETE_STANZA)
                        .and_then(|mut s| s.execute(params![seq]))
                        .map_err(sql_error)?;
                } else if entries < group.len() {
                    transaction
                        .prepare_cached(SET_REFS)
                        .and_then(|mut s| s.execute(params![seq, entries as i64]))
                        .map_err(sql_error)?;
                }
            }
        }
        if let Some(record) = journaled {
            transaction
                .prepare_cached(SET_JOURNAL_APPLIED)
                .and_then(|mut s| s.execute(params![record as i64]))
                .map_err(sql_error)?;
        }
        transaction.commit().map_err(sql_error)?;
        refused.map_or(Ok(()), Err)
    }
}

/// How many messages from the first share its stored stanza: those right after it with the
/// same text, each for an archive not yet in the run.
fn shared_run(messages: &[(String, ArchivedMessage)]) -> usize {
    let Some((_, first)) = messages.first() else {
        return 0;
    };
    let mut run = 1;
    while let Some((archive, message)) = messages.get(run) {
        if message.stanza != first.stanza || messages[..run].iter().any(|(a, _)| a == archive) {
            break;
        }
        run += 1;
    }
    run
}
