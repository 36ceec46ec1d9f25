//! XEP-0198 Stream Management state: counting stanzas each way, acknowledgements, and the
//! unacked queue that lets a session be resumed on a new connection (after a page reload or a network
//! switch) with nothing lost and no leave/join seen by anyone.

use crate::durable::Commit;
use crate::session::transport::Transport;
use crate::session_handle::{Outbound, SessionHandle};
use std::collections::VecDeque;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// Ask the client for an acknowledgement once this many stanzas are unacknowledged.
const REQUEST_ACK_AFTER: usize = 8;

pub struct StreamManagement {
    /// Resumption id, when the client asked for resumption.
    pub id: Option<String>,
    /// Stanzas received from the client (`h` we report).
    pub inbound: u32,
    /// Stanzas sent to the client so far.
    outbound: u32,
    /// The client's last acknowledged count.
    acked: u32,
    /// Sent, not yet acknowledged, oldest first.
    unacked: VecDeque<Outbound>,
    /// The bytes of `unacked`.
    unacked_bytes: usize,
    /// An `<r/>` is outstanding.
    requested: bool,
}

/// The client acknowledged more stanzas than were sent (XEP-0198 §4).
#[derive(Debug)]
pub struct TooHigh {
    pub h: u32,
    pub sent: u32,
}

impl StreamManagement {
    pub fn new(id: Option<String>) -> StreamManagement {
        StreamManagement {
            id,
            inbound: 0,
            outbound: 0,
            acked: 0,
            unacked: VecDeque::new(),
            unacked_bytes: 0,
            requested: false,
        }
    }

    /// Record a stanza written to the client.
    pub fn sent(&mut self, item: Outbound) {
        self.outbound = self.outbound.wrapping_add(1);
        self.unacked_bytes += item.wire_len();
        self.unacked.push_back(item);
    }

    /// Record a stanza received from the client.
    pub fn received(&mut self) {
        self.inbound = self.inbound.wrapping_add(1);
    }

    /// Apply the client's count `h` (counts wrap at 2^32, XEP-0198 §4).
    pub fn acknowledge(&mut self, h: u32) -> Result<(), TooHigh> {
        let newly = h.wrapping_sub(self.acked) as usize;
        if newly > self.unacked.len() {
            return Err(TooHigh {
                h,
                sent: self.outbound,
            });
        }
        for item in self.unacked.drain(..newly) {
            self.unacked_bytes -= item.wire_len();
        }
        self.acked = h;
        self.requested = false;
        Ok(())
    }

    pub fn pending(&self) -> usize {
        self.unacked.len()
    }

    /// Whether more waits for acknowledgement than a client may leave unacknowledged.
    pub fn exceeds(&self, max_stanzas: usize, max_bytes: usize) -> bool {
        self.unacked.len() > max_stanzas || self.unacked_bytes > max_bytes
    }

    /// Stanzas to send again after a resumption.
    pub fn unacked(&self) -> impl Iterator<Item = &Outbound> {
        self.unacked.iter()
    }

    /// Whether to send `<r/>` now; remembers that it was sent.
    pub fn should_request(&mut self) -> bool {
        if !self.requested && self.unacked.len() >= REQUEST_ACK_AFTER {
            self.requested = true;
            return true;
        }
        false
    }

    pub fn resumable(&self) -> bool {
        self.id.is_some()
    }
}

/// A new connection asking a session to take it over (XEP-0198 `<resume/>`).
pub struct ResumeRequest {
    pub(in crate::session) transport: Box<dyn Transport>,
    /// The client's count of stanzas it received.
    pub(in crate::session) h: u32,
}

/// How a waiting session is found when its client comes back.
pub struct ResumeSlot {
    pub(in crate::session) jid: jid::FullJid,
    pub(in crate::session) anonymous: bool,
    pub(in crate::session) sender: mpsc::Sender<ResumeRequest>,
}

pub(in crate::session) async fn next_resume(
    receiver: Option<&mut mpsc::Receiver<ResumeRequest>>,
) -> Option<ResumeRequest> {
    match receiver {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn stanza(n: u8) -> Outbound {
        Outbound::Stanza(Bytes::from(vec![n]))
    }

    #[test]
    fn acknowledgements_drop_what_the_client_has() {
        let mut sm = StreamManagement::new(None);
        for n in 0..5 {
            sm.sent(stanza(n));
        }
        sm.acknowledge(3).unwrap();
        assert_eq!(sm.pending(), 2);
        let left: Vec<u8> = sm
            .unacked()
            .map(|o| match o {
                Outbound::Stanza(b) => b[0],
                Outbound::Addressed(..) => 255,
            })
            .collect();
        assert_eq!(left, vec![3, 4]);
        sm.acknowledge(3).unwrap();
        assert_eq!(sm.pending(), 2);
        let error = sm.acknowledge(9).unwrap_err();
        assert_eq!((error.h, error.sent), (9, 5));
    }

    #[test]
    fn counts_wrap_around() {
        let mut sm = StreamManagement::new(None);
        sm.acked = u32::MAX - 1;
        sm.outbound = u32::MAX - 1;
        for n in 0..4 {
            sm.sent(stanza(n));
        }
        sm.acknowledge(1).unwrap();
        assert_eq!(sm.pending(), 1);
    }
}

/// Answers to `<r/>` held until what they count is durable (XEP-0198 §4: an acknowledged
/// stanza is the server's responsibility): first until no stanza of this session is still held
/// by another task (a room), then until the server's latest storage commit at that moment is
/// done. Commits complete in order, so that covers every write the counted stanzas caused.
/// Most `<a/>` answers held at once.
const MAX_HELD_ACKS: usize = 64;

#[derive(Default)]
pub struct HeldAcks {
    /// `h` values waiting for the session's stanzas to be handed to storage.
    waiting: Vec<u32>,
    /// `h` values waiting for this commit.
    behind: Option<(Commit, Vec<u32>)>,
}

impl HeldAcks {
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty() && self.behind.is_none()
    }

    /// Hold an answer with this `h`. A client that keeps asking gets at most
    /// [`MAX_HELD_ACKS`] answers per commit: the last one answers for the requests beyond
    /// (`h` counts everything before it), so the held answers stay bounded.
    pub fn hold(&mut self, h: u32) {
        if self.waiting.len() < MAX_HELD_ACKS {
            self.waiting.push(h);
        } else if let Some(last) = self.waiting.last_mut() {
            *last = h;
        }
    }

    /// The `h` values that may be answered now, oldest first.
    pub fn poll_ready(
        &mut self,
        handle: Option<&SessionHandle>,
        latest: impl FnOnce() -> Option<Commit>,
        cx: &mut Context<'_>,
    ) -> Poll<Vec<u32>> {
        if let Some((commit, _)) = &self.behind {
            if commit.poll_done(cx).is_pending() {
                return Poll::Pending;
            }
            let answers = self.behind.take().map(|(_, h)| h).unwrap_or_default();
            return Poll::Ready(answers);
        }
        if self.waiting.is_empty() {
            return Poll::Pending;
        }
        if let Some(handle) = handle {
            if handle.poll_none_in_flight(cx).is_pending() {
                return Poll::Pending;
            }
        }
        let answers = std::mem::take(&mut self.waiting);
        match latest() {
            Some(commit) if commit.poll_done(cx).is_pending() => {
                self.behind = Some((commit, answers));
                Poll::Pending
            }
            _ => Poll::Ready(answers),
        }
    }
}
