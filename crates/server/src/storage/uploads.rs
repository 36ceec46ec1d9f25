//! Records of the files stored by the HTTP File Upload service (XEP-0363), keyed by slot id,
//! for quotas and expiry.

use async_trait::async_trait;

use super::StorageResult;

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
pub trait UploadStore: Send + Sync {
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
}
