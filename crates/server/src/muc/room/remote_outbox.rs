//! A room's copies for occupants on other servers (RFC 6120 server-to-server): like local
//! copies (`SessionHandle::send_addressed_after`), a message leaves only once the archive has
//! committed it, and the copies leave in the order the room made them.

use super::Room;
use crate::durable::Commit;
use crate::router::AddressedTemplate;
use crate::service::ServiceContext;
use std::sync::{Arc, OnceLock};
use tokio::sync::mpsc;

/// Copies one room holds for remote occupants while their commits are pending. The writer
/// commits within milliseconds, so reaching this means it is stuck; the copy then leaves at
/// once rather than being dropped or holding the room up.
const MAX_HELD: usize = 4096;

/// The queue in front of the remote copies, started the first time a copy has to wait (most
/// rooms never have a remote occupant, so most rooms never start its task).
#[derive(Default)]
pub(super) struct RemoteOutbox(OnceLock<mpsc::Sender<Held>>);

struct Held {
    to: jid::FullJid,
    template: Arc<AddressedTemplate>,
    commit: Option<Commit>,
}

impl RemoteOutbox {
    fn sender(&self, context: &ServiceContext) -> &mpsc::Sender<Held> {
        self.0.get_or_init(|| {
            let (sender, mut receiver) = mpsc::channel::<Held>(MAX_HELD);
            let context = context.clone();
            // Ends when the room drops its sender, after sending what it still holds.
            tokio::spawn(async move {
                while let Some(held) = receiver.recv().await {
                    if let Some(commit) = &held.commit {
                        commit.done().await;
                    }
                    context.send_remote(&held.to, &held.template);
                }
            });
            sender
        })
    }
}

impl Room {
    /// Send `template` to `to`, a session on another server, once `commit` is done.
    pub(super) fn send_remote_after(
        &self,
        to: &jid::FullJid,
        template: &Arc<AddressedTemplate>,
        commit: Option<&Commit>,
    ) {
        let pending = commit.filter(|commit| !commit.is_done());
        // Nothing to wait for and nothing queued ahead of it: straight out.
        if pending.is_none() && self.remote_outbox.0.get().is_none() {
            self.context.send_remote(to, template);
            return;
        }
        let held = Held {
            to: to.clone(),
            template: template.clone(),
            commit: pending.cloned(),
        };
        if let Err(error) = self.remote_outbox.sender(&self.context).try_send(held) {
            let held = match error {
                mpsc::error::TrySendError::Full(held) | mpsc::error::TrySendError::Closed(held) => {
                    held
                }
            };
            tracing::warn!(
                room = %self.jid,
                to = %held.to,
                "remote copies wait for an archive commit that does not come; sending at once"
            );
            self.context.send_remote(&held.to, &held.template);
        }
    }
}
