//! Message archives (XEP-0313) in SQLite: each message stored once in `archive_stanzas`, under
//! an `AUTOINCREMENT` sequence (append order), and listed in each archive that holds it by a
//! small `archive_entries` row clustered by (archive, seq); a 1:1 message's two copies (the
//! sender's and the recipient's archive) share one stored stanza when they are written one
//! after the other in the same batch. Appends go through the connection of
//! `archive_append.rs`; queries and deletions through the pool. The paging rules are those of
//! `salon_server::storage::archive`, with the page cut by `rules::archive_page`. Archives do
//! not reference accounts: an archive is named by a bare JID that may be a room or an account.
//! Entries name their archive and their `with` by number (`archive_addresses`, migration
//! `20261207000001`); statements look the number up with [`ADDRESS_OF`]'s subquery, which SQLite
//! runs once and searches the keys with.

use async_trait::async_trait;
use salon_server::storage::rules::{archive_page, page_fetch_size};
use salon_server::storage::{
    ArchivePage, ArchiveQuery, ArchiveStore, ArchivedMessage, StorageError, StorageResult,
};
use sqlx::sqlite::{Sqlite, SqliteConnection, SqliteRow};
use sqlx::{QueryBuilder, Row as _};

use super::SqliteStorage;
use crate::errors::{corrupt, db_error};

/// Columns of an [`ArchivedMessage`], for [`archived_from_row`].
const ARCHIVE_COLUMNS: &str = "e.id, e.timestamp, w.jid AS with_jid, s.stanza";
/// The entries with their stored stanzas and `with` addresses, for [`ARCHIVE_COLUMNS`].
const ARCHIVE_JOIN: &str = "archive_entries AS e JOIN archive_stanzas AS s ON s.seq = e.body \
                            JOIN archive_addresses AS w ON w.id = e.with_jid";
/// The number of the address bound next (NULL, which matches nothing, if it has none).
const ADDRESS_OF: &str = "(SELECT id FROM archive_addresses WHERE jid = ";

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
    builder
        .push(" WHERE e.archive = ")
        .push(ADDRESS_OF)
        .push_bind(archive)
        .push(")");
    if let Some(with) = &query.with {
        builder
            .push(" AND e.with_jid = ")
            .push(ADDRESS_OF)
            .push_bind(with.as_str())
            .push(")");
    }
    if let Some(start) = query.start {
        builder.push(" AND e.timestamp >= ").push_bind(start);
    }
    if let Some(end) = query.end {
        builder.push(" AND e.timestamp <= ").push_bind(end);
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
    let seq: Option<i64> = sqlx::query_scalar(&format!(
        "SELECT seq FROM archive_entries WHERE archive = {ADDRESS_OF}?1) AND id = ?2"
    ))
    .bind(archive)
    .bind(id)
    .fetch_optional(conn)
    .await
    .map_err(db_error)?;
    seq.map(Some).ok_or(StorageError::NotFound)
}

#[async_trait]
impl ArchiveStore for SqliteStorage {
    async fn archive_append(&self, archive: &str, message: &ArchivedMessage) -> StorageResult<()> {
        self.archive_append_many(&[(archive.to_string(), message.clone())])
            .await
    }

    async fn archive_append_many(
        &self,
        messages: &[(String, ArchivedMessage)],
    ) -> StorageResult<()> {
        let appends = self.archive_appends.clone();
        let messages = messages.to_vec();
        tokio::task::spawn_blocking(move || appends.append(&messages, None))
            .await
            .map_err(|e| StorageError::Backend(format!("archive append: {e}")))?
    }

    fn archive_journal(
        &self,
        archive: &str,
        message: &ArchivedMessage,
    ) -> StorageResult<Option<u64>> {
        match &self.archive_journal {
            Some(journal) => journal.write(archive, message).map(Some),
            None => Ok(None),
        }
    }

    fn archive_append_blocking(
        &self,
        messages: &[(String, ArchivedMessage)],
        journaled: Option<u64>,
    ) -> StorageResult<()> {
        let appended = self.archive_appends.append(messages, journaled);
        if let (Some(journal), Some(record)) = (&self.archive_journal, journaled) {
            // Refused duplicates aside, the batch is in: its records need not be kept.
            if matches!(appended, Ok(()) | Err(StorageError::AlreadyExists)) {
                journal.applied(record);
            }
        }
        appended
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

        let unfiltered = query.with.is_none() && query.start.is_none() && query.end.is_none();
        let count: i64 = if unfiltered {
            // Kept by triggers: counting a large archive's entries would take longer than
            // the page.
            sqlx::query_scalar(&format!(
                "SELECT messages FROM archive_counts WHERE archive = {ADDRESS_OF}?1)"
            ))
            .bind(archive)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?
            .unwrap_or(0)
        } else {
            let mut count = QueryBuilder::new("SELECT COUNT(*) FROM archive_entries AS e");
            push_archive_filters(&mut count, archive, query);
            count
                .build_query_scalar()
                .fetch_one(&mut *tx)
                .await
                .map_err(db_error)?
        };
        let count = usize::try_from(count).map_err(|e| corrupt("archive message count", e))?;

        let wanted = i64::try_from(page_fetch_size(query)).unwrap_or(i64::MAX);
        let mut page = QueryBuilder::new(format!("SELECT {ARCHIVE_COLUMNS} FROM {ARCHIVE_JOIN}"));
        push_archive_filters(&mut page, archive, query);
        if let Some(after) = after {
            page.push(" AND e.seq > ").push_bind(after);
        }
        if let Some(before) = before {
            page.push(" AND e.seq < ").push_bind(before);
        }
        page.push(if query.from_end {
            " ORDER BY e.seq DESC LIMIT "
        } else {
            " ORDER BY e.seq LIMIT "
        })
        .push_bind(wanted);
        let rows = page.build().fetch_all(&mut *tx).await.map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;

        let fetched = rows
            .iter()
            .map(archived_from_row)
            .collect::<StorageResult<Vec<_>>>()?;
        Ok(archive_page(query, fetched, count))
    }

    async fn archive_get(&self, archive: &str, id: &str) -> StorageResult<Option<ArchivedMessage>> {
        let row = sqlx::query(&format!(
            "SELECT {ARCHIVE_COLUMNS} FROM {ARCHIVE_JOIN} \
             WHERE e.archive = {ADDRESS_OF}?1) AND e.id = ?2"
        ))
        .bind(archive)
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.as_ref().map(archived_from_row).transpose()
    }

    async fn archive_replace(&self, archive: &str, id: &str, stanza: &str) -> StorageResult<()> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let stored: Option<(i64, i64)> = sqlx::query_as(&format!(
            "SELECT s.seq, s.refs FROM archive_entries AS e \
             JOIN archive_stanzas AS s ON s.seq = e.body \
             WHERE e.archive = {ADDRESS_OF}?1) AND e.id = ?2"
        ))
        .bind(archive)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        let (body, refs) = stored.ok_or(StorageError::NotFound)?;
        if refs <= 1 {
            sqlx::query("UPDATE archive_stanzas SET stanza = ?2 WHERE seq = ?1")
                .bind(body)
                .bind(stanza)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        } else {
            // Shared with another archive, which keeps the original: this one gets its own.
            let own = sqlx::query("INSERT INTO archive_stanzas (stanza, refs) VALUES (?1, 1)")
                .bind(stanza)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?
                .last_insert_rowid();
            sqlx::query(&format!(
                "UPDATE archive_entries SET body = ?3 WHERE archive = {ADDRESS_OF}?1) AND id = ?2"
            ))
            .bind(archive)
            .bind(id)
            .bind(own)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
            sqlx::query("UPDATE archive_stanzas SET refs = refs - 1 WHERE seq = ?1")
                .bind(body)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(())
    }

    async fn archive_expire(&self, domain: &str, before: i64) -> StorageResult<usize> {
        // Compared as a suffix, not with LIKE, whose `_` would match any character.
        let result = sqlx::query(
            "DELETE FROM archive_entries WHERE timestamp < ?1 AND archive IN \
             (SELECT id FROM archive_addresses WHERE substr(jid, -(length(?2) + 1)) = '@' || ?2)",
        )
        .bind(before)
        .bind(domain)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        usize::try_from(result.rows_affected()).map_err(|e| corrupt("expired message count", e))
    }

    async fn archive_trim(&self, archive: &str, keep: usize, before: i64) -> StorageResult<usize> {
        // The newest `keep` by sequence stay unless older than `before`; the (archive, seq)
        // key finds the cut without reading the messages.
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        if before == i64::MIN {
            // No age limit: a range of the key, where the `OR` of the general form below
            // would read the whole archive (a room does this every hundred messages). The
            // archive's count says how many of its oldest go, so the cut is found by stepping
            // over those few from the old end, not over the `keep` newest (10,000 by default)
            // from the new one; an archive within its cap is not read at all.
            let result = sqlx::query(&format!(
                "DELETE FROM archive_entries WHERE archive = {ADDRESS_OF}?1) \
                 AND (SELECT messages FROM archive_counts WHERE archive = {ADDRESS_OF}?1)) > ?2 \
                 AND seq <= COALESCE((SELECT seq FROM archive_entries \
                     WHERE archive = {ADDRESS_OF}?1) ORDER BY seq ASC LIMIT 1 OFFSET \
                     COALESCE((SELECT messages FROM archive_counts \
                               WHERE archive = {ADDRESS_OF}?1)), 0) - ?2 - 1), -1)"
            ))
            .bind(archive)
            .bind(keep)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
            return usize::try_from(result.rows_affected())
                .map_err(|e| corrupt("trimmed message count", e));
        }
        let result = sqlx::query(&format!(
            "DELETE FROM archive_entries WHERE archive = {ADDRESS_OF}?1) AND (timestamp < ?3 \
             OR seq <= COALESCE((SELECT seq FROM archive_entries WHERE archive = {ADDRESS_OF}?1) \
                       ORDER BY seq DESC LIMIT 1 OFFSET ?2), -1))"
        ))
        .bind(archive)
        .bind(keep)
        .bind(before)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        usize::try_from(result.rows_affected()).map_err(|e| corrupt("trimmed message count", e))
    }

    async fn archive_trim_bytes(&self, archive: &str, max_bytes: u64) -> StorageResult<usize> {
        // A running total of stanza bytes from the newest message back; the newest message at
        // which it passes the cap, and all older, go. One pass over the archive's rows, which
        // the room does once per tenth of the cap written (archive_bounds.rs).
        let max_bytes = i64::try_from(max_bytes).unwrap_or(i64::MAX);
        let result = sqlx::query(&format!(
            "DELETE FROM archive_entries WHERE archive = {ADDRESS_OF}?1) AND seq <= COALESCE(( \
               SELECT seq FROM ( \
                 SELECT e.seq AS seq, \
                        SUM(length(CAST(b.stanza AS BLOB))) OVER (ORDER BY e.seq DESC) AS total \
                 FROM archive_entries e JOIN archive_stanzas b ON b.seq = e.body \
                 WHERE e.archive = {ADDRESS_OF}?1)) \
               WHERE total > ?2 ORDER BY seq DESC LIMIT 1), -1)"
        ))
        .bind(archive)
        .bind(max_bytes)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        usize::try_from(result.rows_affected()).map_err(|e| corrupt("trimmed message count", e))
    }

    async fn archive_delete(&self, archive: &str) -> StorageResult<()> {
        sqlx::query(&format!(
            "DELETE FROM archive_entries WHERE archive = {ADDRESS_OF}?1)"
        ))
        .bind(archive)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }
}
