//! Expiry of uploads: the periodic sweep that deletes expired files and their records, and the
//! removal of partial files a previous run left behind.

use super::UploadService;
use crate::service::{shutdown_requested, ServiceContext};
use crate::stanza;
use std::sync::Arc;

/// Expired records handled per storage round trip in a sweep.
const SWEEP_BATCH: usize = 256;

impl UploadService {
    /// Delete expired files and their records, and forget reservations whose slot is over.
    pub async fn sweep(&self) {
        let now = stanza::now_unix();
        self.reservations.retain(|_, r| r.until >= now);
        let mut deleted = 0usize;
        'batches: loop {
            let expired = match self.store.upload_expired(now, SWEEP_BATCH).await {
                Ok(expired) => expired,
                Err(e) => {
                    tracing::error!(error = %e, "listing expired uploads");
                    break;
                }
            };
            if expired.is_empty() {
                break;
            }
            for record in &expired {
                match tokio::fs::remove_file(self.file_path(&record.id)).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        // Keep the record so the next sweep tries again.
                        tracing::error!(id = %record.id, error = %e, "deleting an expired upload");
                        break 'batches;
                    }
                }
                if let Err(e) = self.store.upload_delete(&record.id).await {
                    tracing::error!(id = %record.id, error = %e, "forgetting an expired upload");
                    break 'batches;
                }
                deleted += 1;
            }
            if expired.len() < SWEEP_BATCH {
                break;
            }
        }
        if deleted > 0 {
            tracing::info!(deleted, "expired uploads deleted");
        }
    }

    /// Delete partial files left by a previous run that stopped during an upload.
    pub(super) async fn remove_partial_files(&self) {
        let Ok(mut entries) = tokio::fs::read_dir(&self.dir).await else {
            return;
        };
        while let Ok(Some(entry)) = entries.next_entry().await {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            // Not one a PUT that began since the start is writing.
            let running = name
                .strip_suffix(".part")
                .is_some_and(|id| self.in_progress.contains_key(id));
            if name.ends_with(".part") && !running {
                if let Err(e) = tokio::fs::remove_file(entry.path()).await {
                    tracing::warn!(file = %entry.path().display(), error = %e, "removing a partial upload");
                }
            }
        }
    }
}

/// Start the periodic sweep of expired uploads (every `upload.sweep_interval` seconds), after
/// removing partial files from a previous run. Stops at shutdown.
pub(super) fn start_expiry(context: ServiceContext, service: Arc<UploadService>) {
    tokio::spawn(async move {
        service.remove_partial_files().await;
        let mut shutdown = context.shutdown_signal();
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(
            service.settings.sweep_interval,
        ));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => service.sweep().await,
                _ = shutdown_requested(&mut shutdown) => return,
            }
        }
    });
}
