//! Administrators kept in storage: accounts made through an invitation created with
//! `salon invite create --admin`. The XEP-0133 commands accept them alongside the `admins`
//! list of the configuration. The flag goes with its account.

use async_trait::async_trait;

use super::StorageResult;

#[async_trait]
pub trait AdminStore: Send + Sync {
    /// Makes `user@domain` an administrator or no longer one. `NotFound` without an account.
    async fn set_admin(&self, user: &str, domain: &str, admin: bool) -> StorageResult<()>;
    /// Whether the account `user@domain` is flagged as an administrator (`false` without one).
    async fn is_stored_admin(&self, user: &str, domain: &str) -> StorageResult<bool>;
}
