//! Server-wide bans in SQLite: `bans`, one row per target.

use async_trait::async_trait;
use salon_server::storage::{Ban, BanStore, StorageError, StorageResult};

use super::SqliteStorage;
use crate::errors::db_error;

#[async_trait]
impl BanStore for SqliteStorage {
    async fn bans(&self, now: i64) -> StorageResult<Vec<Ban>> {
        let rows: Vec<(String, i64, Option<i64>)> = sqlx::query_as(
            "SELECT target, created, until FROM bans WHERE until IS NULL OR until > ?1 \
             ORDER BY target",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(rows
            .into_iter()
            .map(|(target, created, until)| Ban {
                target,
                created,
                until,
            })
            .collect())
    }

    async fn add_ban(&self, ban: &Ban) -> StorageResult<()> {
        sqlx::query("INSERT OR REPLACE INTO bans (target, created, until) VALUES (?1, ?2, ?3)")
            .bind(&ban.target)
            .bind(ban.created)
            .bind(ban.until)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn remove_ban(&self, target: &str) -> StorageResult<()> {
        let removed = sqlx::query("DELETE FROM bans WHERE target = ?1")
            .bind(target)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        if removed.rows_affected() == 0 {
            return Err(StorageError::NotFound);
        }
        Ok(())
    }
}
