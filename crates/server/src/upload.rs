//! HTTP File Upload (XEP-0363) on `[upload] domain`: service discovery, slot requests with their
//! limits (file size, content types, a daily quota per uploader, a total quota, stricter settings
//! for anonymous visitors), signed slots, and the sweep that deletes expired files.
//!
//! A slot is a PUT URL `BASE/upload/ID/NAME` plus an `Authorization` header holding a token: the
//! slot's claims (id, size, content type, slot expiry, uploader, file lifetime, name) as JSON,
//! and an HMAC-SHA256 of them under a secret generated once into `data_dir/upload-secret`. The
//! HTTP side (`salon-web`) checks the token, the size and the type, streams the body to
//! `data_dir/uploads/ID.part` and moves it to `data_dir/uploads/ID` when complete; the GET URL is
//! the same address. File names on disk are always the server's random ID, never the client's.
//! A slot can be used once: a second PUT finds the record (or the PUT in progress) and is
//! refused. Slots survive a restart (the token carries everything); quota reservations for
//! unused slots do not, which only errs on the generous side for a few minutes.
//!
//! Upload records live in the main (persistent) storage for accounts and anonymous visitors
//! alike: the file is on disk either way, and its record is what lets the sweep delete it after
//! a restart.

use crate::config::{Config, UploadConfig};
use crate::hooks::{priority, ServerHook};
use crate::registry::Registry;
use crate::router::ServiceHost;
use crate::server::Server;
use crate::stanza::{self, ns, Build, ErrorType, StanzaError};
use crate::storage::{StorageError, StorageResult, UploadRecord};
use base64::Engine as _;
use dashmap::DashMap;
use hmac::{Hmac, Mac};
use minidom::Element;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const NS_UPLOAD: &str = "urn:xmpp:http:upload:0";

/// The URL path under which uploads are served: `/upload/ID/NAME`.
pub const URL_PATH: &str = "/upload";

/// Bytes of the signing secret.
const SECRET_LEN: usize = 32;

/// Longest file name kept (in bytes, cut at a character boundary).
const MAX_FILENAME: usize = 200;

/// Expired records handled per storage round trip in a sweep.
const SWEEP_BATCH: usize = 256;

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

/// A slot reserved against the quotas until it is used or its time is over.
struct Reservation {
    quota_key: String,
    size: u64,
    until: i64,
}

pub struct UploadService {
    pub settings: UploadConfig,
    /// `data_dir/uploads`.
    dir: PathBuf,
    secret: Vec<u8>,
    /// `BASE/upload`, without a trailing slash.
    base_url: String,
    reservations: DashMap<String, Reservation>,
    /// Slots whose PUT is running.
    in_progress: DashMap<String, ()>,
    /// Held while checking the quotas and reserving, so two requests cannot both pass on the
    /// same remaining quota.
    admission: tokio::sync::Mutex<()>,
}

/// Whether `id` looks like a slot id; anything else never reaches the file system.
pub fn is_valid_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The client's file name as kept: its last path component, without control characters, at most
/// [`MAX_FILENAME`] bytes, `file` if nothing is left. Never used on disk.
pub fn sanitize_filename(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = last.chars().filter(|c| !c.is_control()).collect();
    let mut cleaned = cleaned.trim().to_string();
    if cleaned.len() > MAX_FILENAME {
        let mut end = MAX_FILENAME;
        while !cleaned.is_char_boundary(end) {
            end -= 1;
        }
        cleaned.truncate(end);
    }
    if cleaned.is_empty() || cleaned == "." || cleaned == ".." {
        "file".to_string()
    } else {
        cleaned
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// The lower-case `type/subtype` of a content type, if it is one.
pub fn media_type(content_type: &str) -> Option<String> {
    let essence = content_type.split(';').next()?.trim().to_ascii_lowercase();
    let (kind, subtype) = essence.split_once('/')?;
    (is_token(kind) && is_token(subtype)).then_some(essence)
}

/// A content type from a slot request, normalised to `type/subtype` plus a `charset` if one
/// was given; other parameters are dropped. `None` if it is not a content type.
fn normalise_content_type(content_type: &str) -> Option<String> {
    let essence = media_type(content_type)?;
    let charset = content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        let value = value.trim().trim_matches('"');
        (name.trim().eq_ignore_ascii_case("charset") && is_token(value))
            .then(|| value.to_ascii_lowercase())
    });
    Some(match charset {
        Some(charset) => format!("{essence}; charset={charset}"),
        None => essence,
    })
}

/// Whether a media type matches an `allowed_types` pattern (`image/png`, `image/*`, `*/*`).
fn type_allowed(media_type: &str, pattern: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    match (media_type.split_once('/'), pattern.split_once('/')) {
        (Some((kind, sub)), Some((pkind, psub))) => {
            (pkind == "*" || pkind == kind) && (psub == "*" || psub == sub)
        }
        _ => false,
    }
}

/// Percent-encode a file name for one URL path segment (RFC 3986 unreserved characters stay).
fn encode_segment(segment: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(segment, SET).to_string()
}

/// The secret slots are signed with: read from `path`, or made and written there on first start.
fn load_or_create_secret(path: &Path) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context as _;
    match std::fs::read(path) {
        Ok(secret) if secret.len() >= SECRET_LEN => return Ok(secret),
        Ok(_) => anyhow::bail!(
            "{} is shorter than {SECRET_LEN} bytes; delete it to have a new one made",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    let mut secret = vec![0u8; SECRET_LEN];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut secret);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    std::io::Write::write_all(&mut file, &secret)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(secret)
}

/// `BASE/upload`: `upload.public_url`, else `http.public_url`, else `https://DOMAIN:PORT` of
/// `listen.https` (its certificate names the domain), else `http://` + `listen.http` (the domain
/// for an unspecified address such as `0.0.0.0`).
fn base_url(settings: &UploadConfig, config: &Config) -> String {
    let listen = &config.listen;
    let base = match (&settings.public_url, &config.http.public_url) {
        (Some(url), _) | (None, Some(url)) => url.trim_end_matches('/').to_string(),
        (None, None) => match (listen.https, listen.http) {
            (Some(addr), _) => format!("https://{}:{}", config.domain, addr.port()),
            (None, Some(addr)) if addr.ip().is_unspecified() => {
                format!("http://{}:{}", config.domain, addr.port())
            }
            (None, Some(addr)) => format!("http://{addr}"),
            // Refused by config validation; only reachable with a hand-made Config.
            (None, None) => format!("http://{}", config.domain),
        },
    };
    format!("{base}{URL_PATH}")
}

impl UploadService {
    /// Creates `data_dir/uploads` and the signing secret if they are missing.
    pub fn new(settings: UploadConfig, config: &Config) -> anyhow::Result<Arc<UploadService>> {
        use anyhow::Context as _;
        let dir = config.data_dir.join("uploads");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let secret = load_or_create_secret(&config.data_dir.join("upload-secret"))?;
        Ok(Arc::new(UploadService {
            base_url: base_url(&settings, config),
            settings,
            dir,
            secret,
            reservations: DashMap::new(),
            in_progress: DashMap::new(),
            admission: tokio::sync::Mutex::new(()),
        }))
    }

    /// Where a completed upload is kept.
    pub fn file_path(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Where an upload in progress is written; moved to [`file_path`](Self::file_path) when
    /// complete.
    pub fn temp_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.part"))
    }

    /// The GET (and PUT) URL of a slot.
    pub fn url(&self, id: &str, filename: &str) -> String {
        format!("{}/{id}/{}", self.base_url, encode_segment(filename))
    }

    fn mac(&self) -> HmacSha256 {
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
        server: &Server,
        id: &str,
        authorization: Option<&str>,
    ) -> Result<SlotClaims, PutRefusal> {
        let claims = authorization
            .and_then(|a| self.verify(id, a))
            .ok_or(PutRefusal::BadToken)?;
        if self.in_progress.contains_key(id) {
            return Err(PutRefusal::Used);
        }
        match server.storage.upload_get(id).await {
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
    pub async fn complete(&self, server: &Server, claims: &SlotClaims) -> StorageResult<()> {
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
        server.storage.upload_add(&record).await?;
        self.reservations.remove(&claims.id);
        tracing::info!(id = %claims.id, owner = %claims.owner, size = claims.size, "file uploaded");
        Ok(())
    }

    /// The record of a file that may be served now (uploaded and not expired).
    pub async fn servable(&self, server: &Server, id: &str) -> StorageResult<Option<UploadRecord>> {
        if !is_valid_id(id) {
            return Ok(None);
        }
        let now = stanza::now_unix();
        Ok(server
            .storage
            .upload_get(id)
            .await?
            .filter(|r| r.expires_at.is_none_or(|at| at > now)))
    }

    /// The disco#info of the service, with the maximum file size that applies to the asker.
    fn disco_info(&self, anonymous: bool) -> Element {
        let max = if anonymous {
            self.max_file_size(true)
        } else {
            self.settings.max_file_size
        };
        let field = |var: &str, value: String, hidden: bool| {
            Build::new("field", ns::DATA_FORMS)
                .attr("var", var.to_string())
                .attr_opt("type", hidden.then_some("hidden"))
                .child(Build::new("value", ns::DATA_FORMS).text(value).build())
                .build()
        };
        Build::new("query", ns::DISCO_INFO)
            .child(
                Build::new("identity", ns::DISCO_INFO)
                    .attr("category", "store")
                    .attr("type", "file")
                    .attr("name", "HTTP File Upload")
                    .build(),
            )
            .children(
                [ns::DISCO_INFO, ns::DISCO_ITEMS, NS_UPLOAD]
                    .into_iter()
                    .map(|f| Build::new("feature", ns::DISCO_INFO).attr("var", f).build()),
            )
            .child(
                Build::new("x", ns::DATA_FORMS)
                    .attr("type", "result")
                    .child(field("FORM_TYPE", NS_UPLOAD.to_string(), true))
                    .child(field("max-file-size", max.to_string(), false))
                    .build(),
            )
            .build()
    }

    fn max_file_size(&self, anonymous: bool) -> u64 {
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
    async fn request_slot(
        &self,
        server: &Arc<Server>,
        from: &jid::FullJid,
        request: &Element,
    ) -> Result<Element, StanzaError> {
        let domain = from.domain().as_str();
        if !server.is_local_user_host(domain) {
            return Err(StanzaError::forbidden()
                .with_text("only users of this server may upload files here"));
        }
        let anonymous = server.is_anonymous_host(domain);
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
            let mut error = StanzaError::new(ErrorType::Modify, "not-acceptable").with_text(
                format!("File too large. The maximum file size is {max} bytes"),
            );
            error.extra = Some(Box::new(
                Build::new("file-too-large", NS_UPLOAD)
                    .child(
                        Build::new("max-file-size", NS_UPLOAD)
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
            return Err(StanzaError::new(ErrorType::Modify, "not-acceptable")
                .with_text(format!("files of type {media} are not accepted here")));
        }
        let (quota_key, per_day, keep) = if anonymous {
            let ip = server
                .router
                .session(from)
                .map(|s| s.peer_ip.to_string())
                .unwrap_or_else(|| from.to_bare().to_string());
            (
                format!("ip:{ip}"),
                self.settings.anonymous.quota_per_day,
                self.settings.anonymous.expire_after,
            )
        } else {
            (
                from.to_bare().to_string(),
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
        if per_day > 0 {
            let used = server
                .storage
                .upload_usage(&quota_key, now - 86_400)
                .await
                .map_err(internal)?
                + self.reserved(Some(&quota_key), now);
            if used.saturating_add(size) > per_day {
                return Err(StanzaError::resource_constraint().with_text(format!(
                    "Quota reached: {used} of {per_day} bytes uploaded in the last 24 hours"
                )));
            }
        }
        if self.settings.total_quota > 0 {
            let stored =
                server.storage.upload_total().await.map_err(internal)? + self.reserved(None, now);
            if stored.saturating_add(size) > self.settings.total_quota {
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
                size,
                until: exp,
            },
        );
        let claims = SlotClaims {
            id: id.clone(),
            size,
            content_type,
            exp,
            owner: from.to_bare().to_string(),
            quota: quota_key,
            keep,
            name: filename.clone(),
        };
        let url = self.url(&id, &filename);
        tracing::debug!(%id, owner = %claims.owner, size, "upload slot");
        Ok(Build::new("slot", NS_UPLOAD)
            .child(
                Build::new("put", NS_UPLOAD)
                    .attr("url", url.clone())
                    .child(
                        Build::new("header", NS_UPLOAD)
                            .attr("name", "Authorization")
                            .text(self.sign(&claims))
                            .build(),
                    )
                    .build(),
            )
            .child(Build::new("get", NS_UPLOAD).attr("url", url).build())
            .build())
    }

    /// Delete expired files and their records, and forget reservations whose slot is over.
    pub async fn sweep(&self, server: &Server) {
        let now = stanza::now_unix();
        self.reservations.retain(|_, r| r.until >= now);
        let mut deleted = 0usize;
        'batches: loop {
            let expired = match server.storage.upload_expired(now, SWEEP_BATCH).await {
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
                if let Err(e) = server.storage.upload_delete(&record.id).await {
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
    async fn remove_partial_files(&self) {
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

#[async_trait::async_trait]
impl ServiceHost for UploadService {
    async fn handle(&self, server: &Arc<Server>, stanza: Element) {
        let Some(kind) = server.service_query_kind(&stanza) else {
            return;
        };
        let Some(Ok(from)) = stanza.attr("from").map(jid::FullJid::new) else {
            return;
        };
        let anonymous = server.is_anonymous_host(from.domain().as_str());
        let Some(payload) = stanza::first_child(&stanza).filter(|_| stanza.children().count() == 1)
        else {
            server.bounce(
                &stanza,
                StanzaError::bad_request("an IQ get or set carries exactly one payload"),
            );
            return;
        };
        let reply = match (kind, payload.ns().as_str(), payload.name()) {
            ("get", ns::DISCO_INFO, "query") => {
                if payload.attr("node").is_some() {
                    Err(StanzaError::item_not_found())
                } else {
                    Ok(Some(self.disco_info(anonymous)))
                }
            }
            ("get", ns::DISCO_ITEMS, "query") => {
                Ok(Some(Build::new("query", ns::DISCO_ITEMS).build()))
            }
            ("get", ns::PING, "ping") => Ok(None),
            ("get", NS_UPLOAD, "request") => {
                self.request_slot(server, &from, payload).await.map(Some)
            }
            _ => Err(StanzaError::service_unavailable()),
        };
        server.answer_iq(&stanza, reply);
    }
}

/// The service's start: the expiry sweep.
pub fn register(registry: &mut Registry, service: Arc<UploadService>) {
    registry
        .hooks
        .on_server(priority::OBSERVE, Arc::new(Startup(service)));
}

struct Startup(Arc<UploadService>);

#[async_trait::async_trait]
impl ServerHook for Startup {
    async fn started(&self, server: &Arc<Server>) {
        start_expiry(server.clone(), self.0.clone());
    }
}

/// Start the periodic sweep of expired uploads (every `upload.sweep_interval` seconds), after
/// removing partial files from a previous run. Stops at shutdown.
fn start_expiry(server: Arc<Server>, service: Arc<UploadService>) {
    tokio::spawn(async move {
        service.remove_partial_files().await;
        let mut shutdown = server.shutdown_signal();
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(
            service.settings.sweep_interval,
        ));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => service.sweep(&server).await,
                _ = crate::server::shutdown_requested(&mut shutdown) => return,
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filenames_never_carry_a_path() {
        assert_eq!(sanitize_filename("../../etc/passwd"), "passwd");
        assert_eq!(sanitize_filename("..\\..\\boot.ini"), "boot.ini");
        assert_eq!(sanitize_filename(".."), "file");
        assert_eq!(sanitize_filename("a/"), "file");
        assert_eq!(sanitize_filename("très\ncool.jpg"), "trèscool.jpg");
        let long = "é".repeat(150);
        assert!(sanitize_filename(&long).len() <= MAX_FILENAME);
        assert_eq!(encode_segment("très cool.jpg"), "tr%C3%A8s%20cool.jpg");
        assert_eq!(encode_segment("a/b?c#d"), "a%2Fb%3Fc%23d");
    }

    #[test]
    fn content_types() {
        assert_eq!(
            normalise_content_type("Text/Plain; Charset=UTF-8; x=y").as_deref(),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(
            normalise_content_type("image/png").as_deref(),
            Some("image/png")
        );
        assert_eq!(normalise_content_type("image"), None);
        assert_eq!(normalise_content_type("image/png\r\nX: y"), None);
        assert!(type_allowed("image/png", "image/*"));
        assert!(type_allowed("image/png", "*/*"));
        assert!(type_allowed("image/png", "IMAGE/PNG"));
        assert!(!type_allowed("text/html", "image/*"));
    }

    #[test]
    fn base_urls() {
        let mut config = Config::default();
        let settings = UploadConfig::new("upload.localhost");
        assert_eq!(base_url(&settings, &config), "http://127.0.0.1:5280/upload");
        config.listen.http = Some("0.0.0.0:80".parse().unwrap());
        assert_eq!(base_url(&settings, &config), "http://localhost:80/upload");
        config.listen.https = Some("[::]:5443".parse().unwrap());
        assert_eq!(
            base_url(&settings, &config),
            "https://localhost:5443/upload"
        );
        config.http.public_url = Some("https://chat.example/".into());
        assert_eq!(base_url(&settings, &config), "https://chat.example/upload");
        let mut own = settings.clone();
        own.public_url = Some("https://files.example".into());
        assert_eq!(base_url(&own, &config), "https://files.example/upload");
    }

    #[test]
    fn ids() {
        assert!(is_valid_id(&format!("{:032x}", 7u128)));
        assert!(!is_valid_id("../../../../../../../etc/passwd"));
        assert!(!is_valid_id(&"A".repeat(32)));
    }
}
