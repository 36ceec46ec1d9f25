//! Private XML storage (XEP-0049) in memory, by namespace.

use async_trait::async_trait;

use super::MemoryStorage;
use crate::storage::{PrivateStore, StorageResult};

#[async_trait]
impl PrivateStore for MemoryStorage {
    async fn private_xml(
        &self,
        user: &str,
        domain: &str,
        namespace: &str,
    ) -> StorageResult<Option<String>> {
        Ok(self
            .with_entry(user, domain, |entry| entry.private.get(namespace).cloned())
            .flatten())
    }

    async fn set_private_xml(
        &self,
        user: &str,
        domain: &str,
        namespace: &str,
        xml: &str,
    ) -> StorageResult<()> {
        self.update_entry(user, domain, true, |entry| {
            entry.private.insert(namespace.to_owned(), xml.to_owned());
        });
        Ok(())
    }

    async fn count_private_xml(&self, user: &str, domain: &str) -> StorageResult<usize> {
        Ok(self
            .with_entry(user, domain, |entry| entry.private.len())
            .unwrap_or(0))
    }
}
