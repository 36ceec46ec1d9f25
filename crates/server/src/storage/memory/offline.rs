//! Offline messages (RFC 6121 §8.5.2.2) in memory, oldest first.

use async_trait::async_trait;

use super::MemoryStorage;
use crate::storage::{OfflineMessage, OfflineStore, StorageResult};

#[async_trait]
impl OfflineStore for MemoryStorage {
    async fn store_offline(
        &self,
        user: &str,
        domain: &str,
        message: &OfflineMessage,
    ) -> StorageResult<()> {
        self.update_entry(user, domain, true, |entry| {
            entry.offline.push(message.clone());
        });
        Ok(())
    }

    async fn count_offline(&self, user: &str, domain: &str) -> StorageResult<usize> {
        Ok(self
            .with_entry(user, domain, |entry| entry.offline.len())
            .unwrap_or(0))
    }

    async fn take_offline(&self, user: &str, domain: &str) -> StorageResult<Vec<OfflineMessage>> {
        Ok(self
            .update_entry(user, domain, false, |entry| {
                std::mem::take(&mut entry.offline)
            })
            .unwrap_or_default())
    }
}
