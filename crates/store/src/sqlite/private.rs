//! Private XML storage (XEP-0049) in SQLite: `private_xml`, one element per account and
//! namespace.

use async_trait::async_trait;
use salon_server::storage::{PrivateStore, StorageResult};

use super::SqliteStorage;
use crate::errors::{corrupt, db_error, require_row};

#[async_trait]
impl PrivateStore for SqliteStorage {
    async fn private_xml(
        &self,
        user: &str,
        domain: &str,
        namespace: &str,
    ) -> StorageResult<Option<String>> {
        sqlx::query_scalar(
            "SELECT p.xml FROM accounts a JOIN private_xml p ON p.account_id = a.id \
             WHERE a.user = ?1 AND a.domain = ?2 AND p.namespace = ?3",
        )
        .bind(user)
        .bind(domain)
        .bind(namespace)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)
    }

    async fn set_private_xml(
        &self,
        user: &str,
        domain: &str,
        namespace: &str,
        xml: &str,
    ) -> StorageResult<()> {
        let result = sqlx::query(
            "INSERT INTO private_xml (account_id, namespace, xml) \
             SELECT id, ?3, ?4 FROM accounts WHERE user = ?1 AND domain = ?2 \
             ON CONFLICT (account_id, namespace) DO UPDATE SET xml = excluded.xml",
        )
        .bind(user)
        .bind(domain)
        .bind(namespace)
        .bind(xml)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        require_row(result.rows_affected())
    }

    async fn count_private_xml(&self, user: &str, domain: &str) -> StorageResult<usize> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM accounts a JOIN private_xml p ON p.account_id = a.id \
             WHERE a.user = ?1 AND a.domain = ?2",
        )
        .bind(user)
        .bind(domain)
        .fetch_one(&self.pool)
        .await
        .map_err(db_error)?;
        usize::try_from(count).map_err(|e| corrupt("private XML count", e))
    }
}
