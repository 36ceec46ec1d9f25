//! The room archive's lifetime and size (XEP-0313 on a room): a temporary room's archive ends
//! with the room, and every archive keeps at most `muc.max_archive_messages` messages and
//! `muc.max_archive_bytes` bytes of stanzas (the oldest go first), and those of rooms created
//! by guests no longer than `muc.guest_room_archive_retention_hours`.

use super::Room;

/// How often a room applies its archive's bounds when no messages come (retention).
pub(super) const CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);

/// How often the trims a busy room makes as it archives also apply the guests' retention. The
/// age cut reads the whole archive (timestamps have no index, which would cost every message
/// its upkeep), where the count cut steps over the excess only; retention is counted in hours.
pub(super) const AGE_TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// At most this many messages between two trims: the cap costs one delete per batch, not one
/// per message. The archive may briefly hold up to a tenth more than its cap.
const TRIM_EVERY: usize = 100;

impl Room {
    /// Delete the room's whole archive, what the writer still holds included, and its invite
    /// links.
    pub(super) async fn delete_archive(&self) {
        self.archive.flush().await;
        if let Err(e) = self
            .context
            .archive_store()
            .archive_delete(self.jid.as_str())
            .await
        {
            tracing::error!(room = %self.jid, error = %e, "deleting room archive");
        }
        // Its invite links end with it too, for the same reason.
        let links = self.context.room_invite_store();
        crate::muc::invite_links::forget_all(&*links, self.jid.as_str()).await;
    }

    /// The most messages the archive keeps (`usize::MAX`: no cap).
    fn archive_cap(&self) -> usize {
        match self.service.settings.max_archive_messages {
            0 => usize::MAX,
            cap => cap,
        }
    }

    /// A groupchat message went out (and to the archive, `bytes` of it): trim once enough
    /// have, by count or by size (a tenth of either cap). The size is only measured once a
    /// tenth of its cap was written since it last was: measuring sums the whole archive, which
    /// every hundred messages cost a busy room more than the messages themselves.
    pub(super) async fn archived_one(&mut self, bytes: usize) {
        self.since_archive_trim += 1;
        self.bytes_since_archive_trim = self.bytes_since_archive_trim.saturating_add(bytes as u64);
        let every = TRIM_EVERY.min(self.archive_cap().div_ceil(10)).max(1);
        let max_bytes = self.service.settings.max_archive_bytes;
        let bytes_every = max_bytes.div_ceil(10).max(1);
        if max_bytes > 0 && self.bytes_since_archive_trim >= bytes_every {
            self.bound_archive().await;
        } else if self.since_archive_trim >= every {
            self.bound_archive_by(false).await;
        }
    }

    /// Drop the oldest messages past the caps and, in a room a guest created, those past the
    /// guests' retention.
    pub(super) async fn bound_archive(&mut self) {
        self.bound_archive_by(true).await;
    }

    /// [`bound_archive`](Self::bound_archive), with the size cap only if `size`, and the age
    /// limit then or when it was last applied [`AGE_TRIM_EVERY`] ago.
    async fn bound_archive_by(&mut self, size: bool) {
        let with_age = size
            || self
                .last_age_trim
                .is_none_or(|at| at.elapsed() >= AGE_TRIM_EVERY);
        self.since_archive_trim = 0;
        let max_bytes = match size {
            true => {
                self.bytes_since_archive_trim = 0;
                self.service.settings.max_archive_bytes
            }
            false => 0,
        };
        let keep = self.archive_cap();
        let hours = match self.record.created_by_guest && with_age {
            true => self.service.settings.guest_room_archive_retention_hours,
            false => 0,
        };
        if with_age {
            self.last_age_trim = Some(std::time::Instant::now());
        }
        let before = match hours {
            0 => i64::MIN,
            hours => {
                let age = i64::try_from(hours.saturating_mul(3_600_000_000)).unwrap_or(i64::MAX);
                chrono::Utc::now().timestamp_micros().saturating_sub(age)
            }
        };
        if keep == usize::MAX && before == i64::MIN && max_bytes == 0 {
            return;
        }
        self.archive.flush().await;
        if max_bytes > 0 {
            match self
                .context
                .archive_store()
                .archive_trim_bytes(self.jid.as_str(), max_bytes)
                .await
            {
                Ok(0) => {}
                Ok(n) => {
                    tracing::debug!(room = %self.jid, dropped = n, "archive trimmed to its size")
                }
                Err(e) => tracing::error!(room = %self.jid, error = %e, "trimming room archive"),
            }
        }
        match self
            .context
            .archive_store()
            .archive_trim(self.jid.as_str(), keep, before)
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::debug!(room = %self.jid, dropped = n, "archive trimmed"),
            Err(e) => tracing::error!(room = %self.jid, error = %e, "trimming room archive"),
        }
    }
}
