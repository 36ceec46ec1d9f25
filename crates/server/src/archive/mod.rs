//! Message archives (XEP-0313 Message Archive Management with XEP-0059 paging) of rooms and
//! accounts: the ordered, bounded writer they append through, the query protocol, retention.

mod writer;

pub use writer::ArchiveWriter;

use crate::durable::LatestCommit;
use crate::extensions::Extensions;
use crate::hooks::{priority, ServerHook};
use crate::registry::Registry;
use crate::router::SessionHandle;
use crate::server::Server;
use crate::service::ServiceContext;
use crate::stanza::forms::{DataForm, Field, FieldType, FormType};
use crate::stanza::Bare;
use crate::stanza::{ns, Build, StanzaError};
use crate::storage::prelude::*;
use crate::storage::{ArchiveQuery, StorageError};
use minidom::Element;
use std::sync::Arc;

/// Largest page a client may ask for.
const MAX_PAGE: usize = 250;
const DEFAULT_PAGE: usize = 50;

/// The writer is flushed at shutdown, after the last stream closed and before the storage.
pub fn register(registry: &mut Registry<Server>) {
    registry
        .hooks
        .on_server(priority::DELIVER, Arc::new(FlushAtStop));
}

/// What the archive needs from whoever keeps one: the archive store, the server-wide slots
/// where the one writer lives, and the sessions query results go to. Both the server (for
/// accounts' archives, XEP-0313 §4) and a service's context (for rooms', §6) provide it, so
/// neither rooms nor accounts hand the archive more than that.
pub trait ArchiveHost: Send + Sync {
    fn archive_store(&self) -> Arc<dyn ArchiveStore>;
    fn extensions(&self) -> &Extensions;
    fn local_session(&self, full: &jid::FullJid) -> Option<Arc<SessionHandle>>;
    /// Send a query result to a requester on another server (a remote room occupant);
    /// `false` where there is no such path (accounts' archives answer local sessions only).
    fn send_remote(&self, _to: &jid::FullJid, _stanza: &Element) -> bool {
        false
    }
}

impl ArchiveHost for Server {
    fn archive_store(&self) -> Arc<dyn ArchiveStore> {
        self.storage.clone()
    }

    fn extensions(&self) -> &Extensions {
        &self.extensions
    }

    fn local_session(&self, full: &jid::FullJid) -> Option<Arc<SessionHandle>> {
        self.router.session(full)
    }
}

impl ArchiveHost for ServiceContext {
    fn archive_store(&self) -> Arc<dyn ArchiveStore> {
        ServiceContext::archive_store(self)
    }

    fn extensions(&self) -> &Extensions {
        ServiceContext::extensions(self)
    }

    fn local_session(&self, full: &jid::FullJid) -> Option<Arc<SessionHandle>> {
        ServiceContext::local_session(self, full)
    }

    fn send_remote(&self, to: &jid::FullJid, stanza: &Element) -> bool {
        ServiceContext::send_remote(
            self,
            to,
            &crate::session_handle::AddressedTemplate::new(stanza),
        )
    }
}

/// The server's one writer, in a server-wide slot; started on first use (inside the runtime).
#[derive(Default)]
struct WriterSlot(std::sync::OnceLock<ArchiveWriter>);

/// The archive writer shared by rooms and accounts.
pub fn writer(host: &dyn ArchiveHost) -> ArchiveWriter {
    host.extensions()
        .get_or_default::<WriterSlot>()
        .0
        .get_or_init(|| {
            let latest = host.extensions().get_or_default::<LatestCommit>();
            ArchiveWriter::start(host.archive_store(), latest)
        })
        .clone()
}

struct FlushAtStop;

#[async_trait::async_trait]
impl ServerHook<Server> for FlushAtStop {
    async fn stopping(&self, server: &Arc<Server>) {
        // Only a writer that was started has anything to write.
        if let Some(writer) = server
            .extensions
            .get::<WriterSlot>()
            .and_then(|s| s.0.get().cloned())
        {
            writer.flush().await;
        }
    }
}

/// A new XEP-0359 stanza id: the time first, so ids sort roughly by age, then 64 random bits,
/// so nobody can guess another message's id.
pub fn new_stanza_id() -> String {
    // What `format!("{:x}{:016x}", …)` gives, without its formatting pass (a tenth of the
    // instructions; two ids per one-to-one message).
    fn hex(value: u64, digits: usize, out: &mut String) {
        for shift in (0..digits).rev() {
            out.push(char::from(
                b"0123456789abcdef"[(value >> (shift * 4)) as usize & 0xf],
            ));
        }
    }
    let micros = chrono::Utc::now().timestamp_micros().max(0) as u64;
    let time_digits = (16 - micros.leading_zeros() as usize / 4).max(1);
    let mut id = String::with_capacity(time_digits + 16);
    hex(micros, time_digits, &mut id);
    hex(rand::random::<u64>(), 16, &mut id);
    id
}

/// The query form's fields (XEP-0313 §5.1.1), answered to a `get`.
pub fn query_form() -> Element {
    let form = DataForm::new(FormType::Form)
        .field(Field::form_type(ns::MAM))
        .field(Field::new("with", FieldType::JidSingle))
        .field(Field::new("start", FieldType::TextSingle))
        .field(Field::new("end", FieldType::TextSingle))
        .field(Field::new("before-id", FieldType::TextSingle))
        .field(Field::new("after-id", FieldType::TextSingle));
    Build::new("query", ns::MAM)
        .child(form.to_element())
        .build()
}

fn parse_time(value: &str) -> Result<i64, StanzaError> {
    chrono::DateTime::parse_from_rfc3339(value)
        .map(|d| d.timestamp_micros())
        .map_err(|_| StanzaError::bad_request(format!("`{value}` is not a XEP-0082 date-time")))
}

/// How an archive records the other party of each message, which the `with` filter matches.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum WithKind {
    /// The full address (a room's archive: the occupant JID).
    Full,
    /// The bare JID (an account's archive: a contact, whatever resource it used). A full JID
    /// in a query is taken as its bare JID, so it finds a superset of what it asked for.
    Bare,
}

/// Turn the `<query/>` into an [`ArchiveQuery`].
fn parse_query(query: &Element, with_kind: WithKind) -> Result<ArchiveQuery, StanzaError> {
    let mut parsed = ArchiveQuery {
        limit: DEFAULT_PAGE,
        ..Default::default()
    };
    let form = query
        .get_child("x", ns::DATA_FORMS)
        .and_then(|x| DataForm::parse(x).ok());
    if let Some(form) = form {
        for field in &form.fields {
            let Some(value) = field.first_value().filter(|v| !v.is_empty()) else {
                continue;
            };
            let value = value.to_string();
            match field.var.as_deref().unwrap_or_default() {
                "FORM_TYPE" if value != ns::MAM => {
                    return Err(StanzaError::bad_request("unknown FORM_TYPE"));
                }
                "with" => {
                    let with = jid::Jid::new(&value).map_err(|_| StanzaError::jid_malformed())?;
                    parsed.with = Some(match with_kind {
                        WithKind::Full => with.to_string(),
                        WithKind::Bare => with.bare().to_string(),
                    });
                }
                "start" => parsed.start = Some(parse_time(&value)?),
                "end" => parsed.end = Some(parse_time(&value)?),
                "after-id" => parsed.after_id = Some(value),
                "before-id" => {
                    parsed.before_id = Some(value);
                    parsed.from_end = true;
                }
                _ => {}
            }
        }
    }
    if let Some(set) = query.get_child("set", ns::RSM) {
        if let Some(max) = set.get_child("max", ns::RSM) {
            parsed.limit = max
                .text()
                .trim()
                .parse::<usize>()
                .map_err(|_| StanzaError::bad_request("RSM max is not a number"))?
                .min(MAX_PAGE);
        }
        if let Some(after) = set.get_child("after", ns::RSM) {
            parsed.after_id = Some(after.text());
        }
        if let Some(before) = set.get_child("before", ns::RSM) {
            // An empty <before/> asks for the last page (XEP-0059 §2.5).
            let id = before.text();
            parsed.from_end = true;
            if !id.is_empty() {
                parsed.before_id = Some(id);
            }
        }
    }
    Ok(parsed)
}

/// Run a query against `archive` and send the results to `to`, then return the `<fin/>`.
pub async fn answer_query(
    host: &dyn ArchiveHost,
    archive: &str,
    to: &jid::FullJid,
    query: &Element,
    with_kind: WithKind,
) -> Result<Option<Element>, StanzaError> {
    let parsed = parse_query(query, with_kind)?;
    let page = match host.archive_store().archive_query(archive, &parsed).await {
        Ok(page) => page,
        Err(StorageError::NotFound) => {
            return Err(StanzaError::item_not_found().with_text("no message with that id"))
        }
        Err(e) => {
            tracing::error!(archive, error = %e, "archive query");
            return Err(StanzaError::internal());
        }
    };
    let query_id = query.attr("queryid");
    let session = host.local_session(to);
    // One write for the page, not one per result.
    let _burst = session.as_ref().map(|session| session.burst());
    for message in &page.messages {
        let Some(original) = salon_xml::parse_stored(&message.stanza, ns::CLIENT) else {
            continue;
        };
        let result = Build::new("message", ns::CLIENT)
            .attr("from", archive.to_string())
            .attr("to", to.to_string())
            .attr("id", format!("mam-{:x}", rand::random::<u64>()))
            .child(
                Build::new("result", ns::MAM)
                    .attr_opt("queryid", query_id)
                    .attr("id", message.id.clone())
                    .child(
                        Build::new("forwarded", ns::FORWARD)
                            .child(
                                Build::new("delay", ns::DELAY)
                                    .attr("stamp", micros_to_datetime(message.timestamp))
                                    .build(),
                            )
                            .child(original)
                            .build(),
                    )
                    .build(),
            )
            .build();
        // A local session directly, else a remote occupant through federation (its results
        // share the room's stream with the IQ answer that follows, so they arrive first).
        let sent = match &session {
            Some(session) => {
                session.send_element(&result);
                true
            }
            None => host.send_remote(to, &result),
        };
        if !sent {
            return Ok(None);
        }
    }

    let mut set = Build::new("set", ns::RSM);
    if let (Some(first), Some(last)) = (page.messages.first(), page.messages.last()) {
        set = set
            .child(
                Build::new("first", ns::RSM)
                    .attr("index", "0")
                    .text(first.id.clone())
                    .build(),
            )
            .child(Build::new("last", ns::RSM).text(last.id.clone()).build());
    }
    set = set.child(
        Build::new("count", ns::RSM)
            .text(page.count.to_string())
            .build(),
    );
    let mut fin = Build::new("fin", ns::MAM).child(set.build());
    if page.complete {
        fin = fin.attr("complete", "true");
    }
    Ok(Some(fin.build()))
}

fn micros_to_datetime(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// Delete messages of the archives on `domains` past the retention period: now, then hourly,
/// until the server shuts down (a sweep must not delete under the shutdown's final flush).
/// Returns the sweep's task, if one was started.
pub fn start_retention(
    store: Arc<dyn ArchiveStore>,
    domains: Vec<String>,
    days: u64,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    if days == 0 || domains.is_empty() {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = crate::service::shutdown_requested(&mut shutdown) => break,
            }
            let cutoff = chrono::Utc::now().timestamp_micros() - (days as i64) * 86_400_000_000;
            for domain in &domains {
                match store.archive_expire(domain, cutoff).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(domain, deleted = n, "expired archived messages"),
                    Err(e) => tracing::error!(domain, error = %e, "expiring archived messages"),
                }
            }
        }
        tracing::debug!(?domains, "archive retention sweep stopped");
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::memory::MemoryStorage;

    /// Ids are the time in hexadecimal, then 16 random hexadecimal digits: they sort by age.
    #[test]
    fn stanza_ids_carry_the_time_then_randomness() {
        let before = chrono::Utc::now().timestamp_micros();
        let id = new_stanza_id();
        let after = chrono::Utc::now().timestamp_micros();
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        let (time, random) = id.split_at(id.len() - 16);
        let time = i64::from_str_radix(time, 16).expect("hexadecimal time");
        assert!((before..=after).contains(&time), "{id}");
        assert_ne!(random, &new_stanza_id()[id.len() - 16..]);
        assert_eq!(format!("{time:x}"), id[..id.len() - 16]);
    }

    /// The retention sweep ends when the server shuts down.
    #[tokio::test]
    async fn the_retention_sweep_stops_at_shutdown() {
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let store: Arc<dyn ArchiveStore> = Arc::new(MemoryStorage::new());
        let sweep = start_retention(store, vec!["rooms.localhost".into()], 1, shutdown)
            .expect("a sweep with a retention");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!sweep.is_finished());
        stop.send(true).expect("the sweep listens");
        tokio::time::timeout(std::time::Duration::from_secs(5), sweep)
            .await
            .expect("the sweep ends at shutdown")
            .expect("without a panic");
    }
}
