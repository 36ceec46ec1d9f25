//! Commits that stanzas wait for without blocking anyone (XEP-0313 §2.1 and XEP-0198 §4: what
//! the server has shown as sent or acknowledged survives a crash). A storage writer hands out a
//! [`Commit`] for each write it queues and completes them in the order they were queued; a
//! session's outbound queue holds a stanza behind its commit (and everything after it, so order
//! is kept), and a stream-management answer waits for the [`LatestCommit`] of the server.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// A write that completes once: cheap to clone, waited on by any number of tasks.
#[derive(Clone)]
pub struct Commit(Arc<CommitState>);

struct CommitState {
    done: AtomicBool,
    /// Tasks to wake when it completes; `None` once it has.
    waiting: Mutex<Option<Vec<Waker>>>,
}

/// Completes its [`Commit`]: by [`complete`](Self::complete), or when dropped (a writer that
/// failed or stopped never leaves anyone waiting).
pub struct Completer(Commit);

impl Commit {
    /// A commit still to come, and what completes it.
    pub fn pending() -> (Commit, Completer) {
        let commit = Commit(Arc::new(CommitState {
            done: AtomicBool::new(false),
            waiting: Mutex::new(Some(Vec::new())),
        }));
        (commit.clone(), Completer(commit))
    }

    pub fn is_done(&self) -> bool {
        self.0.done.load(Ordering::Acquire)
    }

    /// Ready once complete; otherwise the task is woken when it completes. A task that polls
    /// again with a waker that would wake the same task is not registered twice.
    pub fn poll_done(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.is_done() {
            return Poll::Ready(());
        }
        let Ok(mut waiting) = self.0.waiting.lock() else {
            return Poll::Ready(());
        };
        match waiting.as_mut() {
            None => Poll::Ready(()),
            Some(wakers) => {
                if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                    wakers.push(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }

    /// Wait until it completes.
    pub async fn done(&self) {
        std::future::poll_fn(|cx| self.poll_done(cx)).await
    }

    /// Whether both are the same commit.
    pub fn same(&self, other: &Commit) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Completer {
    pub fn complete(self) {
        // Drop does it.
    }
}

impl Drop for Completer {
    fn drop(&mut self) {
        let state = &(self.0).0;
        state.done.store(true, Ordering::Release);
        let wakers = state.waiting.lock().ok().and_then(|mut w| w.take());
        for waker in wakers.into_iter().flatten() {
            waker.wake();
        }
    }
}

/// The most recent commit a writer handed out, in a server-wide slot. Writers complete their
/// commits in order, so once it is done, so is every write queued before it: a stream
/// management answer waits for it rather than for each stanza's own write.
#[derive(Default)]
pub struct LatestCommit(Mutex<Option<Commit>>);

impl LatestCommit {
    /// Make `commit` the latest, running `queue` (which queues its write) under the same lock,
    /// so that the latest is always the last one queued whichever task queues.
    pub fn set_with(&self, commit: &Commit, queue: impl FnOnce()) {
        let mut latest = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        queue();
        *latest = Some(commit.clone());
    }

    /// The latest commit not yet done, if any.
    pub fn get(&self) -> Option<Commit> {
        let latest = self.0.lock().ok()?;
        latest.as_ref().filter(|c| !c.is_done()).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_wake_when_completed_or_dropped() {
        let (commit, completer) = Commit::pending();
        let waiter = tokio::spawn({
            let commit = commit.clone();
            async move { commit.done().await }
        });
        tokio::task::yield_now().await;
        assert!(!commit.is_done());
        completer.complete();
        waiter.await.unwrap();
        assert!(commit.is_done());

        let (dropped, completer) = Commit::pending();
        drop(completer);
        dropped.done().await;
    }
}
