//! Blocklists of the blocking command (XEP-0191): the addresses, as normalised JID strings, an
//! account blocks.

use async_trait::async_trait;

use super::StorageResult;

#[async_trait]
pub trait BlocklistStore: Send + Sync {
    /// The addresses the user blocks, sorted.
    async fn blocklist(&self, user: &str, domain: &str) -> StorageResult<Vec<String>>;
    /// Adds addresses to the blocklist; those already there are left alone. NotFound without
    /// an account.
    async fn block(&self, user: &str, domain: &str, jids: &[String]) -> StorageResult<()>;
    /// Removes addresses from the blocklist (absent ones are ignored); all of them when `jids`
    /// is `None`.
    async fn unblock(&self, user: &str, domain: &str, jids: Option<&[String]>)
        -> StorageResult<()>;
}
