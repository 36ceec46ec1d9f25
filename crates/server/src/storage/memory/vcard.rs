//! vCard-temp (XEP-0054) in memory.

use async_trait::async_trait;

use super::MemoryStorage;
use crate::storage::{StorageResult, VcardStore};

#[async_trait]
impl VcardStore for MemoryStorage {
    async fn vcard(&self, user: &str, domain: &str) -> StorageResult<Option<String>> {
        Ok(self
            .with_entry(user, domain, |entry| entry.vcard.clone())
            .flatten())
    }

    async fn set_vcard(&self, user: &str, domain: &str, vcard: &str) -> StorageResult<()> {
        self.update_entry(user, domain, true, |entry| {
            entry.vcard = Some(vcard.to_owned());
        });
        Ok(())
    }
}
