//! HTTP File Upload (XEP-0363) records in SQLite: `uploads`, keyed by slot id, with 64-bit
//! sizes. Records do not reference accounts: anonymous visitors upload too, and a record must
//! outlive its uploader until the sweep has deleted the file.

use async_trait::async_trait;
use salon_server::storage::{StorageResult, UploadRecord, UploadStore};
use sqlx::sqlite::SqliteRow;
use sqlx::Row as _;

use super::SqliteStorage;
use crate::errors::{corrupt, db_error, out_of_range};

/// Columns of an [`UploadRecord`], for [`upload_from_row`].
const UPLOAD_COLUMNS: &str =
    "id, owner, quota_key, filename, content_type, size, created_at, expires_at";

fn upload_from_row(row: &SqliteRow) -> StorageResult<UploadRecord> {
    let size: i64 = row.try_get("size").map_err(db_error)?;
    Ok(UploadRecord {
        id: row.try_get("id").map_err(db_error)?,
        owner: row.try_get("owner").map_err(db_error)?,
        quota_key: row.try_get("quota_key").map_err(db_error)?,
        filename: row.try_get("filename").map_err(db_error)?,
        content_type: row.try_get("content_type").map_err(db_error)?,
        size: u64::try_from(size).map_err(|e| corrupt("upload size", e))?,
        created_at: row.try_get("created_at").map_err(db_error)?,
        expires_at: row.try_get("expires_at").map_err(db_error)?,
    })
}

/// A byte total from `SUM(size)` (NULL when no row matched).
fn byte_total(total: Option<i64>) -> StorageResult<u64> {
    u64::try_from(total.unwrap_or(0)).map_err(|e| corrupt("upload size total", e))
}

#[async_trait]
impl UploadStore for SqliteStorage {
    async fn upload_add(&self, record: &UploadRecord) -> StorageResult<()> {
        let size = i64::try_from(record.size).map_err(|e| out_of_range("upload size", e))?;
        // A duplicate id violates the primary key: `AlreadyExists`.
        sqlx::query(&format!(
            "INSERT INTO uploads ({UPLOAD_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
        ))
        .bind(&record.id)
        .bind(&record.owner)
        .bind(&record.quota_key)
        .bind(&record.filename)
        .bind(&record.content_type)
        .bind(size)
        .bind(record.created_at)
        .bind(record.expires_at)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn upload_get(&self, id: &str) -> StorageResult<Option<UploadRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = ?1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.as_ref().map(upload_from_row).transpose()
    }

    async fn upload_usage(&self, quota_key: &str, since: i64) -> StorageResult<u64> {
        let total: Option<i64> = sqlx::query_scalar(
            "SELECT SUM(size) FROM uploads WHERE quota_key = ?1 AND created_at >= ?2",
        )
        .bind(quota_key)
        .bind(since)
        .fetch_one(&self.pool)
        .await
        .map_err(db_error)?;
        byte_total(total)
    }

    async fn upload_total(&self) -> StorageResult<u64> {
        let total: Option<i64> = sqlx::query_scalar("SELECT SUM(size) FROM uploads")
            .fetch_one(&self.pool)
            .await
            .map_err(db_error)?;
        byte_total(total)
    }

    async fn upload_expired(&self, now: i64, limit: usize) -> StorageResult<Vec<UploadRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE expires_at IS NOT NULL \
             AND expires_at <= ?1 ORDER BY expires_at, id LIMIT ?2"
        ))
        .bind(now)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter().map(upload_from_row).collect()
    }

    async fn upload_delete(&self, id: &str) -> StorageResult<()> {
        sqlx::query("DELETE FROM uploads WHERE id = ?1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }
}
