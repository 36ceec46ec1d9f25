//! Room invite links in memory.

use async_trait::async_trait;

use super::{read, write, MemoryStorage};
use crate::storage::{RoomInvite, RoomInviteStore, StorageError, StorageResult};

#[async_trait]
impl RoomInviteStore for MemoryStorage {
    async fn create_room_invite(&self, invite: &RoomInvite) -> StorageResult<()> {
        let mut links = write(&self.room_invites);
        if links.contains_key(&invite.token) {
            return Err(StorageError::AlreadyExists);
        }
        links.insert(invite.token.clone(), invite.clone());
        Ok(())
    }

    async fn take_room_invite_use(
        &self,
        room: &str,
        token: &str,
        now: i64,
    ) -> StorageResult<Option<RoomInvite>> {
        let mut links = write(&self.room_invites);
        let Some(link) = links
            .get_mut(token)
            .filter(|l| l.room == room && l.usable(now))
        else {
            return Ok(None);
        };
        let before = link.clone();
        link.uses_left -= 1;
        Ok(Some(before))
    }

    async fn room_invites(&self, room: &str) -> StorageResult<Vec<RoomInvite>> {
        let mut list: Vec<RoomInvite> = read(&self.room_invites)
            .values()
            .filter(|l| l.room == room)
            .cloned()
            .collect();
        list.sort_by(|a, b| b.created.cmp(&a.created).then(a.token.cmp(&b.token)));
        Ok(list)
    }

    async fn delete_room_invite(&self, room: &str, token: &str) -> StorageResult<()> {
        let mut links = write(&self.room_invites);
        if links.get(token).is_none_or(|l| l.room != room) {
            return Err(StorageError::NotFound);
        }
        links.remove(token);
        Ok(())
    }
}
