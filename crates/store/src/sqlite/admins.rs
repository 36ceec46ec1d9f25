//! Administrators made by an invitation in SQLite: `account_admins`, one row per account so
//! flagged; it goes with the account.

use async_trait::async_trait;
use salon_server::storage::{AdminStore, StorageResult};

use super::SqliteStorage;
use crate::errors::{db_error, require_row};

#[async_trait]
impl AdminStore for SqliteStorage {
    async fn set_admin(&self, user: &str, domain: &str, admin: bool) -> StorageResult<()> {
        let account = "SELECT id FROM accounts WHERE user = ?1 AND domain = ?2";
        let exists: Option<i64> = sqlx::query_scalar(account)
            .bind(user)
            .bind(domain)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        require_row(u64::from(exists.is_some()))?;
        let statement = if admin {
            format!("INSERT OR IGNORE INTO account_admins (account_id) {account}")
        } else {
            format!("DELETE FROM account_admins WHERE account_id IN ({account})")
        };
        sqlx::query(&statement)
            .bind(user)
            .bind(domain)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn is_stored_admin(&self, user: &str, domain: &str) -> StorageResult<bool> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT x.account_id FROM account_admins x JOIN accounts a ON a.id = x.account_id \
             WHERE a.user = ?1 AND a.domain = ?2",
        )
        .bind(user)
        .bind(domain)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(found.is_some())
    }
}
