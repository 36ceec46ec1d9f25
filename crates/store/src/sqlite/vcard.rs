//! vCard-temp (XEP-0054) in SQLite: `vcards`, one serialised element per account.

use async_trait::async_trait;
use salon_server::storage::{StorageResult, VcardStore};

use super::SqliteStorage;
use crate::errors::{db_error, require_row};

#[async_trait]
impl VcardStore for SqliteStorage {
    async fn vcard(&self, user: &str, domain: &str) -> StorageResult<Option<String>> {
        sqlx::query_scalar(
            "SELECT v.vcard FROM vcards v JOIN accounts a ON a.id = v.account_id \
             WHERE a.user = ?1 AND a.domain = ?2",
        )
        .bind(user)
        .bind(domain)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)
    }

    async fn set_vcard(&self, user: &str, domain: &str, vcard: &str) -> StorageResult<()> {
        let result = sqlx::query(
            "INSERT INTO vcards (account_id, vcard) \
             SELECT id, ?3 FROM accounts WHERE user = ?1 AND domain = ?2 \
             ON CONFLICT (account_id) DO UPDATE SET vcard = excluded.vcard",
        )
        .bind(user)
        .bind(domain)
        .bind(vcard)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        require_row(result.rows_affected())
    }
}
