//! Accounts and their SCRAM credentials (RFC 5802) in SQLite: the `accounts` table, which
//! every per-account table references with `ON DELETE CASCADE`.

use async_trait::async_trait;
use salon_server::storage::rules::account_archive;
use salon_server::storage::{AccountStore, Credentials, ScramKeys, StorageResult};
use sqlx::sqlite::SqliteRow;
use sqlx::Row as _;

use super::SqliteStorage;
use crate::errors::{corrupt, db_error, require_row};

/// Deletes the archive named after the account `user@domain` (which does not reference the
/// account row), inside the caller's transaction.
async fn delete_archive(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    user: &str,
    domain: &str,
) -> StorageResult<()> {
    sqlx::query(
        "DELETE FROM archive_entries WHERE archive = \
         (SELECT id FROM archive_addresses WHERE jid = ?1)",
    )
    .bind(account_archive(user, domain))
    .execute(&mut **tx)
    .await
    .map_err(db_error)?;
    Ok(())
}

fn credentials_from_row(row: &SqliteRow) -> StorageResult<Credentials> {
    let iterations: i64 = row.try_get("iterations").map_err(db_error)?;
    Ok(Credentials {
        iterations: u32::try_from(iterations).map_err(|e| corrupt("iteration count", e))?,
        salt: row.try_get("salt").map_err(db_error)?,
        sha1: ScramKeys {
            stored_key: row.try_get("sha1_stored_key").map_err(db_error)?,
            server_key: row.try_get("sha1_server_key").map_err(db_error)?,
        },
        sha256: ScramKeys {
            stored_key: row.try_get("sha256_stored_key").map_err(db_error)?,
            server_key: row.try_get("sha256_server_key").map_err(db_error)?,
        },
    })
}

#[async_trait]
impl AccountStore for SqliteStorage {
    async fn create_account(
        &self,
        user: &str,
        domain: &str,
        credentials: &Credentials,
    ) -> StorageResult<()> {
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_error)?;
        sqlx::query(
            "INSERT INTO accounts (user, domain, iterations, salt, sha1_stored_key, \
             sha1_server_key, sha256_stored_key, sha256_server_key) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .bind(user)
        .bind(domain)
        .bind(i64::from(credentials.iterations))
        .bind(&credentials.salt[..])
        .bind(&credentials.sha1.stored_key[..])
        .bind(&credentials.sha1.server_key[..])
        .bind(&credentials.sha256.stored_key[..])
        .bind(&credentials.sha256.server_key[..])
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        // A new account starts with an empty archive: entries left under the name (written
        // after an earlier account's deletion by a writer that still held them, or a deletion
        // from another process) are not its history.
        delete_archive(&mut tx, user, domain).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(())
    }

    async fn set_credentials(
        &self,
        user: &str,
        domain: &str,
        credentials: &Credentials,
    ) -> StorageResult<()> {
        let result = sqlx::query(
            "UPDATE accounts SET iterations = ?3, salt = ?4, sha1_stored_key = ?5, \
             sha1_server_key = ?6, sha256_stored_key = ?7, sha256_server_key = ?8 \
             WHERE user = ?1 AND domain = ?2",
        )
        .bind(user)
        .bind(domain)
        .bind(i64::from(credentials.iterations))
        .bind(&credentials.salt[..])
        .bind(&credentials.sha1.stored_key[..])
        .bind(&credentials.sha1.server_key[..])
        .bind(&credentials.sha256.stored_key[..])
        .bind(&credentials.sha256.server_key[..])
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        require_row(result.rows_affected())
    }

    async fn delete_account(&self, user: &str, domain: &str) -> StorageResult<()> {
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_error)?;
        // Roster items (and their groups), offline messages, vCard and last activity go with
        // the row through ON DELETE CASCADE.
        let result = sqlx::query("DELETE FROM accounts WHERE user = ?1 AND domain = ?2")
            .bind(user)
            .bind(domain)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        // The archive is not tied to the account row; it goes even if there was no account.
        delete_archive(&mut tx, user, domain).await?;
        tx.commit().await.map_err(db_error)?;
        require_row(result.rows_affected())
    }

    async fn credentials(&self, user: &str, domain: &str) -> StorageResult<Option<Credentials>> {
        let row = sqlx::query(
            "SELECT iterations, salt, sha1_stored_key, sha1_server_key, sha256_stored_key, \
             sha256_server_key FROM accounts WHERE user = ?1 AND domain = ?2",
        )
        .bind(user)
        .bind(domain)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.as_ref().map(credentials_from_row).transpose()
    }

    async fn list_accounts(&self, domain: Option<&str>) -> StorageResult<Vec<String>> {
        // BINARY collation compares UTF-8 bytes, which is the order of Rust's `str`.
        let rows = match domain {
            Some(domain) => {
                sqlx::query(
                    "SELECT user || '@' || domain AS jid FROM accounts WHERE domain = ?1 \
                     ORDER BY jid",
                )
                .bind(domain)
                .fetch_all(&self.pool)
                .await
            }
            None => {
                sqlx::query("SELECT user || '@' || domain AS jid FROM accounts ORDER BY jid")
                    .fetch_all(&self.pool)
                    .await
            }
        }
        .map_err(db_error)?;
        rows.iter()
            .map(|row| row.try_get("jid").map_err(db_error))
            .collect()
    }
}
