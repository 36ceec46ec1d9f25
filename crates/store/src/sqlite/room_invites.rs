//! Room invite links in SQLite: `room_invites`, one row per token (the shared handling in
//! `tokens.rs`); a link is used and revoked only through its own room.

use async_trait::async_trait;
use salon_server::storage::{RoomInvite, RoomInviteStore, StorageResult};

use super::tokens::TokenTable;
use super::SqliteStorage;

type Row = (String, String, Option<String>, i64, i64, i64);

fn from_row((token, room, created_by, uses_left, created, expires): Row) -> RoomInvite {
    RoomInvite {
        token,
        room,
        created_by,
        uses_left: u32::try_from(uses_left).unwrap_or(0),
        created,
        expires,
    }
}

const TABLE: TokenTable = TokenTable {
    name: "room_invites",
    scope: "room",
    columns: "token, room, created_by, uses_left, created, expires",
};

#[async_trait]
impl RoomInviteStore for SqliteStorage {
    async fn create_room_invite(&self, invite: &RoomInvite) -> StorageResult<()> {
        let link = invite.clone();
        TABLE
            .insert(&self.pool, move |query| {
                query
                    .bind(link.token)
                    .bind(link.room)
                    .bind(link.created_by)
                    .bind(i64::from(link.uses_left))
                    .bind(link.created)
                    .bind(link.expires)
            })
            .await
    }

    async fn take_room_invite_use(
        &self,
        room: &str,
        token: &str,
        now: i64,
    ) -> StorageResult<Option<RoomInvite>> {
        let row: Option<Row> = TABLE.take_use(&self.pool, token, Some(room), now).await?;
        // The row after the update; the caller wants it as it was.
        Ok(row.map(from_row).map(|mut link| {
            link.uses_left += 1;
            link
        }))
    }

    async fn room_invites(&self, room: &str) -> StorageResult<Vec<RoomInvite>> {
        let rows: Vec<Row> = TABLE.list(&self.pool, room).await?;
        Ok(rows.into_iter().map(from_row).collect())
    }

    async fn delete_room_invite(&self, room: &str, token: &str) -> StorageResult<()> {
        TABLE.delete(&self.pool, token, Some(room)).await
    }
}
