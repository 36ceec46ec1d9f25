//! Message archives (XEP-0313, paged with XEP-0059) of rooms and accounts, keyed by the
//! archive's bare JID, each an ordered log of messages with their XEP-0359 stanza-ids.
//!
//! Archives are ordered by append order; timestamps only filter. A query's page is taken from
//! the "window": the messages matching `with`/`start`/`end` that lie strictly after `after_id`
//! and strictly before `before_id` (both optional, both allowed at once). `complete` is true
//! when the window holds no message beyond the page, i.e. the page was not cut short by
//! `limit`; with only one of `after_id`/`before_id` given that is exactly "nothing further in
//! the paging direction". `count` ignores `after_id`, `before_id` and `limit`. An `after_id` or
//! `before_id` that is not in the archive (even if the archive does not exist) is
//! [`StorageError::NotFound`](super::StorageError::NotFound); one that is in the archive but
//! does not match the filters still marks a position.

use async_trait::async_trait;

use super::StorageResult;

/// One archived message (XEP-0313), in a per-archive (room or account) ordered log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchivedMessage {
    /// The XEP-0359 stanza-id given to the message, unique within the archive.
    pub id: String,
    /// Microseconds since the Unix epoch at which the server archived it.
    pub timestamp: i64,
    /// The bare JID the message is with (for a room: the sender's occupant JID; for an
    /// account: the other party's bare JID), used by the `with` filter.
    pub with: String,
    /// The message as serialised XML.
    pub stanza: String,
}

/// A XEP-0313 query with XEP-0059 paging, already validated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArchiveQuery {
    pub with: Option<String>,
    /// Inclusive bounds, in microseconds since the epoch.
    pub start: Option<i64>,
    pub end: Option<i64>,
    /// Only messages after / before the message with this id (exclusive).
    pub after_id: Option<String>,
    pub before_id: Option<String>,
    /// Page size.
    pub limit: usize,
    /// Take the page from the newest end (RSM `<before/>`), still returned oldest first.
    pub from_end: bool,
}

/// One page of results, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArchivePage {
    pub messages: Vec<ArchivedMessage>,
    /// True when no message matching the query lies beyond this page in the paging direction.
    pub complete: bool,
    /// Total matching messages, ignoring paging (RSM `<count/>`).
    pub count: usize,
}

#[async_trait]
pub trait ArchiveStore: Send + Sync {
    /// Appends a message; durable when this returns. `id` must be new in the archive
    /// (`AlreadyExists` otherwise).
    async fn archive_append(&self, archive: &str, message: &ArchivedMessage) -> StorageResult<()>;
    /// Appends several messages, each to its archive, in order; durable when this returns.
    /// Backends write them in one go where they can, so busy rooms cost one disk sync per batch.
    async fn archive_append_many(
        &self,
        messages: &[(String, ArchivedMessage)],
    ) -> StorageResult<()> {
        for (archive, message) in messages {
            self.archive_append(archive, message).await?;
        }
        Ok(())
    }
    /// Writes a message to the backend's journal, if it keeps one: a log that survives the
    /// process being killed from the moment this returns `Ok(Some(record))`, and from which
    /// the backend puts the message into the archive on its next start unless
    /// [`archive_append_blocking`](Self::archive_append_blocking) did so first (given the
    /// record's number). The archive writer calls it for every append, in append order, on the
    /// appending task (a quick, blocking write), so nobody waits for the archive's own commit.
    /// `Ok(None)`: no journal; the message is durable only once appended.
    fn archive_journal(
        &self,
        _archive: &str,
        _message: &ArchivedMessage,
    ) -> StorageResult<Option<u64>> {
        Ok(None)
    }
    /// [`archive_append_many`](Self::archive_append_many) on the calling thread, blocking it
    /// until the messages are stored: the archive writer calls it from a thread of its own
    /// (inside the runtime's context), so a backend with a synchronous path (SQLite's own
    /// connection) spares every batch the hand-offs to the runtime and back. `journaled` is the
    /// last journal record among `messages`, which the backend records with them. The default
    /// runs the async version to completion on that thread.
    fn archive_append_blocking(
        &self,
        messages: &[(String, ArchivedMessage)],
        _journaled: Option<u64>,
    ) -> StorageResult<()> {
        tokio::runtime::Handle::current().block_on(self.archive_append_many(messages))
    }
    async fn archive_query(
        &self,
        archive: &str,
        query: &ArchiveQuery,
    ) -> StorageResult<ArchivePage>;
    /// Looks a message up by its stanza-id.
    async fn archive_get(&self, archive: &str, id: &str) -> StorageResult<Option<ArchivedMessage>>;
    /// Replaces the stored stanza of a message (XEP-0425 tombstone); NotFound if absent.
    async fn archive_replace(&self, archive: &str, id: &str, stanza: &str) -> StorageResult<()>;
    /// Deletes messages older than `before` (microseconds) from every archive on `domain` (the
    /// domain part of the archive's JID: a MUC service or a user host); returns how many.
    async fn archive_expire(&self, domain: &str, before: i64) -> StorageResult<usize>;
    /// Bounds one archive: deletes its messages older than `before` (microseconds) and all but
    /// the newest `keep` (in append order); returns how many went.
    async fn archive_trim(&self, archive: &str, keep: usize, before: i64) -> StorageResult<usize>;
    /// Bounds one archive's size: deletes its oldest messages (in append order) until the
    /// stored stanzas of those left add up to at most `max_bytes` (UTF-8 bytes); returns how
    /// many went.
    async fn archive_trim_bytes(&self, archive: &str, max_bytes: u64) -> StorageResult<usize>;
    /// Deletes a whole archive (room destroyed, account deleted).
    async fn archive_delete(&self, archive: &str) -> StorageResult<()>;
}
