//! Last activity (XEP-0012) in memory.

use async_trait::async_trait;

use super::MemoryStorage;
use crate::storage::{LastActivity, LastActivityStore, StorageResult};

#[async_trait]
impl LastActivityStore for MemoryStorage {
    async fn last_activity(&self, user: &str, domain: &str) -> StorageResult<Option<LastActivity>> {
        Ok(self
            .with_entry(user, domain, |entry| entry.last.clone())
            .flatten())
    }

    async fn set_last_activity(
        &self,
        user: &str,
        domain: &str,
        activity: &LastActivity,
    ) -> StorageResult<()> {
        self.update_entry(user, domain, true, |entry| {
            entry.last = Some(activity.clone());
        });
        Ok(())
    }
}
