//! Blocklists of the blocking command (XEP-0191) in memory, sorted.

use async_trait::async_trait;

use super::MemoryStorage;
use crate::storage::{BlocklistStore, StorageResult};

#[async_trait]
impl BlocklistStore for MemoryStorage {
    async fn blocklist(&self, user: &str, domain: &str) -> StorageResult<Vec<String>> {
        Ok(self
            .with_entry(user, domain, |entry| {
                entry.blocklist.iter().cloned().collect()
            })
            .unwrap_or_default())
    }

    async fn block(&self, user: &str, domain: &str, jids: &[String]) -> StorageResult<()> {
        // Like the other per-address data here, a visitor's blocklist needs no account.
        self.update_entry(user, domain, true, |entry| {
            entry.blocklist.extend(jids.iter().cloned());
        });
        Ok(())
    }

    async fn unblock(
        &self,
        user: &str,
        domain: &str,
        jids: Option<&[String]>,
    ) -> StorageResult<()> {
        self.update_entry(user, domain, false, |entry| match jids {
            Some(jids) => {
                for jid in jids {
                    entry.blocklist.remove(jid);
                }
            }
            None => entry.blocklist.clear(),
        });
        Ok(())
    }
}
