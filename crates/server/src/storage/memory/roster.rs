//! Rosters (RFC 6121 §2) in memory, sorted by contact JID.

use async_trait::async_trait;

use super::MemoryStorage;
use crate::storage::rules::check_roster_item;
use crate::storage::{RosterItem, RosterStore, StorageResult};

#[async_trait]
impl RosterStore for MemoryStorage {
    async fn roster(&self, user: &str, domain: &str) -> StorageResult<Vec<RosterItem>> {
        Ok(self
            .with_entry(user, domain, |entry| {
                entry.roster.values().cloned().collect()
            })
            .unwrap_or_default())
    }

    async fn roster_item(
        &self,
        user: &str,
        domain: &str,
        contact: &str,
    ) -> StorageResult<Option<RosterItem>> {
        Ok(self
            .with_entry(user, domain, |entry| entry.roster.get(contact).cloned())
            .flatten())
    }

    async fn put_roster_item(
        &self,
        user: &str,
        domain: &str,
        item: &RosterItem,
    ) -> StorageResult<()> {
        check_roster_item(item)?;
        self.update_entry(user, domain, true, |entry| {
            entry.roster.insert(item.jid.clone(), item.clone());
        });
        Ok(())
    }

    async fn remove_roster_item(
        &self,
        user: &str,
        domain: &str,
        contact: &str,
    ) -> StorageResult<()> {
        // Removing what is not there is not an error.
        self.update_entry(user, domain, false, |entry| {
            entry.roster.remove(contact);
        });
        Ok(())
    }
}
