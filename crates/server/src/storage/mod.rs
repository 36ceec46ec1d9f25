//! The storage trait every backend implements (SQLite by default, PostgreSQL later). It is shaped
//! by what the feature modules need, not by tables: accounts with SCRAM credentials (RFC 5802),
//! rosters (RFC 6121 §2), offline messages (RFC 6121 §8.5.2.2), vCards (XEP-0054), last
//! activity (XEP-0012), MUC rooms and archives, and HTTP upload records (XEP-0363).
//!
//! Addresses are passed as (localpart, domain) pairs of already-validated, normalised strings.
//!
//! Persistent backends refuse roster, offline, vCard and last-activity writes for an address
//! that has no account (`NotFound`), so data never outlives its account. The in-memory backend
//! used for anonymous hosts accepts them: anonymous visitors have no account record, they exist
//! while online, and their data is dropped with `delete_account` when they leave. Rosters are
//! returned sorted by contact JID.

use async_trait::async_trait;

/// Errors a backend reports. Features turn them into `<internal-server-error/>` and log them.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("account already exists")]
    AlreadyExists,
    #[error("account does not exist")]
    NotFound,
    #[error("storage backend: {0}")]
    Backend(String),
}

pub type StorageResult<T> = Result<T, StorageError>;

/// The salted keys of RFC 5802 §3 for one hash function. The password itself is never stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScramKeys {
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

/// Everything needed to verify a password with SCRAM-SHA-1, SCRAM-SHA-256 or PLAIN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub sha1: ScramKeys,
    pub sha256: ScramKeys,
}

/// RFC 6121 §2.1.2.5 subscription states as stored on the roster item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Subscription {
    #[default]
    None,
    To,
    From,
    Both,
    /// Only in roster pushes for a removed item; never stored.
    Remove,
}

impl Subscription {
    pub fn as_str(self) -> &'static str {
        match self {
            Subscription::None => "none",
            Subscription::To => "to",
            Subscription::From => "from",
            Subscription::Both => "both",
            Subscription::Remove => "remove",
        }
    }

    pub fn parse(text: &str) -> Option<Subscription> {
        Some(match text {
            "none" => Subscription::None,
            "to" => Subscription::To,
            "from" => Subscription::From,
            "both" => Subscription::Both,
            "remove" => Subscription::Remove,
            _ => return None,
        })
    }

    /// The user receives the contact's presence.
    pub fn has_to(self) -> bool {
        matches!(self, Subscription::To | Subscription::Both)
    }

    /// The contact receives the user's presence.
    pub fn has_from(self) -> bool {
        matches!(self, Subscription::From | Subscription::Both)
    }

    /// RFC 6121 Appendix A transitions: the state with the `to` half added or removed…
    pub fn with_to(self) -> Subscription {
        match self {
            Subscription::None => Subscription::To,
            Subscription::From => Subscription::Both,
            other => other,
        }
    }

    pub fn without_to(self) -> Subscription {
        match self {
            Subscription::To => Subscription::None,
            Subscription::Both => Subscription::From,
            other => other,
        }
    }

    /// …and with the `from` half added or removed.
    pub fn with_from(self) -> Subscription {
        match self {
            Subscription::None => Subscription::From,
            Subscription::To => Subscription::Both,
            other => other,
        }
    }

    pub fn without_from(self) -> Subscription {
        match self {
            Subscription::From => Subscription::None,
            Subscription::Both => Subscription::To,
            other => other,
        }
    }
}

/// One contact on a user's roster (RFC 6121 §2.1.2).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RosterItem {
    /// The contact's bare JID, normalised.
    pub jid: String,
    pub name: Option<String>,
    pub subscription: Subscription,
    /// The user has sent a subscription request not yet answered ("pending out").
    pub ask_out: bool,
    /// The contact has asked to subscribe and the user has not answered ("pending in"); the
    /// stored request is re-delivered at each login (RFC 6121 §3.1.3).
    pub pending_in: bool,
    /// The user approved the contact's subscription before it was asked for ("pre-approved",
    /// RFC 6121 §3.4); the next request from the contact is answered at once.
    pub approved: bool,
    pub groups: Vec<String>,
}

/// A stanza kept for an offline user, already serialised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OfflineMessage {
    pub stanza: String,
    /// Seconds since the Unix epoch at which the server received it (for XEP-0203 delay).
    pub received_at: i64,
}

/// What XEP-0012 reports for an offline account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastActivity {
    /// Seconds since the Unix epoch of the last logout.
    pub at: i64,
    pub status: String,
}

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

/// A file stored by the HTTP File Upload service (XEP-0363), recorded once its PUT completed.
/// Records do not belong to an account: anonymous visitors have none, and a visitor's file must
/// still be found and deleted when it expires, after a restart too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadRecord {
    /// The slot id: the file's name on disk and the first segment of its URL.
    pub id: String,
    /// Bare JID of the uploader.
    pub owner: String,
    /// What the daily quota is counted by: the bare JID for accounts, the client address for
    /// anonymous visitors.
    pub quota_key: String,
    /// The client's file name, sanitised; only used in the URL and `Content-Disposition`.
    pub filename: String,
    pub content_type: String,
    /// Bytes.
    pub size: u64,
    /// Seconds since the Unix epoch at which the upload completed.
    pub created_at: i64,
    /// Seconds since the Unix epoch from which the file is gone; `None`: kept until deleted.
    pub expires_at: Option<i64>,
}

#[async_trait]
pub trait Storage: Send + Sync + 'static {
    // Accounts.
    async fn create_account(
        &self,
        user: &str,
        domain: &str,
        credentials: &Credentials,
    ) -> StorageResult<()>;
    async fn set_credentials(
        &self,
        user: &str,
        domain: &str,
        credentials: &Credentials,
    ) -> StorageResult<()>;
    /// Removes the account and everything stored for it (roster, offline, vCard, last,
    /// its message archive).
    async fn delete_account(&self, user: &str, domain: &str) -> StorageResult<()>;
    async fn credentials(&self, user: &str, domain: &str) -> StorageResult<Option<Credentials>>;
    /// Bare JIDs (`user@domain`) of all accounts, or only those of `domain`, sorted.
    async fn list_accounts(&self, domain: Option<&str>) -> StorageResult<Vec<String>>;

    // Rosters.
    async fn roster(&self, user: &str, domain: &str) -> StorageResult<Vec<RosterItem>>;
    async fn roster_item(
        &self,
        user: &str,
        domain: &str,
        contact: &str,
    ) -> StorageResult<Option<RosterItem>>;
    /// Inserts or replaces the item for `item.jid`.
    async fn put_roster_item(
        &self,
        user: &str,
        domain: &str,
        item: &RosterItem,
    ) -> StorageResult<()>;
    async fn remove_roster_item(
        &self,
        user: &str,
        domain: &str,
        contact: &str,
    ) -> StorageResult<()>;

    // Blocking Command (XEP-0191): addresses as normalised JID strings.
    /// The addresses the user blocks, sorted.
    async fn blocklist(&self, user: &str, domain: &str) -> StorageResult<Vec<String>>;
    /// Adds addresses to the blocklist; those already there are left alone. NotFound without
    /// an account.
    async fn block(&self, user: &str, domain: &str, jids: &[String]) -> StorageResult<()>;
    /// Removes addresses from the blocklist (absent ones are ignored); all of them when `jids`
    /// is `None`.
    async fn unblock(&self, user: &str, domain: &str, jids: Option<&[String]>)
        -> StorageResult<()>;

    // Private XML storage (XEP-0049): one serialised element per namespace.
    async fn private_xml(
        &self,
        user: &str,
        domain: &str,
        namespace: &str,
    ) -> StorageResult<Option<String>>;
    /// Stores or replaces the element for `namespace`. NotFound without an account.
    async fn set_private_xml(
        &self,
        user: &str,
        domain: &str,
        namespace: &str,
        xml: &str,
    ) -> StorageResult<()>;
    /// How many namespaces the user has stored (to bound it).
    async fn count_private_xml(&self, user: &str, domain: &str) -> StorageResult<usize>;

    // Offline messages.
    async fn store_offline(
        &self,
        user: &str,
        domain: &str,
        message: &OfflineMessage,
    ) -> StorageResult<()>;
    /// Number of messages held for the user (to enforce a per-user cap).
    async fn count_offline(&self, user: &str, domain: &str) -> StorageResult<usize>;
    /// Returns and deletes all held messages, oldest first.
    async fn take_offline(&self, user: &str, domain: &str) -> StorageResult<Vec<OfflineMessage>>;

    // vCard-temp (XEP-0054), stored as the serialised `<vCard/>` element.
    async fn vcard(&self, user: &str, domain: &str) -> StorageResult<Option<String>>;
    async fn set_vcard(&self, user: &str, domain: &str, vcard: &str) -> StorageResult<()>;

    // Last activity (XEP-0012).
    async fn last_activity(&self, user: &str, domain: &str) -> StorageResult<Option<LastActivity>>;
    async fn set_last_activity(
        &self,
        user: &str,
        domain: &str,
        activity: &LastActivity,
    ) -> StorageResult<()>;

    // Persistent multi-user chat rooms (XEP-0045): an opaque serialised record per room, owned
    // by the MUC module (configuration, affiliations, registered nicks, subject).
    async fn save_room(&self, room: &str, record: &str) -> StorageResult<()>;
    async fn delete_room(&self, room: &str) -> StorageResult<()>;
    /// All rooms of a MUC service domain: (room bare JID, record), sorted by JID.
    async fn rooms(&self, service: &str) -> StorageResult<Vec<(String, String)>>;

    // Message archives (XEP-0313), keyed by the archive's bare JID (a room or an account).
    /// Appends a message; durable when this returns. `id` must be new in the archive.
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
    /// Deletes a whole archive (room destroyed, account deleted).
    async fn archive_delete(&self, archive: &str) -> StorageResult<()>;

    // HTTP File Upload (XEP-0363) records, keyed by slot id.
    /// Records a completed upload; durable when this returns. `AlreadyExists` if the id is taken.
    async fn upload_add(&self, record: &UploadRecord) -> StorageResult<()>;
    async fn upload_get(&self, id: &str) -> StorageResult<Option<UploadRecord>>;
    /// Bytes of the uploads with this `quota_key` created at or after `since` (seconds).
    async fn upload_usage(&self, quota_key: &str, since: i64) -> StorageResult<u64>;
    /// Bytes of all recorded uploads.
    async fn upload_total(&self) -> StorageResult<u64>;
    /// Up to `limit` records whose `expires_at` is at or before `now`, soonest-expiring first.
    async fn upload_expired(&self, now: i64, limit: usize) -> StorageResult<Vec<UploadRecord>>;
    /// Removes a record; removing one that is not there is not an error.
    async fn upload_delete(&self, id: &str) -> StorageResult<()>;

    /// Makes sure everything written so far is durable; called on shutdown.
    async fn flush(&self) -> StorageResult<()>;
}
pub mod memory;
