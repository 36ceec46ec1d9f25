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

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{
    params, Connection, ErrorCode, OpenFlags, OptionalExtension, Transaction, TransactionBehavior,
};
use salon_server::storage::{ArchivedMessage, StorageError, StorageResult};

use super::BUSY_TIMEOUT;

/// The append connection's page cache, in KiB (SQLite's `cache_size` takes KiB negated).
const APPEND_CACHE_KIB: i64 = -32 * 1024;
/// Address numbers kept in memory; past this many the map starts over (each address then
/// costs one lookup again).
const KNOWN_ADDRESSES: usize = 100_000;
/// Addresses whose entries have all gone (trimmed, expired, deleted) are removed once this many
/// new ones have been added, at most once per [`PRUNE_INTERVAL`]: a room's guests bring a new
/// address with each nickname, and without this the table would grow for ever. The removal
/// reads every entry once, so it runs rarely.
const PRUNE_AFTER_ADDED: usize = 10_000;
const PRUNE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);
/// Addresses no entry refers to (as its archive or its `with`).
const PRUNE_ADDRESSES: &str = "DELETE FROM archive_addresses WHERE id NOT IN \
     (SELECT archive FROM archive_entries UNION SELECT with_jid FROM archive_entries)";

/// The connection and the address numbers it knows, `None` once closed.
#[derive(Debug)]
pub(super) struct AppendConnection(Mutex<Option<Appender>>);

#[derive(Debug)]
struct Appender {
    connection: Connection,
    /// `archive_addresses` rows committed already: only this connection adds and removes
    /// them, and it forgets them all when it removes any.
    addresses: HashMap<String, i64>,
    /// Addresses added since unused ones were last removed, and when that was.
    added_since_prune: usize,
    last_prune: std::time::Instant,
}

impl Appender {
    /// Removes the addresses no entry refers to any longer, and forgets every number (a
    /// removed one may be given to another address).
    fn prune_addresses(&mut self) -> StorageResult<usize> {
        let removed = self
            .connection
            .execute(PRUNE_ADDRESSES, [])
            .map_err(sql_error)?;
        self.addresses.clear();
        self.added_since_prune = 0;
        self.last_prune = std::time::Instant::now();
        Ok(removed)
    }
}

/// Stores a message's text once, with how many entries refer to it.
const INSERT_STANZA: &str = "INSERT INTO archive_stanzas (stanza, refs) VALUES (?1, ?2)";
/// One archive's entry for a stored message, at the message's position; `archive` and
/// `with_jid` are address numbers.
const INSERT_ENTRY: &str =
    "INSERT INTO archive_entries (archive, seq, id, timestamp, with_jid, body) \
                            VALUES (?1, ?2, ?3, ?4, ?5, ?2)";
const FIND_ADDRESS: &str = "SELECT id FROM archive_addresses WHERE jid = ?1";
const ADD_ADDRESS: &str = "INSERT INTO archive_addresses (jid) VALUES (?1)";
/// Fewer entries than planned refer to a stored message (a duplicate id was refused).
const SET_REFS: &str = "UPDATE archive_stanzas SET refs = ?2 WHERE seq = ?1";
const DELETE_STANZA: &str = "DELETE FROM archive_stanzas WHERE seq = ?1";
/// Adds a batch's entries to an archive's count (RSM `<count/>` of unfiltered queries).
const ADD_TO_COUNT: &str = "INSERT INTO archive_counts (archive, messages) VALUES (?1, ?2) \
                            ON CONFLICT (archive) DO UPDATE SET messages = messages + ?2";
/// The last journal record the database holds (`archive_journal.rs`).
const SET_JOURNAL_APPLIED: &str = "UPDATE archive_journal_applied SET record = ?1 WHERE id = 1";
const JOURNAL_APPLIED: &str = "SELECT record, database FROM archive_journal_applied WHERE id = 1";

fn sql_error(error: rusqlite::Error) -> StorageError {
    match &error {
        rusqlite::Error::SqliteFailure(e, _) if e.code == ErrorCode::ConstraintViolation => {
            StorageError::AlreadyExists
        }
        _ => StorageError::Backend(error.to_string()),
    }
}

/// Address numbers for one transaction: those committed before, those it added (known only
/// once it commits: a rolled-back number may go to another address).
struct Numbering<'a> {
    committed: &'a mut HashMap<String, i64>,
    added: HashMap<String, i64>,
}

impl Numbering<'_> {
    fn number(&mut self, transaction: &Transaction<'_>, jid: &str) -> StorageResult<i64> {
        if let Some(&number) = self.committed.get(jid).or_else(|| self.added.get(jid)) {
            return Ok(number);
        }
        let found: Option<i64> = transaction
            .prepare_cached(FIND_ADDRESS)
            .and_then(|mut s| s.query_row(params![jid], |row| row.get(0)).optional())
            .map_err(sql_error)?;
        if let Some(number) = found {
            self.committed.insert(jid.to_string(), number);
            return Ok(number);
        }
        transaction
            .prepare_cached(ADD_ADDRESS)
            .and_then(|mut s| s.execute(params![jid]))
            .map_err(sql_error)?;
        let number = transaction.last_insert_rowid();
        self.added.insert(jid.to_string(), number);
        Ok(number)
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
        // SQLite's default page cache (2 MiB) is smaller than the indexes' pages one batch
        // touches across a few hundred archives: each miss is a read() from the operating
        // system's cache (a sixth of the writer's time in perf, session 10).
        connection.pragma_update(None, "cache_size", APPEND_CACHE_KIB)?;
        Ok(AppendConnection(Mutex::new(Some(Appender {
            connection,
            addresses: HashMap::new(),
            added_since_prune: 0,
            last_prune: std::time::Instant::now(),
        }))))
    }

    fn lock(&self) -> MutexGuard<'_, Option<Appender>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Closes the connection (waiting for a batch being written); appends fail from then on.
    pub(super) fn close(&self) {
        self.lock().take();
    }

    /// The number of the last journal record the database holds, and the database's name for
    /// its journal.
    pub(super) fn journal_applied(&self) -> StorageResult<(u64, String)> {
        let guard = self.lock();
        let appender = guard
            .as_ref()
            .ok_or_else(|| StorageError::Backend("the archive connection is closed".into()))?;
        appender
            .connection
            .query_row(JOURNAL_APPLIED, [], |row| {
                Ok((
                    row.get::<_, i64>(0)?.max(0) as u64,
                    row.get::<_, String>(1)?,
                ))
            })
            .map_err(sql_error)
    }

    /// Appends `messages` in order, in one transaction, blocking the calling thread. The copies
    /// of a 1:1 message (the sender's archive and the recipient's, with the same text) share
    /// one stored stanza when both are in the batch. A message whose id its archive holds
    /// already is left out and reported (`AlreadyExists`) once the rest is committed.
    /// `journaled` is the last journal record among them, recorded in the same transaction.
    ///
    /// The stanzas are stored first, in order, then the entries sorted by archive: each
    /// archive's entries land together at the end of its part of every index, so a batch of
    /// hundreds touches each page once rather than once per message.
    pub(super) fn append(
        &self,
        messages: &[(String, ArchivedMessage)],
        journaled: Option<u64>,
    ) -> StorageResult<()> {
        let mut guard = self.lock();
        let appender = guard
            .as_mut()
            .ok_or_else(|| StorageError::Backend("the archive connection is closed".into()))?;
        if appender.addresses.len() > KNOWN_ADDRESSES {
            appender.addresses.clear();
        }
        let transaction = appender
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql_error)?;
        let mut numbering = Numbering {
            committed: &mut appender.addresses,
            added: HashMap::new(),
        };
        let refused = write_batch(&transaction, &mut numbering, messages)?;
        if let Some(record) = journaled {
            transaction
                .prepare_cached(SET_JOURNAL_APPLIED)
                .and_then(|mut s| s.execute(params![record as i64]))
                .map_err(sql_error)?;
        }
        transaction.commit().map_err(sql_error)?;
        let Numbering { committed, added } = numbering;
        appender.added_since_prune += added.len();
        committed.extend(added);
        if appender.added_since_prune >= PRUNE_AFTER_ADDED
            && appender.last_prune.elapsed() >= PRUNE_INTERVAL
        {
            match appender.prune_addresses() {
                Ok(removed) => tracing::info!(removed, "removed unused archive addresses"),
                Err(error) => tracing::warn!(%error, "removing unused archive addresses"),
            }
        }
        refused.map_or(Ok(()), Err)
    }

    /// [`Appender::prune_addresses`] now, whatever the counts say.
    #[cfg(test)]
    fn prune_addresses(&self) -> StorageResult<usize> {
        self.lock()
            .as_mut()
            .ok_or_else(|| StorageError::Backend("the archive connection is closed".into()))?
            .prune_addresses()
    }
}

/// The stanzas, entries and counts of one batch, in `transaction`; `AlreadyExists` if an
/// archive refused a message's id (the rest is written).
fn write_batch(
    transaction: &Transaction<'_>,
    numbering: &mut Numbering<'_>,
    messages: &[(String, ArchivedMessage)],
) -> StorageResult<Option<StorageError>> {
    let mut refused = None;
    let groups = shared_stanzas(messages);
    let mut insert_stanza = transaction
        .prepare_cached(INSERT_STANZA)
        .map_err(sql_error)?;
    let mut seqs = Vec::with_capacity(groups.len());
    for members in &groups {
        insert_stanza
            .execute(params![messages[members[0]].1.stanza, members.len() as i64])
            .map_err(sql_error)?;
        seqs.push(transaction.last_insert_rowid());
    }
    // (archive's number, position, message, its stanza's group), by archive then position.
    let mut entries = Vec::with_capacity(messages.len());
    for (group, members) in groups.iter().enumerate() {
        for &index in members {
            let archive = numbering.number(transaction, &messages[index].0)?;
            entries.push((archive, seqs[group], index, group));
        }
    }
    entries.sort_unstable();
    let mut insert_entry = transaction
        .prepare_cached(INSERT_ENTRY)
        .map_err(sql_error)?;
    let mut count = transaction
        .prepare_cached(ADD_TO_COUNT)
        .map_err(sql_error)?;
    let mut kept = vec![0usize; groups.len()];
    let mut run: Option<(i64, i64)> = None;
    for (archive, seq, index, group) in entries {
        let message = &messages[index].1;
        let with = numbering.number(transaction, &message.with)?;
        match insert_entry.execute(params![archive, seq, message.id, message.timestamp, with]) {
            Ok(_) => kept[group] += 1,
            Err(error) => match sql_error(error) {
                StorageError::AlreadyExists => {
                    refused.get_or_insert(StorageError::AlreadyExists);
                    continue;
                }
                other => return Err(other),
            },
        }
        run = match run {
            Some((current, n)) if current == archive => Some((current, n + 1)),
            other => {
                if let Some((done, n)) = other {
                    count.execute(params![done, n]).map_err(sql_error)?;
                }
                Some((archive, 1))
            }
        };
    }
    if let Some((done, n)) = run {
        count.execute(params![done, n]).map_err(sql_error)?;
    }
    for (group, members) in groups.iter().enumerate() {
        if kept[group] == 0 {
            transaction
                .prepare_cached(DELETE_STANZA)
                .and_then(|mut s| s.execute(params![seqs[group]]))
                .map_err(sql_error)?;
        } else if kept[group] < members.len() {
            transaction
                .prepare_cached(SET_REFS)
                .and_then(|mut s| s.execute(params![seqs[group], kept[group] as i64]))
                .map_err(sql_error)?;
        }
    }
    Ok(refused)
}

/// How many of the latest groups a message's text is compared with. The two copies of a 1:1
/// message are appended one after the other, so a match is among the last few groups or
/// nowhere; looking no further keeps a batch of room messages (none shared) from hashing or
/// comparing every text.
const SHARING_LOOKBACK: usize = 8;

/// The messages grouped by the stored stanza they share, in order of the groups' first
/// message (the order their stanzas are stored in, so their positions). A message joins the
/// latest of the last [`SHARING_LOOKBACK`] groups with the same text unless its archive has a
/// message in that group or a later one: an archive's positions keep its messages' order.
fn shared_stanzas(messages: &[(String, ArchivedMessage)]) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::with_capacity(messages.len());
    for (index, (archive, message)) in messages.iter().enumerate() {
        let recent = groups.len().saturating_sub(SHARING_LOOKBACK);
        let same_text = (recent..groups.len()).rev().find(|&group| {
            let text = &messages[groups[group][0]].1.stanza;
            text.len() == message.stanza.len() && *text == message.stanza
        });
        let shared = same_text.filter(|&group| {
            groups[group..]
                .iter()
                .flatten()
                .all(|&member| messages[member].0 != *archive)
        });
        match shared {
            Some(group) => groups[group].push(index),
            None => groups.push(vec![index]),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(archive: &str, text: &str) -> (String, ArchivedMessage) {
        (
            archive.to_string(),
            ArchivedMessage {
                id: format!("{archive}{text}"),
                timestamp: 0,
                with: String::new(),
                stanza: text.to_string(),
            },
        )
    }

    fn entry(archive: &str, id: &str, with: &str) -> (String, ArchivedMessage) {
        (
            archive.to_string(),
            ArchivedMessage {
                id: id.to_string(),
                timestamp: 0,
                with: with.to_string(),
                stanza: format!("<message>{id}</message>"),
            },
        )
    }

    fn addresses(path: &Path) -> Vec<String> {
        let connection = Connection::open(path).expect("open");
        let mut statement = connection
            .prepare("SELECT jid FROM archive_addresses ORDER BY jid")
            .expect("prepare");
        let rows = statement.query_map([], |row| row.get(0)).expect("query");
        rows.map(|row| row.expect("row")).collect()
    }

    /// A fresh database in a temporary directory, opened by the pool (which migrates it) and
    /// by an appending connection.
    async fn opened() -> (
        tempfile::TempDir,
        super::super::SqliteStorage,
        AppendConnection,
    ) {
        let dir = tempfile::TempDir::new().expect("tempdir");
        let path = dir.path().join("salon.db");
        let storage = super::super::SqliteStorage::open(&path)
            .await
            .expect("open");
        let appends = AppendConnection::open(&path).expect("append connection");
        (dir, storage, appends)
    }

    #[tokio::test]
    async fn addresses_no_entry_uses_are_removed_and_numbers_forgotten() {
        let (dir, storage, appends) = opened().await;
        let path = dir.path().join("salon.db");
        appends
            .append(
                &[
                    entry("room@rooms", "1", "room@rooms/kept"),
                    entry("other@rooms", "2", "other@rooms/gone"),
                ],
                None,
            )
            .expect("append");
        // The other room's archive goes, with the last use of the newest address.
        use salon_server::storage::ArchiveStore;
        storage.archive_delete("other@rooms").await.expect("delete");
        assert_eq!(appends.prune_addresses().expect("prune"), 2);
        assert_eq!(addresses(&path), ["room@rooms", "room@rooms/kept"]);
        // The removed numbers are given again: a number remembered from before would now
        // name another address.
        appends
            .append(
                &[
                    entry("room@rooms", "3", "room@rooms/new"),
                    entry("room@rooms", "4", "other@rooms/gone"),
                ],
                None,
            )
            .expect("append");
        let page = first_page(&storage, "room@rooms", 10).await;
        let withs: Vec<_> = page.messages.iter().map(|m| m.with.as_str()).collect();
        assert_eq!(
            withs,
            ["room@rooms/kept", "room@rooms/new", "other@rooms/gone"]
        );
        assert_eq!(page.count, 3);
        storage.close().await;
    }

    /// The first page of `archive`, at most `limit` entries, oldest first.
    async fn first_page(
        storage: &super::super::SqliteStorage,
        archive: &str,
        limit: usize,
    ) -> salon_server::storage::ArchivePage {
        use salon_server::storage::ArchiveStore;
        let query = salon_server::storage::ArchiveQuery {
            limit,
            ..Default::default()
        };
        storage.archive_query(archive, &query).await.expect("query")
    }

    /// Every entry of `archive`, oldest first.
    async fn all(storage: &super::super::SqliteStorage, archive: &str) -> Vec<ArchivedMessage> {
        first_page(storage, archive, 10_000).await.messages
    }

    #[tokio::test]
    async fn batches_of_every_size_store_each_message_with_its_own_text() {
        let (_dir, storage, appends) = opened().await;
        // 1:1 pairs (the two copies share a stored stanza) and room messages (one copy), in
        // batches of one message to a few hundred entries.
        let mut sent = 0;
        for batch_size in [1, 5, 70, 133] {
            let mut batch = Vec::new();
            while batch.len() < batch_size {
                let text = format!("<message>{sent}</message>");
                let copy = |archive: &str, with: &str| {
                    (
                        archive.to_string(),
                        ArchivedMessage {
                            id: format!("id{sent}"),
                            timestamp: sent,
                            with: with.to_string(),
                            stanza: text.clone(),
                        },
                    )
                };
                if sent % 3 == 0 {
                    batch.push(copy("room@rooms", "room@rooms/nick"));
                } else {
                    batch.push(copy("alice@x", "bob@x"));
                    batch.push(copy("bob@x", "alice@x"));
                }
                sent += 1;
            }
            appends.append(&batch, None).expect("append");
        }
        let (alice, bob, room) = (
            all(&storage, "alice@x").await,
            all(&storage, "bob@x").await,
            all(&storage, "room@rooms").await,
        );
        assert_eq!(alice.len() + room.len(), sent as usize);
        assert_eq!(alice.len(), bob.len());
        for archive in [&alice, &bob, &room] {
            for message in archive {
                let n = message.id.trim_start_matches("id");
                assert_eq!(message.stanza, format!("<message>{n}</message>"));
                assert_eq!(message.timestamp.to_string(), n);
            }
            let order: Vec<i64> = archive.iter().map(|m| m.timestamp).collect();
            assert!(order.windows(2).all(|w| w[0] < w[1]), "in order: {order:?}");
        }
        assert_eq!(
            alice.iter().map(|m| m.with.as_str()).collect::<Vec<_>>(),
            vec!["bob@x"; alice.len()]
        );
        storage.close().await;
    }

    #[tokio::test]
    async fn an_id_an_archive_holds_is_refused_and_the_rest_of_the_batch_kept() {
        let (dir, storage, appends) = opened().await;
        let path = dir.path().join("salon.db");
        appends
            .append(&[entry("room@rooms", "17", "room@rooms/a")], None)
            .expect("append");
        // A batch of 80 entries, one of them refused: the other 79 must still be stored.
        let batch: Vec<_> = (0..80)
            .map(|n| entry("room@rooms", &n.to_string(), "room@rooms/a"))
            .collect();
        assert!(matches!(
            appends.append(&batch, None),
            Err(StorageError::AlreadyExists)
        ));
        let stored = all(&storage, "room@rooms").await;
        let ids: Vec<&str> = stored.iter().map(|m| m.id.as_str()).collect();
        let mut expected = vec!["17".to_string()];
        expected.extend((0..80).filter(|&n| n != 17).map(|n| n.to_string()));
        assert_eq!(ids, expected);
        // The refused copy's stanza went with it; the one stored before is still its own.
        assert_eq!(stored[0].stanza, "<message>17</message>");
        let counted = first_page(&storage, "room@rooms", 1).await.count;
        assert_eq!(counted, 80);
        let stanzas: i64 = Connection::open(&path)
            .expect("open")
            .query_row("SELECT COUNT(*) FROM archive_stanzas", [], |row| row.get(0))
            .expect("count");
        assert_eq!(stanzas, 80, "no stored stanza without an entry");
        storage.close().await;
    }

    #[test]
    fn copies_share_a_stanza_unless_an_archive_would_change_order() {
        let batch = [
            message("alice", "hi bob"),
            message("carol", "hi dave"),
            message("bob", "hi bob"),
            message("dave", "hi dave"),
            // Bob's next message shares nothing; then a copy of an earlier text for bob would
            // land before it, so it gets its own stanza.
            message("bob", "later"),
            message("bob", "hi dave"),
            // An archive holding the text already gets its own copy.
            message("alice", "hi bob"),
        ];
        assert_eq!(
            shared_stanzas(&batch),
            vec![vec![0, 2], vec![1, 3], vec![4], vec![5], vec![6]]
        );
        // A copy further back than the lookback is not looked for: it gets its own stanza.
        let mut far = vec![message("alice", "hi bob")];
        let texts: Vec<String> = (0..SHARING_LOOKBACK)
            .map(|n| format!("other {n}"))
            .collect();
        far.extend(texts.iter().map(|text| message("carol", text)));
        far.push(message("bob", "hi bob"));
        let groups = shared_stanzas(&far);
        assert_eq!(groups.len(), SHARING_LOOKBACK + 2);
        assert_eq!(groups[SHARING_LOOKBACK + 1], vec![SHARING_LOOKBACK + 1]);
        // One group fewer between them and the copy is found.
        far.remove(1);
        assert_eq!(shared_stanzas(&far)[0], vec![0, SHARING_LOOKBACK]);
    }
}
