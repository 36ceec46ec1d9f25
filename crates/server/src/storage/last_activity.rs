//! Last activity (XEP-0012): when an account last logged out, and with which status.

use async_trait::async_trait;

use super::StorageResult;

/// What XEP-0012 reports for an offline account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastActivity {
    /// Seconds since the Unix epoch of the last logout.
    pub at: i64,
    pub status: String,
}

#[async_trait]
pub trait LastActivityStore: Send + Sync {
    async fn last_activity(&self, user: &str, domain: &str) -> StorageResult<Option<LastActivity>>;
    async fn set_last_activity(
        &self,
        user: &str,
        domain: &str,
        activity: &LastActivity,
    ) -> StorageResult<()>;
}
