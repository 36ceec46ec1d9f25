//! Persistent MUC rooms (XEP-0045) in SQLite: `rooms`, an opaque record per room, listed by
//! service domain. Deleting a room leaves its archive for `archive_delete`.

use async_trait::async_trait;
use salon_server::storage::rules::jid_domain;
use salon_server::storage::{RoomStore, StorageResult};
use sqlx::Row as _;

use super::SqliteStorage;
use crate::errors::db_error;

#[async_trait]
impl RoomStore for SqliteStorage {
    async fn save_room(&self, room: &str, record: &str) -> StorageResult<()> {
        sqlx::query(
            "INSERT INTO rooms (jid, service, record) VALUES (?1, ?2, ?3) \
             ON CONFLICT (jid) DO UPDATE SET record = excluded.record",
        )
        .bind(room)
        .bind(jid_domain(room))
        .bind(record)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn delete_room(&self, room: &str) -> StorageResult<()> {
        // Deleting a room that is not stored is not an error; the archive stays.
        sqlx::query("DELETE FROM rooms WHERE jid = ?1")
            .bind(room)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn rooms(&self, service: &str) -> StorageResult<Vec<(String, String)>> {
        // BINARY collation compares UTF-8 bytes, which is the order of Rust's `str`.
        let rows = sqlx::query("SELECT jid, record FROM rooms WHERE service = ?1 ORDER BY jid")
            .bind(service)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get("jid").map_err(db_error)?,
                    row.try_get("record").map_err(db_error)?,
                ))
            })
            .collect()
    }
}
