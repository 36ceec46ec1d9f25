//! Last activity (XEP-0012) in SQLite: `last_activity`, one row per account.

use async_trait::async_trait;
use salon_server::storage::{LastActivity, LastActivityStore, StorageResult};
use sqlx::Row as _;

use super::SqliteStorage;
use crate::errors::{db_error, require_row};

#[async_trait]
impl LastActivityStore for SqliteStorage {
    async fn last_activity(&self, user: &str, domain: &str) -> StorageResult<Option<LastActivity>> {
        let row = sqlx::query(
            "SELECT l.at, l.status FROM last_activity l JOIN accounts a ON a.id = l.account_id \
             WHERE a.user = ?1 AND a.domain = ?2",
        )
        .bind(user)
        .bind(domain)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.map(|row| {
            Ok(LastActivity {
                at: row.try_get("at").map_err(db_error)?,
                status: row.try_get("status").map_err(db_error)?,
            })
        })
        .transpose()
    }

    async fn set_last_activity(
        &self,
        user: &str,
        domain: &str,
        activity: &LastActivity,
    ) -> StorageResult<()> {
        let result = sqlx::query(
            "INSERT INTO last_activity (account_id, at, status) \
             SELECT id, ?3, ?4 FROM accounts WHERE user = ?1 AND domain = ?2 \
             ON CONFLICT (account_id) DO UPDATE SET at = excluded.at, status = excluded.status",
        )
        .bind(user)
        .bind(domain)
        .bind(activity.at)
        .bind(&activity.status)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        require_row(result.rows_affected())
    }
}
