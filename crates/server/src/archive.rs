//! Message archives (XEP-0313 Message Archive Management with XEP-0059 paging) of rooms and
//! accounts: the ordered, bounded writer they append through, the query protocol, retention.

use crate::durable::{Commit, Completer, LatestCommit};
use crate::extensions::Extensions;
use crate::hooks::{priority, ServerHook};
use crate::registry::Registry;
use crate::router::SessionHandle;
use crate::server::Server;
use crate::service::ServiceContext;
use crate::stanza::forms::{DataForm, Field, FieldType, FormType};
use crate::stanza::{ns, Build, StanzaError};
use crate::storage::prelude::*;
use crate::storage::{ArchiveQuery, ArchivedMessage, StorageError};
use minidom::Element;
use std::sync::Arc;
use tokio::sync::oneshot;

/// Messages waiting to be written; rooms wait for a storage that falls this far behind rather
/// than grow memory.
const WRITER_QUEUE: usize = 4096;
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

/// What the writer has still to write: the batch being gathered and the commit its messages
/// share, and the flushes waiting for it.
struct Gathering {
    batch: Vec<(String, ArchivedMessage)>,
    /// The commit of every message in `batch`: one per transaction, so a session holding
    /// several of them is registered and woken once.
    commit: Commit,
    done: Completer,
    flushes: Vec<oneshot::Sender<()>>,
}

impl Gathering {
    fn new() -> Gathering {
        let (commit, done) = Commit::pending();
        Gathering {
            batch: Vec::new(),
            commit,
            done,
            flushes: Vec::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.batch.is_empty() && self.flushes.is_empty()
    }
}

/// The writer thread's side of the queue.
struct Queue {
    gathering: Gathering,
    /// The thread waits for work: whoever gives it some wakes it (and only then, since a wake
    /// is a system call).
    idle: bool,
    /// Every [`ArchiveWriter`] is gone: the thread ends once it has written what is left.
    stopped: bool,
}

struct WriterState {
    queue: std::sync::Mutex<Queue>,
    work: std::sync::Condvar,
    /// One permit per message that may still be queued: appenders wait for the writer when
    /// it falls [`WRITER_QUEUE`] messages behind rather than grow memory.
    room: tokio::sync::Semaphore,
}

impl WriterState {
    /// Runs `change` on the queue and wakes the thread if it waits.
    fn give<T>(&self, change: impl FnOnce(&mut Gathering) -> T) -> T {
        let (given, wake) = {
            let mut queue = lock(&self.queue);
            let given = change(&mut queue.gathering);
            (given, std::mem::take(&mut queue.idle))
        };
        if wake {
            self.work.notify_one();
        }
        given
    }

    /// The next batch, waiting for one; `None` once stopped with nothing left.
    fn take(&self) -> Option<Gathering> {
        let mut queue = lock(&self.queue);
        loop {
            if !queue.gathering.is_empty() {
                return Some(std::mem::replace(&mut queue.gathering, Gathering::new()));
            }
            if queue.stopped {
                return None;
            }
            queue.idle = true;
            queue = self
                .work
                .wait(queue)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    /// The writer thread: batches are written one after the other, so waiting for one means
    /// waiting for all before it. Commits are completed here, which wakes the sessions that
    /// hold their messages directly, without a hop through a task of the runtime.
    fn run(&self, storage: &dyn ArchiveStore) {
        while let Some(Gathering {
            batch,
            done,
            flushes,
            ..
        }) = self.take()
        {
            if !batch.is_empty() {
                self.room.add_permits(batch.len());
                if let Err(e) = storage.archive_append_blocking(&batch) {
                    tracing::error!(error = %e, messages = batch.len(), "archiving messages");
                }
            }
            done.complete();
            for flush in flushes {
                let _ = flush.send(());
            }
        }
    }
}

/// Stops the writer thread when the last [`ArchiveWriter`] goes (with its server).
struct WriterHandle {
    state: Arc<WriterState>,
    /// The server's latest commit, updated with each append (under the queue's lock, so the
    /// latest is always the batch of the last message queued).
    latest: Arc<LatestCommit>,
}

impl Drop for WriterHandle {
    fn drop(&mut self) {
        lock(&self.state.queue).stopped = true;
        self.state.work.notify_one();
    }
}

/// Appends messages in order, off the rooms' and sessions' tasks, on a thread of its own that
/// calls the store's blocking append ([`ArchiveStore::archive_append_blocking`]: SQLite writes
/// on a connection of its own, with no hand-off to the runtime and back). One writer serves
/// every archive, with group commit and no fixed window: an append while the writer is idle is
/// written at once, and everything appended while a transaction runs goes into the next one,
/// which starts as soon as that one ends; so batches grow with the load and an idle server
/// adds no latency. Whoever appends gets the [`Commit`] of its batch and goes on at once; what
/// shows the message (the room's echo and fan-out, the delivery to a recipient, a
/// stream-management answer) is held behind that commit in the recipients' queues (XEP-0313
/// §2.1: what was shown as sent is in the archive), so a crash right after an echo loses
/// nothing and nobody's loop waits for the disk.
#[derive(Clone)]
pub struct ArchiveWriter(Arc<WriterHandle>);

impl ArchiveWriter {
    /// Starts the writer on `storage`, which needs to be an archive store only: a whole
    /// `Arc<dyn Storage>` is one too. `latest` is where it tells which commit is the last.
    /// Called inside the runtime, whose context the writer's thread keeps (a store without a
    /// blocking path runs its async append there).
    pub fn start(storage: Arc<dyn ArchiveStore>, latest: Arc<LatestCommit>) -> ArchiveWriter {
        let state = Arc::new(WriterState {
            queue: std::sync::Mutex::new(Queue {
                gathering: Gathering::new(),
                idle: false,
                stopped: false,
            }),
            work: std::sync::Condvar::new(),
            room: tokio::sync::Semaphore::new(WRITER_QUEUE),
        });
        let runtime = tokio::runtime::Handle::current();
        let thread_state = state.clone();
        let thread_storage = storage.clone();
        let spawned = std::thread::Builder::new()
            .name("archive-writer".into())
            .spawn(move || {
                let _context = runtime.enter();
                thread_state.run(thread_storage.as_ref());
            });
        if let Err(error) = spawned {
            // Out of threads: the runtime's blocking pool queues it instead.
            tracing::warn!(%error, "starting the archive writer's thread; using the blocking pool");
            let state = state.clone();
            tokio::task::spawn_blocking(move || state.run(storage.as_ref()));
        }
        ArchiveWriter(Arc::new(WriterHandle { state, latest }))
    }

    /// Queues `message` for `archive` and returns its commit at once (waiting only while the
    /// writer is [`WRITER_QUEUE`] messages behind).
    pub async fn append(&self, archive: &str, message: ArchivedMessage) -> Commit {
        match self.0.state.room.acquire().await {
            // Given back by the writer when it takes the message.
            Ok(permit) => permit.forget(),
            Err(_) => tracing::error!(archive, "the archive writer has stopped"),
        }
        self.0.state.give(|gathering| {
            gathering.batch.push((archive.to_string(), message));
            self.0.latest.set_with(&gathering.commit, || {});
            gathering.commit.clone()
        })
    }

    /// Wait until every message appended so far is stored, so a query sees them.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        self.0.state.give(|gathering| gathering.flushes.push(done));
        let _ = wait.await;
    }
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A new XEP-0359 stanza id: the time first, so ids sort roughly by age, then 64 random bits,
/// so nobody can guess another message's id.
pub fn new_stanza_id() -> String {
    format!(
        "{:x}{:016x}",
        chrono::Utc::now().timestamp_micros(),
        rand::random::<u64>()
    )
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
                        WithKind::Bare => with.to_bare().to_string(),
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

    fn message(n: usize) -> ArchivedMessage {
        ArchivedMessage {
            id: format!("id{n}"),
            timestamp: n as i64,
            with: "room@rooms.example/nick".into(),
            stanza: format!("<message><body>{n}</body></message>"),
        }
    }

    async fn stored(storage: &MemoryStorage, archive: &str) -> Vec<String> {
        let query = ArchiveQuery {
            limit: 10_000,
            ..ArchiveQuery::default()
        };
        let page = ArchiveStore::archive_query(storage, archive, &query)
            .await
            .unwrap();
        page.messages.into_iter().map(|m| m.id).collect()
    }

    #[tokio::test]
    async fn a_flush_waits_for_everything_appended_before_it_in_order() {
        let storage = Arc::new(MemoryStorage::new());
        let writer = ArchiveWriter::start(storage.clone(), Default::default());
        for n in 0..300 {
            let archive = if n % 2 == 0 { "a@rooms" } else { "b@rooms" };
            writer.append(archive, message(n)).await;
        }
        writer.flush().await;
        let expected_a: Vec<String> = (0..300).step_by(2).map(|n| format!("id{n}")).collect();
        assert_eq!(stored(&storage, "a@rooms").await, expected_a);
        assert_eq!(stored(&storage, "b@rooms").await.len(), 150);
        // Nothing pending: a flush answers at once, and later messages still get written.
        writer.flush().await;
        writer.append("a@rooms", message(1000)).await;
        writer.flush().await;
        assert_eq!(
            stored(&storage, "a@rooms").await.last().map(String::as_str),
            Some("id1000")
        );
    }

    #[tokio::test]
    async fn an_appends_commit_completes_once_its_message_is_stored_in_order() {
        let storage = Arc::new(MemoryStorage::new());
        let latest = Arc::new(LatestCommit::default());
        let writer = ArchiveWriter::start(storage.clone(), latest.clone());
        let first = writer.append("a@rooms", message(1)).await;
        first.done().await;
        assert_eq!(stored(&storage, "a@rooms").await, vec!["id1"]);
        // Many appenders at once share commits; each commit is done only with its message
        // stored, and the server's latest commit covers them all.
        let appends: Vec<_> = (2..500)
            .map(|n| {
                let writer = writer.clone();
                tokio::spawn(async move { writer.append("a@rooms", message(n)).await })
            })
            .collect();
        let mut commits = Vec::new();
        for append in appends {
            commits.push(append.await.unwrap());
        }
        if let Some(last) = latest.get() {
            last.done().await;
        }
        assert!(commits.iter().all(|c| c.is_done()));
        assert_eq!(stored(&storage, "a@rooms").await.len(), 499);
        assert!(latest.get().is_none());
    }
}
