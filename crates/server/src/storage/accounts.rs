//! Accounts and their SCRAM credentials (RFC 5802 §3, used for the SASL mechanisms of
//! RFC 6120 §6): created with `salon user add`, changed and deleted in-band (XEP-0077).

use async_trait::async_trait;

use super::StorageResult;

/// The salted keys of RFC 5802 §3 for one hash function. The password itself is never stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScramKeys {
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

/// Everything needed to verify a password with SCRAM-SHA-1, SCRAM-SHA-256 or PLAIN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub sha1: ScramKeys,
    pub sha256: ScramKeys,
}

#[async_trait]
pub trait AccountStore: Send + Sync {
    /// `AlreadyExists` if the account is there already.
    async fn create_account(
        &self,
        user: &str,
        domain: &str,
        credentials: &Credentials,
    ) -> StorageResult<()>;
    /// `NotFound` without an account.
    async fn set_credentials(
        &self,
        user: &str,
        domain: &str,
        credentials: &Credentials,
    ) -> StorageResult<()>;
    /// Removes the account and everything stored for it (roster, blocklist, private XML,
    /// offline, vCard, last activity, its message archive). `NotFound` if there was no account.
    async fn delete_account(&self, user: &str, domain: &str) -> StorageResult<()>;
    async fn credentials(&self, user: &str, domain: &str) -> StorageResult<Option<Credentials>>;
    /// Bare JIDs (`user@domain`) of all accounts, or only those of `domain`, sorted.
    async fn list_accounts(&self, domain: Option<&str>) -> StorageResult<Vec<String>>;
}
