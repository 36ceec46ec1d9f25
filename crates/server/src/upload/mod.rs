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
//!
//! By concern: `names` (slot ids, file names, content types), `slots` (signed slots and the
//! HTTP side's checks), `request` (slot requests and quotas), `expiry` (the sweep).

mod expiry;
mod names;
mod request;
mod slots;

pub use names::{is_valid_id, media_type, sanitize_filename};
pub use slots::{PutGuard, PutRefusal, SlotClaims};

use crate::config::{Config, UploadConfig};
use crate::registry::Registry;
use crate::server::Server;
use crate::service::{self, ServiceContext, ServiceHost, ServiceInfo, ServiceStart};
use crate::stanza::forms::{DataForm, Field, FormType};
use crate::stanza::{self, ns, StanzaError};
use crate::storage::UploadStore;
use dashmap::DashMap;
use minidom::Element;
use std::path::PathBuf;
use std::sync::Arc;

/// The URL path under which uploads are served: `/upload/ID/NAME`.
pub const URL_PATH: &str = "/upload";

/// A slot reserved against the quotas until it is used or its time is over.
struct Reservation {
    quota_key: String,
    size: u64,
    until: i64,
}

pub struct UploadService {
    pub settings: UploadConfig,
    /// The records of uploaded files. The service holds its store rather than reaching it
    /// through a `ServiceContext`, because the HTTP side (PUT and GET) has no context.
    store: Arc<dyn UploadStore>,
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
    /// Slots handed out in the last hour, by quota key: accounts (`slots_per_hour`) and
    /// visitors' addresses (`anonymous.slots_per_hour`).
    slots_by_account: crate::limits::RateWindow<String>,
    slots_by_visitor_address: crate::limits::RateWindow<String>,
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
    /// Creates `data_dir/uploads` and the signing secret if they are missing. `store` keeps
    /// the records of uploaded files: the main storage, for accounts and visitors alike.
    pub fn new(
        settings: UploadConfig,
        config: &Config,
        store: Arc<dyn UploadStore>,
    ) -> anyhow::Result<Arc<UploadService>> {
        use anyhow::Context as _;
        let dir = config.data_dir.join("uploads");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let secret = crate::secret_file::load_or_create(&config.data_dir.join("upload-secret"))?;
        let hour = std::time::Duration::from_secs(3600);
        Ok(Arc::new(UploadService {
            slots_by_account: crate::limits::RateWindow::new(settings.slots_per_hour, hour),
            slots_by_visitor_address: crate::limits::RateWindow::new(
                settings.anonymous.slots_per_hour,
                hour,
            ),
            base_url: base_url(&settings, config),
            settings,
            store,
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
        format!("{}/{id}/{}", self.base_url, names::encode_segment(filename))
    }

    /// The disco#info of the service, with the maximum file size that applies to the asker.
    fn disco_info(&self, anonymous: bool) -> Element {
        let max = if anonymous {
            self.max_file_size(true)
        } else {
            self.settings.max_file_size
        };
        ServiceInfo {
            category: "store",
            kind: "file",
            name: "HTTP File Upload",
            features: &[ns::DISCO_INFO, ns::DISCO_ITEMS, ns::UPLOAD],
            forms: vec![DataForm::new(FormType::Result)
                .field(Field::form_type(ns::UPLOAD))
                .field(Field::untyped("max-file-size").value(max.to_string()))
                .to_element()],
        }
        .to_query()
    }
}

#[async_trait::async_trait]
impl ServiceHost for UploadService {
    async fn handle(&self, context: &ServiceContext, stanza: Element) {
        let Some(kind) = context.service_query_kind(&stanza) else {
            return;
        };
        // Any sender is answered (RFC 6120 §8.2.3): another server's disco or ping comes from
        // its bare domain.
        let Some(Ok(from)) = stanza.attr("from").map(jid::Jid::new) else {
            return;
        };
        let anonymous = context.is_anonymous_host(from.domain().as_str());
        let Some(payload) = stanza::first_child(&stanza).filter(|_| stanza.children().count() == 1)
        else {
            context.bounce(
                &stanza,
                StanzaError::bad_request("an IQ get or set carries exactly one payload"),
            );
            return;
        };
        // The service has no nodes: its disco#info names none (XEP-0030 §3.2).
        let info = |node: Option<&str>| match node {
            Some(_) => Err(StanzaError::item_not_found()),
            None => Ok(self.disco_info(anonymous)),
        };
        let items = |_node: Option<&str>| Ok(service::no_items());
        let reply = match service::answer_discovery_or_ping(kind, payload, info, items) {
            Some(answer) => answer,
            None if kind == "get" && payload.is("request", ns::UPLOAD) => {
                match from.try_as_full() {
                    Ok(from) => self.request_slot(context, from, payload).await.map(Some),
                    Err(_) => Err(StanzaError::not_allowed().with_text("slots are for users")),
                }
            }
            None => Err(StanzaError::service_unavailable()),
        };
        context.answer_iq(&stanza, reply);
    }
}

/// The service's start: the expiry sweep.
pub fn register(registry: &mut Registry<Server>, service: Arc<UploadService>) {
    let domain = service.settings.domain.clone();
    service::on_start(registry, &domain, Arc::new(Startup(service)));
}

struct Startup(Arc<UploadService>);

#[async_trait::async_trait]
impl ServiceStart for Startup {
    async fn started(&self, context: &ServiceContext) {
        expiry::start_expiry(context.clone(), self.0.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
