//! Offline messages (RFC 6121 §8.5.2.2): stanzas held for an account while it has no session,
//! delivered with a XEP-0203 delay at its next login.

use async_trait::async_trait;

use super::StorageResult;

/// A stanza kept for an offline user, already serialised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OfflineMessage {
    pub stanza: String,
    /// Seconds since the Unix epoch at which the server received it (for XEP-0203 delay).
    pub received_at: i64,
}

#[async_trait]
pub trait OfflineStore: Send + Sync {
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
}
