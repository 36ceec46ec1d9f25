//! Signed slots (XEP-0363 §5–§6) and what the HTTP side asks of them: the slot's claims and
//! their signature, the checks before a PUT's body, the record of a completed upload, and
//! whether a file may be served.

use super::UploadService;
use crate::stanza;
use crate::storage::{StorageResult, UploadRecord};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::sync::Arc;

type HmacSha256 = Hmac<Sha256>;

/// What a slot allows, signed into its `Authorization` header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotClaims {
    /// The slot id: 32 lowercase hex digits, the file's name on disk.
    pub id: String,
    /// The exact number of bytes the PUT must carry.
    pub size: u64,
    /// The content type the PUT must declare (its media type is compared, parameters not).
    #[serde(rename = "type")]
    pub content_type: String,
    /// Seconds since the epoch until which the PUT may start.
    pub exp: i64,
    /// Bare JID of the uploader.
    pub owner: String,
    /// What the daily quota counts by.
    pub quota: String,
    /// Seconds the file is kept after upload (0: until deleted by hand).
    pub keep: u64,
    /// The sanitised client file name.
    pub name: String,
}

/// Why a PUT is refused before any byte is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutRefusal {
    /// Missing or forged token, or one for another slot (HTTP 403).
    BadToken,
    /// The slot's time is over (HTTP 403).
    Expired,
    /// The slot was used already, or is being used by another request (HTTP 409).
    Used,
    /// Storage could not be asked whether the slot was used (HTTP 503).
    Unavailable,
}

impl UploadService {
    pub(super) fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length; the error case cannot happen.
        HmacSha256::new_from_slice(&self.secret).unwrap_or_else(|_| unreachable!())
    }

    /// The `Authorization` header value for a slot.
    pub fn sign(&self, claims: &SlotClaims) -> String {
        let engine = &base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let payload = serde_json::to_vec(claims).unwrap_or_default();
        let mut mac = self.mac();
        mac.update(&payload);
        let tag = mac.finalize().into_bytes();
        format!(
            "Bearer {}.{}",
            engine.encode(&payload),
            engine.encode(tag.as_slice())
        )
    }

    /// The claims of an `Authorization` header for slot `id`, if the signature is ours. Does
    /// not look at the expiry (see [`check_put`](Self::check_put)).
    pub fn verify(&self, id: &str, authorization: &str) -> Option<SlotClaims> {
        let engine = &base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let token = authorization.trim().strip_prefix("Bearer ")?.trim();
        let (payload, tag) = token.split_once('.')?;
        let payload = engine.decode(payload).ok()?;
        let tag = engine.decode(tag).ok()?;
        let mut mac = self.mac();
        mac.update(&payload);
        mac.verify_slice(&tag).ok()?;
        let claims: SlotClaims = serde_json::from_slice(&payload).ok()?;
        (claims.id == id).then_some(claims)
    }

    /// Everything about a PUT that can be decided before its body: the token, whether the slot
    /// was used, its expiry. The size and content type are the HTTP side's to compare.
    pub async fn check_put(
        &self,
        id: &str,
        authorization: Option<&str>,
    ) -> Result<SlotClaims, PutRefusal> {
        let claims = authorization
            .and_then(|a| self.verify(id, a))
            .ok_or(PutRefusal::BadToken)?;
        if self.in_progress.contains_key(id) {
            return Err(PutRefusal::Used);
        }
        match self.store.upload_get(id).await {
            Ok(None) => {}
            Ok(Some(_)) => return Err(PutRefusal::Used),
            Err(e) => {
                tracing::error!(error = %e, "looking up an upload");
                return Err(PutRefusal::Unavailable);
            }
        }
        if claims.exp < stanza::now_unix() {
            return Err(PutRefusal::Expired);
        }
        Ok(claims)
    }

    /// Marks a slot's PUT as running; `None` if one already is. The mark goes with the guard.
    pub fn begin_put(self: &Arc<Self>, id: &str) -> Option<PutGuard> {
        match self.in_progress.entry(id.to_string()) {
            dashmap::mapref::entry::Entry::Occupied(_) => None,
            dashmap::mapref::entry::Entry::Vacant(slot) => {
                slot.insert(());
                Some(PutGuard {
                    service: self.clone(),
                    id: id.to_string(),
                })
            }
        }
    }

    /// Records a completed upload whose file is in place; it now counts against the quotas
    /// through storage instead of its reservation. `AlreadyExists` if the slot was used.
    pub async fn complete(&self, claims: &SlotClaims) -> StorageResult<()> {
        let now = stanza::now_unix();
        let record = UploadRecord {
            id: claims.id.clone(),
            owner: claims.owner.clone(),
            quota_key: claims.quota.clone(),
            filename: claims.name.clone(),
            content_type: claims.content_type.clone(),
            size: claims.size,
            created_at: now,
            expires_at: (claims.keep > 0)
                .then(|| now.saturating_add(i64::try_from(claims.keep).unwrap_or(i64::MAX))),
        };
        self.store.upload_add(&record).await?;
        self.reservations.remove(&claims.id);
        tracing::info!(id = %claims.id, owner = %claims.owner, size = claims.size, "file uploaded");
        Ok(())
    }

    /// The record of a file that may be served now (uploaded and not expired).
    pub async fn servable(&self, id: &str) -> StorageResult<Option<UploadRecord>> {
        if !super::is_valid_id(id) {
            return Ok(None);
        }
        let now = stanza::now_unix();
        Ok(self
            .store
            .upload_get(id)
            .await?
            .filter(|r| r.expires_at.is_none_or(|at| at > now)))
    }
}

/// A PUT in progress; dropping it (finished, failed or the client gone) frees the slot for
/// another attempt unless the upload was recorded.
pub struct PutGuard {
    service: Arc<UploadService>,
    id: String,
}

impl Drop for PutGuard {
    fn drop(&mut self) {
        self.service.in_progress.remove(&self.id);
    }
}
