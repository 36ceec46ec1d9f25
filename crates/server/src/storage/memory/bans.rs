//! Server-wide bans in memory.

use async_trait::async_trait;

use super::{read, write, MemoryStorage};
use crate::storage::{Ban, BanStore, StorageError, StorageResult};

#[async_trait]
impl BanStore for MemoryStorage {
    async fn bans(&self, now: i64) -> StorageResult<Vec<Ban>> {
        Ok(read(&self.bans)
            .values()
            .filter(|b| b.until.is_none_or(|until| until > now))
            .cloned()
            .collect())
    }

    async fn add_ban(&self, ban: &Ban) -> StorageResult<()> {
        write(&self.bans).insert(ban.target.clone(), ban.clone());
        Ok(())
    }

    async fn remove_ban(&self, target: &str) -> StorageResult<()> {
        write(&self.bans)
            .remove(target)
            .map(|_| ())
            .ok_or(StorageError::NotFound)
    }
}
