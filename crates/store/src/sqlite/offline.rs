//! Offline messages (RFC 6121 §8.5.2.2) in SQLite: `offline_messages`, taken oldest first.

use async_trait::async_trait;
use salon_server::storage::{OfflineMessage, OfflineStore, StorageResult};
use sqlx::Row as _;

use super::SqliteStorage;
use crate::errors::{corrupt, db_error, require_row};

#[async_trait]
impl OfflineStore for SqliteStorage {
    async fn store_offline(
        &self,
        user: &str,
        domain: &str,
        message: &OfflineMessage,
    ) -> StorageResult<()> {
        let result = sqlx::query(
            "INSERT INTO offline_messages (account_id, stanza, received_at) \
             SELECT id, ?3, ?4 FROM accounts WHERE user = ?1 AND domain = ?2",
        )
        .bind(user)
        .bind(domain)
        .bind(&message.stanza)
        .bind(message.received_at)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        require_row(result.rows_affected())
    }

    async fn count_offline(&self, user: &str, domain: &str) -> StorageResult<usize> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM offline_messages \
             WHERE account_id = (SELECT id FROM accounts WHERE user = ?1 AND domain = ?2)",
        )
        .bind(user)
        .bind(domain)
        .fetch_one(&self.pool)
        .await
        .map_err(db_error)?;
        usize::try_from(count).map_err(|e| corrupt("offline message count", e))
    }

    async fn take_offline(&self, user: &str, domain: &str) -> StorageResult<Vec<OfflineMessage>> {
        // One statement, so a message stored concurrently is either taken now or kept for the
        // next time, never lost. RETURNING gives no order guarantee; sort by id afterwards.
        let rows = sqlx::query(
            "DELETE FROM offline_messages \
             WHERE account_id = (SELECT id FROM accounts WHERE user = ?1 AND domain = ?2) \
             RETURNING id, stanza, received_at",
        )
        .bind(user)
        .bind(domain)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        let mut messages = rows
            .iter()
            .map(|row| {
                Ok((
                    row.try_get::<i64, _>("id").map_err(db_error)?,
                    OfflineMessage {
                        stanza: row.try_get("stanza").map_err(db_error)?,
                        received_at: row.try_get("received_at").map_err(db_error)?,
                    },
                ))
            })
            .collect::<StorageResult<Vec<_>>>()?;
        messages.sort_unstable_by_key(|(id, _)| *id);
        Ok(messages.into_iter().map(|(_, message)| message).collect())
    }
}
