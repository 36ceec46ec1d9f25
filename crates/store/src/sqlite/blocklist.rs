//! Blocklists of the blocking command (XEP-0191) in SQLite: `blocklist_items`, one row per
//! account and blocked address.

use async_trait::async_trait;
use salon_server::storage::{BlocklistStore, StorageError, StorageResult};

use super::SqliteStorage;
use crate::errors::db_error;

#[async_trait]
impl BlocklistStore for SqliteStorage {
    async fn blocklist(&self, user: &str, domain: &str) -> StorageResult<Vec<String>> {
        sqlx::query_scalar(
            "SELECT b.jid FROM accounts a JOIN blocklist_items b ON b.account_id = a.id \
             WHERE a.user = ?1 AND a.domain = ?2 ORDER BY b.jid",
        )
        .bind(user)
        .bind(domain)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)
    }

    async fn block(&self, user: &str, domain: &str, jids: &[String]) -> StorageResult<()> {
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_error)?;
        let account: Option<i64> =
            sqlx::query_scalar("SELECT id FROM accounts WHERE user = ?1 AND domain = ?2")
                .bind(user)
                .bind(domain)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_error)?;
        let account = account.ok_or(StorageError::NotFound)?;
        for jid in jids {
            sqlx::query("INSERT OR IGNORE INTO blocklist_items (account_id, jid) VALUES (?1, ?2)")
                .bind(account)
                .bind(jid)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)
    }

    async fn unblock(
        &self,
        user: &str,
        domain: &str,
        jids: Option<&[String]>,
    ) -> StorageResult<()> {
        let account = "SELECT id FROM accounts WHERE user = ?1 AND domain = ?2";
        match jids {
            None => {
                sqlx::query(&format!(
                    "DELETE FROM blocklist_items WHERE account_id IN ({account})"
                ))
                .bind(user)
                .bind(domain)
                .execute(&self.pool)
                .await
                .map_err(db_error)?;
            }
            Some(jids) => {
                let mut tx = self
                    .pool
                    .begin_with("BEGIN IMMEDIATE")
                    .await
                    .map_err(db_error)?;
                for jid in jids {
                    sqlx::query(&format!(
                        "DELETE FROM blocklist_items WHERE account_id IN ({account}) AND jid = ?3"
                    ))
                    .bind(user)
                    .bind(domain)
                    .bind(jid)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
                }
                tx.commit().await.map_err(db_error)?;
            }
        }
        Ok(())
    }
}
