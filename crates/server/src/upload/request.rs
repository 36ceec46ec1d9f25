//! Slot requests (XEP-0363 §5) from local users: the file size, content type and quota limits,
//! stricter for anonymous visitors, and reservations that count unused slots against the
//! quotas until they expire.

use super::names::{media_type, normalise_content_type, sanitize_filename, type_allowed};
use super::slots::SlotClaims;
use super::{Reservation, UploadService};
use crate::service::ServiceContext;
use crate::stanza::Bare;
use crate::stanza::{self, ns, Build, ErrorType, StanzaCondition, StanzaError};
use crate::storage::StorageError;
use minidom::Element;

/// What a slot counts against the quotas at least, whatever size it announces: a file takes a
/// block on disk and a record however small, and 20,000 zero-byte slots must not be free.
pub(super) const MIN_SLOT_CHARGE: u64 = 4096;

impl UploadService {
    pub(super) fn max_file_size(&self, anonymous: bool) -> u64 {
        if anonymous {
            self.settings
                .anonymous
                .max_file_size
                .min(self.settings.max_file_size)
        } else {
            self.settings.max_file_size
        }
    }

    /// Bytes reserved by unused, unexpired slots: of one quota key, or of everyone.
    fn reserved(&self, quota_key: Option<&str>, now: i64) -> u64 {
        self.reservations
            .iter()
            .filter(|r| r.until >= now && quota_key.is_none_or(|k| k == r.quota_key))
            .map(|r| r.size)
            .sum()
    }

    /// Answer a slot request (XEP-0363 §5) from a local user.
    pub(super) async fn request_slot(
        &self,
        context: &ServiceContext,
        from: &jid::FullJid,
        request: &Element,
    ) -> Result<Element, StanzaError> {
        let domain = from.domain().as_str();
        if !context.is_local_user_host(domain) {
            return Err(StanzaError::forbidden()
                .with_text("only users of this server may upload files here"));
        }
        let anonymous = context.is_anonymous_host(domain);
        if anonymous && !self.settings.anonymous.enabled {
            return Err(StanzaError::not_allowed()
                .with_text("visitors without an account may not upload files"));
        }
        let filename = request
            .attr("filename")
            .filter(|f| !f.trim().is_empty())
            .ok_or_else(|| StanzaError::bad_request("the request needs a filename"))?;
        let filename = sanitize_filename(filename);
        let size = request
            .attr("size")
            .ok_or_else(|| StanzaError::bad_request("the request needs a size"))?;
        let size: u64 = size
            .trim()
            .parse()
            .map_err(|_| StanzaError::bad_request("size must be a whole number of bytes"))?;
        let content_type = match request.attr("content-type").map(str::trim) {
            None | Some("") => "application/octet-stream".to_string(),
            Some(given) => normalise_content_type(given).ok_or_else(|| {
                StanzaError::bad_request(format!("`{given}` is not a content type"))
            })?,
        };
        let max = self.max_file_size(anonymous);
        if size > max {
            let mut error = StanzaError::new(ErrorType::Modify, StanzaCondition::NotAcceptable)
                .with_text(format!(
                    "File too large. The maximum file size is {max} bytes"
                ));
            error.extra = Some(Box::new(
                Build::new("file-too-large", ns::UPLOAD)
                    .child(
                        Build::new("max-file-size", ns::UPLOAD)
                            .text(max.to_string())
                            .build(),
                    )
                    .build(),
            ));
            return Err(error);
        }
        let allowed = match (&self.settings.anonymous.allowed_types, anonymous) {
            (Some(types), true) => types,
            _ => &self.settings.allowed_types,
        };
        let media = media_type(&content_type).unwrap_or_default();
        if !allowed.is_empty() && !allowed.iter().any(|p| type_allowed(&media, p)) {
            return Err(
                StanzaError::new(ErrorType::Modify, StanzaCondition::NotAcceptable)
                    .with_text(format!("files of type {media} are not accepted here")),
            );
        }
        let (quota_key, per_day, keep) = if anonymous {
            let ip = context
                .local_session(from)
                .map(|s| crate::limits::address_key(s.peer_ip).to_string())
                .unwrap_or_else(|| from.bare().to_string());
            (
                format!("ip:{ip}"),
                self.settings.anonymous.quota_per_day,
                self.settings.anonymous.expire_after,
            )
        } else {
            (
                from.bare().to_string(),
                self.settings.quota_per_day,
                self.settings.expire_after,
            )
        };
        let internal = |e: StorageError| {
            tracing::error!(error = %e, "upload quota lookup");
            StanzaError::internal()
        };
        let now = stanza::now_unix();
        let _admission = self.admission.lock().await;
        let charge = size.max(MIN_SLOT_CHARGE);
        let slots = if anonymous {
            &self.slots_by_visitor_address
        } else {
            &self.slots_by_account
        };
        if !slots.try_take(&quota_key) {
            return Err(
                StanzaError::new(ErrorType::Wait, StanzaCondition::ResourceConstraint)
                    .with_text("too many upload slots requested in the last hour; try again later"),
            );
        }
        if per_day > 0 {
            let used = self
                .store
                .upload_usage(&quota_key, now - 86_400)
                .await
                .map_err(internal)?
                + self.reserved(Some(&quota_key), now);
            if used.saturating_add(charge) > per_day {
                return Err(StanzaError::resource_constraint().with_text(format!(
                    "Quota reached: {used} of {per_day} bytes uploaded in the last 24 hours"
                )));
            }
        }
        if self.settings.total_quota > 0 {
            let stored =
                self.store.upload_total().await.map_err(internal)? + self.reserved(None, now);
            if stored.saturating_add(charge) > self.settings.total_quota {
                return Err(StanzaError::resource_constraint()
                    .with_text("the server's upload storage is full"));
            }
        }
        let id = format!("{:032x}", rand::random::<u128>());
        let exp = now.saturating_add(i64::try_from(self.settings.slot_lifetime).unwrap_or(0));
        self.reservations.insert(
            id.clone(),
            Reservation {
                quota_key: quota_key.clone(),
                size: charge,
                until: exp,
            },
        );
        let claims = SlotClaims {
            id: id.clone(),
            size,
            content_type,
            exp,
            owner: from.bare().to_string(),
            quota: quota_key,
            keep,
            name: filename.clone(),
        };
        let url = self.url(&id, &filename);
        tracing::debug!(%id, owner = %claims.owner, size, "upload slot");
        Ok(Build::new("slot", ns::UPLOAD)
            .child(
                Build::new("put", ns::UPLOAD)
                    .attr("url", url.clone())
                    .child(
                        Build::new("header", ns::UPLOAD)
                            .attr("name", "Authorization")
                            .text(self.sign(&claims))
                            .build(),
                    )
                    .build(),
            )
            .child(Build::new("get", ns::UPLOAD).attr("url", url).build())
            .build())
    }
}
