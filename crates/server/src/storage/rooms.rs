//! Persistent multi-user chat rooms (XEP-0045): an opaque serialised record per room, owned by
//! the MUC module (configuration, affiliations, registered nicks, subject). A room's archive is
//! an [`ArchiveStore`](super::ArchiveStore) archive and not deleted with the room record.

use async_trait::async_trait;

use super::StorageResult;

#[async_trait]
pub trait RoomStore: Send + Sync {
    /// Stores or replaces the room's record.
    async fn save_room(&self, room: &str, record: &str) -> StorageResult<()>;
    /// Deleting a room that is not stored is not an error.
    async fn delete_room(&self, room: &str) -> StorageResult<()>;
    /// All rooms of a MUC service domain: (room bare JID, record), sorted by JID.
    async fn rooms(&self, service: &str) -> StorageResult<Vec<(String, String)>>;
}
