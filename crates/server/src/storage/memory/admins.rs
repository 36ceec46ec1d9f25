//! Administrators made by an invitation, a flag in the account's entry.

use async_trait::async_trait;

use super::MemoryStorage;
use crate::storage::{AdminStore, StorageError, StorageResult};

#[async_trait]
impl AdminStore for MemoryStorage {
    async fn set_admin(&self, user: &str, domain: &str, admin: bool) -> StorageResult<()> {
        self.update_entry(user, domain, false, |entry| {
            if entry.credentials.is_none() {
                return Err(StorageError::NotFound);
            }
            entry.admin = admin;
            Ok(())
        })
        .unwrap_or(Err(StorageError::NotFound))
    }

    async fn is_stored_admin(&self, user: &str, domain: &str) -> StorageResult<bool> {
        Ok(self
            .with_entry(user, domain, |entry| {
                entry.admin && entry.credentials.is_some()
            })
            .unwrap_or(false))
    }
}
