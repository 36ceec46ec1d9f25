//! Room invite links in SQLite: `room_invites`, one row per token; a use is taken with one
//! conditional UPDATE, so two joins cannot share the last use.

use async_trait::async_trait;
use salon_server::storage::{RoomInvite, RoomInviteStore, StorageError, StorageResult};

use super::SqliteStorage;
use crate::errors::db_error;

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

const COLUMNS: &str = "token, room, created_by, uses_left, created, expires";

#[async_trait]
impl RoomInviteStore for SqliteStorage {
    async fn create_room_invite(&self, invite: &RoomInvite) -> StorageResult<()> {
        let result = sqlx::query(&format!(
            "INSERT OR IGNORE INTO room_invites ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
        ))
        .bind(&invite.token)
        .bind(&invite.room)
        .bind(&invite.created_by)
        .bind(i64::from(invite.uses_left))
        .bind(invite.created)
        .bind(invite.expires)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        if result.rows_affected() == 0 {
            return Err(StorageError::AlreadyExists);
        }
        Ok(())
    }

    async fn take_room_invite_use(
        &self,
        room: &str,
        token: &str,
        now: i64,
    ) -> StorageResult<Option<RoomInvite>> {
        let row: Option<Row> = sqlx::query_as(&format!(
            "UPDATE room_invites SET uses_left = uses_left - 1 \
             WHERE token = ?1 AND room = ?2 AND uses_left > 0 AND expires > ?3 \
             RETURNING {COLUMNS}"
        ))
        .bind(token)
        .bind(room)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        // RETURNING gives the row after the update; the caller wants it as it was.
        Ok(row.map(from_row).map(|mut link| {
            link.uses_left += 1;
            link
        }))
    }

    async fn room_invites(&self, room: &str) -> StorageResult<Vec<RoomInvite>> {
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM room_invites WHERE room = ?1 ORDER BY created DESC, token"
        ))
        .bind(room)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(rows.into_iter().map(from_row).collect())
    }

    async fn delete_room_invite(&self, room: &str, token: &str) -> StorageResult<()> {
        let removed = sqlx::query("DELETE FROM room_invites WHERE token = ?1 AND room = ?2")
            .bind(token)
            .bind(room)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        if removed.rows_affected() == 0 {
            return Err(StorageError::NotFound);
        }
        Ok(())
    }
}
