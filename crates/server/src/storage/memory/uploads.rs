//! HTTP File Upload (XEP-0363) records in memory, by slot id.

use async_trait::async_trait;

use super::{read, write, MemoryStorage};
use crate::storage::{StorageError, StorageResult, UploadRecord, UploadStore};

#[async_trait]
impl UploadStore for MemoryStorage {
    async fn upload_add(&self, record: &UploadRecord) -> StorageResult<()> {
        let mut uploads = write(&self.uploads);
        if uploads.contains_key(&record.id) {
            return Err(StorageError::AlreadyExists);
        }
        uploads.insert(record.id.clone(), record.clone());
        Ok(())
    }

    async fn upload_get(&self, id: &str) -> StorageResult<Option<UploadRecord>> {
        Ok(read(&self.uploads).get(id).cloned())
    }

    async fn upload_usage(&self, quota_key: &str, since: i64) -> StorageResult<u64> {
        Ok(read(&self.uploads)
            .values()
            .filter(|r| r.quota_key == quota_key && r.created_at >= since)
            .map(|r| r.size)
            .sum())
    }

    async fn upload_total(&self) -> StorageResult<u64> {
        Ok(read(&self.uploads).values().map(|r| r.size).sum())
    }

    async fn upload_expired(&self, now: i64, limit: usize) -> StorageResult<Vec<UploadRecord>> {
        let mut expired: Vec<UploadRecord> = read(&self.uploads)
            .values()
            .filter(|r| r.expires_at.is_some_and(|at| at <= now))
            .cloned()
            .collect();
        expired.sort_by(|a, b| (a.expires_at, &a.id).cmp(&(b.expires_at, &b.id)));
        expired.truncate(limit);
        Ok(expired)
    }

    async fn upload_delete(&self, id: &str) -> StorageResult<()> {
        write(&self.uploads).remove(id);
        Ok(())
    }
}
