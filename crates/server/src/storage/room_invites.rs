//! Room invite links (`salon room invite`, the room's ad-hoc command): a token that admits
//! people to one members-only room, a number of times until an expiry. Kept apart from account
//! invitations so that the MUC service sees its own links only.

use async_trait::async_trait;

use super::StorageResult;

/// One room invite link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomInvite {
    /// The secret in the link; unique.
    pub token: String,
    /// The room's bare JID.
    pub room: String,
    /// Who made it: an owner's bare JID, or `None` for the operator's CLI.
    pub created_by: Option<String>,
    /// Joins it may still admit.
    pub uses_left: u32,
    /// Unix seconds it was made, and at which it stops working.
    pub created: i64,
    pub expires: i64,
}

impl RoomInvite {
    /// Whether it still admits someone at `now`.
    pub fn usable(&self, now: i64) -> bool {
        self.uses_left > 0 && now < self.expires
    }
}

#[async_trait]
pub trait RoomInviteStore: Send + Sync {
    /// `AlreadyExists` if the token is taken.
    async fn create_room_invite(&self, invite: &RoomInvite) -> StorageResult<()>;
    /// Takes one use of `room`'s link `token` if it is usable at `now`, atomically; the link as
    /// it was before, or `None` when it is unknown, another room's, expired or used up.
    async fn take_room_invite_use(
        &self,
        room: &str,
        token: &str,
        now: i64,
    ) -> StorageResult<Option<RoomInvite>>;
    /// Links of `room`, newest first, usable or not.
    async fn room_invites(&self, room: &str) -> StorageResult<Vec<RoomInvite>>;
    /// `NotFound` if `room` has no such link.
    async fn delete_room_invite(&self, room: &str, token: &str) -> StorageResult<()>;
}
