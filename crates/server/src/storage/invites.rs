//! Invitations (XEP-0401, XEP-0445, `salon invite create`): a token that lets someone make an
//! account, a number of times until an expiry, and the inviter the new account is made a
//! contact of (XEP-0379).

use async_trait::async_trait;

use super::StorageResult;

/// One invitation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invite {
    /// The secret in the link; unique.
    pub token: String,
    /// The host the account is made on.
    pub domain: String,
    /// The bare JID of the account that invited, if an account did (not the operator's CLI):
    /// the new account and the inviter become contacts.
    pub inviter: Option<String>,
    /// Accounts it may still make.
    pub uses_left: u32,
    /// Unix seconds it was made, and at which it stops working.
    pub created: i64,
    pub expires: i64,
    /// The accounts it makes become administrators (`salon invite create --admin`).
    pub admin: bool,
}

impl Invite {
    /// Whether it still makes an account at `now`.
    pub fn usable(&self, now: i64) -> bool {
        self.uses_left > 0 && now < self.expires
    }
}

#[async_trait]
pub trait InviteStore: Send + Sync {
    /// `AlreadyExists` if the token is taken.
    async fn create_invite(&self, invite: &Invite) -> StorageResult<()>;
    /// The invitation, usable or not (a page says which).
    async fn invite(&self, token: &str) -> StorageResult<Option<Invite>>;
    /// Takes one use if the invitation is usable at `now`, atomically; the invitation as it was
    /// before, or `None` when it is unknown, expired or used up.
    async fn take_invite_use(&self, token: &str, now: i64) -> StorageResult<Option<Invite>>;
    /// Gives back a use taken for an account that could not be made.
    async fn return_invite_use(&self, token: &str) -> StorageResult<()>;
    /// Invitations of `domain`, newest first.
    async fn invites(&self, domain: &str) -> StorageResult<Vec<Invite>>;
    /// `NotFound` if there was none.
    async fn delete_invite(&self, token: &str) -> StorageResult<()>;
}
