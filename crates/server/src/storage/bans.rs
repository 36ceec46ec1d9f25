//! Server-wide bans (`salon ban`): addresses, networks and accounts refused at connection and
//! login. A target is stored as the operator's normalised text (an IP address, a network in
//! CIDR notation, or a bare JID); what it matches is the server's business (`crate::bans`).

use async_trait::async_trait;

use super::StorageResult;

/// One ban.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ban {
    pub target: String,
    /// Unix seconds at which the ban was made.
    pub created: i64,
    /// Unix seconds at which it ends; `None`: until lifted.
    pub until: Option<i64>,
}

#[async_trait]
pub trait BanStore: Send + Sync {
    /// The bans in force at `now` (unix seconds), sorted by target.
    async fn bans(&self, now: i64) -> StorageResult<Vec<Ban>>;
    /// Adds a ban, replacing one on the same target.
    async fn add_ban(&self, ban: &Ban) -> StorageResult<()>;
    /// Lifts the ban on `target`; `NotFound` if there is none (an expired one included).
    async fn remove_ban(&self, target: &str) -> StorageResult<()>;
}
