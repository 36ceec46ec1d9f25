//! Invitations in memory.

use async_trait::async_trait;

use super::{read, write, MemoryStorage};
use crate::storage::{Invite, InviteStore, StorageError, StorageResult};

#[async_trait]
impl InviteStore for MemoryStorage {
    async fn create_invite(&self, invite: &Invite) -> StorageResult<()> {
        let mut invites = write(&self.invites);
        if invites.contains_key(&invite.token) {
            return Err(StorageError::AlreadyExists);
        }
        invites.insert(invite.token.clone(), invite.clone());
        Ok(())
    }

    async fn invite(&self, token: &str) -> StorageResult<Option<Invite>> {
        Ok(read(&self.invites).get(token).cloned())
    }

    async fn take_invite_use(&self, token: &str, now: i64) -> StorageResult<Option<Invite>> {
        let mut invites = write(&self.invites);
        let Some(invite) = invites.get_mut(token).filter(|i| i.usable(now)) else {
            return Ok(None);
        };
        let before = invite.clone();
        invite.uses_left -= 1;
        Ok(Some(before))
    }

    async fn return_invite_use(&self, token: &str) -> StorageResult<()> {
        if let Some(invite) = write(&self.invites).get_mut(token) {
            invite.uses_left = invite.uses_left.saturating_add(1);
        }
        Ok(())
    }

    async fn invites(&self, domain: &str) -> StorageResult<Vec<Invite>> {
        let mut list: Vec<Invite> = read(&self.invites)
            .values()
            .filter(|i| i.domain == domain)
            .cloned()
            .collect();
        list.sort_by(|a, b| b.created.cmp(&a.created).then(a.token.cmp(&b.token)));
        Ok(list)
    }

    async fn delete_invite(&self, token: &str) -> StorageResult<()> {
        write(&self.invites)
            .remove(token)
            .map(|_| ())
            .ok_or(StorageError::NotFound)
    }
}
