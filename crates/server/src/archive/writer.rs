//! The archive writer (XEP-0313 storage): one thread that puts the messages rooms and accounts
//! archive into the store in order, in batches, with the durability XEP-0313 §2.1 and
//! XEP-0198 §4 ask for (what was shown as sent or acknowledged survives a crash).

use crate::durable::{Commit, Completer, LatestCommit};
use crate::storage::prelude::*;
use crate::storage::{ArchivedMessage, StorageError};
use std::sync::Arc;
use tokio::sync::oneshot;

/// Kibibytes of messages waiting to be written (each message counts its size, rounded up, plus
/// one): appenders wait for a storage that falls this far behind rather than grow memory.
const WRITER_QUEUE_KIB: usize = 32 * 1024;
/// The most messages in one transaction: the writer starts one at once when it has this many.
const FULL_BATCH: usize = 4096;
/// How long journaled messages wait to be written while there are fewer than [`FULL_BATCH`]:
/// nobody waits for them, and the fewer transactions, the fewer pages each message costs.
const WINDOW: std::time::Duration = std::time::Duration::from_millis(1000);

/// How long a batch the store failed to write waits before the next attempt: at first, then
/// doubling up to the most.
const RETRY_FIRST: std::time::Duration = std::time::Duration::from_millis(100);
const RETRY_MOST: std::time::Duration = std::time::Duration::from_secs(5);
/// Attempts at a failed batch once the server stops.
const ATTEMPTS_WHEN_STOPPING: u32 = 3;
/// The longest a query waits for the writer: a store that keeps failing must not hold a
/// room's task or an IQ for longer (the answer then lacks the messages still queued).
const FLUSH_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

/// What the writer has still to write: the batch being gathered and the commit its messages
/// share, and the flushes waiting for it.
struct Gathering {
    batch: Vec<(String, ArchivedMessage)>,
    /// The commit of every message in `batch` that is not journaled: one per transaction, so a
    /// session holding several of them is registered and woken once.
    commit: Commit,
    done: Completer,
    flushes: Vec<oneshot::Sender<()>>,
    /// The last journal record in `batch`.
    journaled: Option<u64>,
    /// Someone waits for this batch (a flush, or a message the store could not journal): it is
    /// written at once rather than at the end of the window.
    urgent: bool,
    /// When the first message of `batch` came.
    since: Option<std::time::Instant>,
}

impl Gathering {
    fn new() -> Gathering {
        let (commit, done) = Commit::pending();
        Gathering {
            batch: Vec::new(),
            commit,
            done,
            flushes: Vec::new(),
            journaled: None,
            urgent: false,
            since: None,
        }
    }

    fn is_empty(&self) -> bool {
        self.batch.is_empty() && self.flushes.is_empty()
    }

    /// Whether to write it now rather than wait for more.
    fn is_due(&self) -> bool {
        self.urgent || self.batch.len() >= FULL_BATCH
    }
}

/// What the writer's thread is doing.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Writing {
    Busy,
    /// Waiting for work: whoever gives it some wakes it (and only then, since a wake is a
    /// system call).
    Idle,
    /// Waiting for the window to end: only a batch that is due wakes it.
    Gathering,
}

/// The writer thread's side of the queue.
struct Queue {
    gathering: Gathering,
    writing: Writing,
    /// Every [`ArchiveWriter`] is gone: the thread ends once it has written what is left.
    stopped: bool,
}

struct WriterState {
    queue: std::sync::Mutex<Queue>,
    work: std::sync::Condvar,
    /// One permit per kibibyte that may still be queued ([`queued_kib`]): appenders wait for
    /// the writer when it falls [`WRITER_QUEUE_KIB`] behind rather than grow memory.
    room: tokio::sync::Semaphore,
}

impl WriterState {
    /// Runs `change` on the queue and wakes the thread if it waits for what was given.
    fn give<T>(&self, change: impl FnOnce(&mut Gathering) -> T) -> T {
        let (given, wake) = {
            let mut queue = lock(&self.queue);
            let given = change(&mut queue.gathering);
            let wake = match queue.writing {
                Writing::Busy => false,
                Writing::Idle => !queue.gathering.is_empty(),
                Writing::Gathering => queue.gathering.is_due(),
            };
            if wake {
                queue.writing = Writing::Busy;
            }
            (given, wake)
        };
        if wake {
            self.work.notify_one();
        }
        given
    }

    /// The next batch, waiting for one (and, when nobody waits for it, for the window to end
    /// or the batch to fill); `None` once stopped with nothing left.
    fn take(&self) -> Option<Gathering> {
        let mut queue = lock(&self.queue);
        loop {
            let gathering = &queue.gathering;
            let window_end = gathering.since.map(|since| since + WINDOW);
            let now = std::time::Instant::now();
            if !gathering.is_empty()
                && (gathering.is_due() || queue.stopped || window_end.is_some_and(|end| end <= now))
            {
                queue.writing = Writing::Busy;
                return Some(std::mem::replace(&mut queue.gathering, Gathering::new()));
            }
            if queue.stopped {
                return None;
            }
            queue = match window_end {
                Some(end) => {
                    queue.writing = Writing::Gathering;
                    self.work
                        .wait_timeout(queue, end - now)
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .0
                }
                None => {
                    queue.writing = Writing::Idle;
                    self.work
                        .wait(queue)
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                }
            };
        }
    }

    /// The writer thread: batches are written one after the other, so waiting for one means
    /// waiting for all before it. Commits are completed here, which wakes the sessions that
    /// hold their messages directly, without a hop through a task of the runtime.
    fn run(&self, storage: &dyn ArchiveStore) {
        while let Some(Gathering {
            batch,
            done,
            mut flushes,
            journaled,
            ..
        }) = self.take()
        {
            if !batch.is_empty() {
                self.room
                    .add_permits(batch.iter().map(|(a, m)| queued_kib(a, m)).sum());
                self.write(storage, &batch, journaled, &mut flushes);
            }
            done.complete();
            for flush in flushes {
                let _ = flush.send(());
            }
        }
    }

    /// Writes one batch, again and again while the store fails (a full disk, a database another
    /// process holds locked): a batch left out would be lost for good, since the next one
    /// records a later journal position as applied. Those waiting to query are answered after
    /// the first attempt, from what is stored; the batches after this one wait, their appenders
    /// too once [`WRITER_QUEUE_KIB`] are queued. Once the server stops, a few attempts and the
    /// batch is left to the journal, which the next start applies.
    fn write(
        &self,
        storage: &dyn ArchiveStore,
        batch: &[(String, ArchivedMessage)],
        journaled: Option<u64>,
        flushes: &mut Vec<oneshot::Sender<()>>,
    ) {
        let mut wait = RETRY_FIRST;
        for attempt in 1.. {
            let result = storage.archive_append_blocking(batch, journaled);
            for flush in flushes.drain(..) {
                let _ = flush.send(());
            }
            let error = match result {
                Ok(()) => {
                    if attempt > 1 {
                        // The operator saw the errors above; say that they are over.
                        tracing::warn!(
                            messages = batch.len(),
                            attempt,
                            "archiving works again; the messages held back are stored"
                        );
                    }
                    return;
                }
                Err(StorageError::AlreadyExists) => {
                    // Committed; the store left out ids its archive held already.
                    tracing::debug!(
                        messages = batch.len(),
                        "archived a batch with duplicate ids"
                    );
                    return;
                }
                Err(error) => error,
            };
            if lock(&self.queue).stopped && attempt >= ATTEMPTS_WHEN_STOPPING {
                tracing::error!(%error, messages = batch.len(), attempt,
                    "archiving messages failed while stopping; the journal keeps them for the next start");
                return;
            }
            tracing::error!(%error, messages = batch.len(), attempt, retry_in_ms = wait.as_millis() as u64,
                "archiving messages failed; trying again");
            std::thread::sleep(wait);
            wait = (wait * 2).min(RETRY_MOST);
        }
    }
}

/// Stops the writer thread when the last [`ArchiveWriter`] goes (with its server).
struct WriterHandle {
    state: Arc<WriterState>,
    storage: Arc<dyn ArchiveStore>,
    /// The server's latest commit, updated with each append that waits for one (under the
    /// queue's lock, so the latest is always the batch of the last such message queued).
    latest: Arc<LatestCommit>,
    /// What a journaled message's holders wait for: nothing.
    journaled: Commit,
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
/// every archive.
///
/// Where the store keeps a journal ([`ArchiveStore::archive_journal`], SQLite's), each append
/// writes its message there first, on the appending task: from then on a crash cannot lose it,
/// so the commit handed back is already done, and the writer gathers journaled messages for up
/// to [`WINDOW`] (or [`FULL_BATCH`] of them) into one transaction, which costs far fewer pages
/// per message than one each. Otherwise (no journal, or it failed) it is group commit with no
/// fixed window: such an append is written at once, and everything appended while a
/// transaction runs goes into the next one; whoever appends gets the [`Commit`] of its batch
/// and goes on at once, and what shows the message (the room's echo and fan-out, the delivery
/// to a recipient, a stream-management answer) is held behind that commit in the recipients'
/// queues (XEP-0313 §2.1: what was shown as sent is in the archive). Either way a crash right
/// after an echo loses nothing and nobody's loop waits for the disk. A query or a deletion
/// [`flush`](Self::flush)es first, so it sees every message appended before it.
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
                writing: Writing::Busy,
                stopped: false,
            }),
            work: std::sync::Condvar::new(),
            room: tokio::sync::Semaphore::new(WRITER_QUEUE_KIB),
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
            let storage = storage.clone();
            tokio::task::spawn_blocking(move || state.run(storage.as_ref()));
        }
        let (journaled, completer) = Commit::pending();
        completer.complete();
        ArchiveWriter(Arc::new(WriterHandle {
            state,
            storage,
            latest,
            journaled,
        }))
    }

    /// Queues `message` for `archive` and returns its commit at once (waiting only while the
    /// writer is [`WRITER_QUEUE_KIB`] behind): already done if the store journaled it.
    pub async fn append(&self, archive: &str, message: ArchivedMessage) -> Commit {
        let kib = queued_kib(archive, &message) as u32;
        match self.0.state.room.acquire_many(kib).await {
            // Given back by the writer when it takes the message.
            Ok(permit) => permit.forget(),
            Err(_) => tracing::error!(archive, "the archive writer has stopped"),
        }
        let handle = &self.0;
        handle.state.give(|gathering| {
            // Under the queue's lock: the journal's order is the batches' order.
            let journaled = handle
                .storage
                .archive_journal(archive, &message)
                .unwrap_or(None);
            gathering.batch.push((archive.to_string(), message));
            gathering.since.get_or_insert_with(std::time::Instant::now);
            match journaled {
                Some(record) => {
                    gathering.journaled = Some(record);
                    handle.journaled.clone()
                }
                None => {
                    gathering.urgent = true;
                    handle.latest.set_with(&gathering.commit, || {});
                    gathering.commit.clone()
                }
            }
        })
    }

    /// Wait until every message appended so far is stored (or the store failed to, or
    /// [`FLUSH_LIMIT`] passed), so a query sees them.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        self.0.state.give(|gathering| {
            gathering.flushes.push(done);
            gathering.urgent = true;
        });
        if tokio::time::timeout(FLUSH_LIMIT, wait).await.is_err() {
            tracing::warn!("the archive writer is behind; answering from what is stored");
        }
    }
}

/// What a queued message counts against [`WRITER_QUEUE_KIB`]; never more than all of it, so
/// any message the server took can be queued.
fn queued_kib(archive: &str, message: &ArchivedMessage) -> usize {
    let bytes = archive.len() + message.id.len() + message.with.len() + message.stanza.len();
    (1 + bytes / 1024).min(WRITER_QUEUE_KIB)
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::memory::MemoryStorage;
    use crate::storage::{ArchiveQuery, StorageResult};

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

    /// A store that journals (as SQLite does): the memory store, with journal records counted
    /// and the last record each batch carried kept.
    #[derive(Default)]
    struct Journaling {
        memory: MemoryStorage,
        records: std::sync::atomic::AtomicU64,
        batches: std::sync::Mutex<Vec<(usize, Option<u64>)>>,
        /// How many of the next batches fail (as with a database another process has locked).
        failing: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl ArchiveStore for Journaling {
        async fn archive_append(
            &self,
            archive: &str,
            message: &ArchivedMessage,
        ) -> StorageResult<()> {
            self.memory.archive_append(archive, message).await
        }
        fn archive_journal(&self, _: &str, _: &ArchivedMessage) -> StorageResult<Option<u64>> {
            Ok(Some(
                self.records
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                    + 1,
            ))
        }
        fn archive_append_blocking(
            &self,
            messages: &[(String, ArchivedMessage)],
            journaled: Option<u64>,
        ) -> StorageResult<()> {
            lock(&self.batches).push((messages.len(), journaled));
            let failing = &self.failing;
            let ordering = std::sync::atomic::Ordering::SeqCst;
            if failing
                .fetch_update(ordering, ordering, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(crate::storage::StorageError::Backend(
                    "database is locked".into(),
                ));
            }
            self.memory.archive_append_blocking(messages, journaled)
        }
        async fn archive_query(
            &self,
            archive: &str,
            query: &ArchiveQuery,
        ) -> StorageResult<crate::storage::ArchivePage> {
            self.memory.archive_query(archive, query).await
        }
        async fn archive_get(&self, a: &str, id: &str) -> StorageResult<Option<ArchivedMessage>> {
            self.memory.archive_get(a, id).await
        }
        async fn archive_replace(&self, a: &str, id: &str, stanza: &str) -> StorageResult<()> {
            self.memory.archive_replace(a, id, stanza).await
        }
        async fn archive_expire(&self, domain: &str, before: i64) -> StorageResult<usize> {
            self.memory.archive_expire(domain, before).await
        }
        async fn archive_trim(&self, a: &str, keep: usize, before: i64) -> StorageResult<usize> {
            self.memory.archive_trim(a, keep, before).await
        }
        async fn archive_trim_bytes(&self, a: &str, max_bytes: u64) -> StorageResult<usize> {
            self.memory.archive_trim_bytes(a, max_bytes).await
        }
        async fn archive_delete(&self, a: &str) -> StorageResult<()> {
            self.memory.archive_delete(a).await
        }
    }

    #[tokio::test]
    async fn journaled_messages_are_done_at_once_and_written_together_after_the_window() {
        let storage = Arc::new(Journaling::default());
        let latest = Arc::new(LatestCommit::default());
        let writer = ArchiveWriter::start(storage.clone(), latest.clone());
        let started = std::time::Instant::now();
        for n in 0..10 {
            let commit = writer.append("a@rooms", message(n)).await;
            // Journaled: nothing to wait for, and the server's latest commit is not this one.
            assert!(commit.is_done());
        }
        assert!(latest.get().is_none());
        // Gathered, not yet written...
        assert!(stored(&storage.memory, "a@rooms").await.is_empty());
        // ...until the window ends, all in one batch that names the last record.
        while lock(&storage.batches).is_empty() {
            assert!(started.elapsed() < WINDOW * 8, "the window never ended");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(started.elapsed() >= WINDOW);
        assert_eq!(*lock(&storage.batches), vec![(10, Some(10))]);
        assert_eq!(stored(&storage.memory, "a@rooms").await.len(), 10);
        // A flush does not wait for the window; a full batch does not either.
        writer.append("a@rooms", message(10)).await;
        let flushed = std::time::Instant::now();
        writer.flush().await;
        assert!(flushed.elapsed() < WINDOW);
        assert_eq!(lock(&storage.batches).last(), Some(&(1, Some(11))));
        let filling = std::time::Instant::now();
        for n in 11..11 + FULL_BATCH {
            writer.append("b@rooms", message(n)).await;
        }
        while lock(&storage.batches).len() < 3 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        assert!(
            filling.elapsed() < WINDOW,
            "a full batch waited for the window"
        );
        assert_eq!(lock(&storage.batches)[2].0, FULL_BATCH);
    }

    #[tokio::test]
    async fn a_batch_the_store_fails_to_write_is_written_again_before_the_next() {
        let storage = Arc::new(Journaling::default());
        storage
            .failing
            .store(2, std::sync::atomic::Ordering::SeqCst);
        let writer = ArchiveWriter::start(storage.clone(), Default::default());
        for n in 0..5 {
            writer.append("a@rooms", message(n)).await;
        }
        // The query is answered after the first attempt, without the batch it could not write.
        writer.flush().await;
        assert!(stored(&storage.memory, "a@rooms").await.is_empty());
        writer.append("a@rooms", message(5)).await;
        writer.flush().await;
        // Written on the third attempt (100 + 200 ms later), then the next batch, in order.
        let expected: Vec<String> = (0..6).map(|n| format!("id{n}")).collect();
        assert_eq!(stored(&storage.memory, "a@rooms").await, expected);
        assert_eq!(
            *lock(&storage.batches),
            vec![(5, Some(5)), (5, Some(5)), (5, Some(5)), (1, Some(6))]
        );
    }
}
