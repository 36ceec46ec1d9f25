//! Lending a client's socket to the tasks that deliver to it (docs/ARCHITECTURE.md, "The path
//! of a stanza"): while the session's task waits with nothing to write, a room fanning out a
//! message writes each occupant's copy itself, instead of queueing it and waking that
//! occupant's task for one write. The session takes the socket back whenever it wakes.

use super::{Session, Stage};

impl Session {
    /// Lend the socket if nothing this task does with outgoing stanzas is needed: the stream
    /// is bound, stream management is off (it counts and keeps every stanza, XEP-0198), no
    /// stream module holds stanzas back (client state indication), and nothing waits in the
    /// transport's buffer.
    pub(super) fn lend_socket(&mut self) {
        if self.lent || self.stage != Stage::Bound || self.sm.is_some() {
            return;
        }
        let Some(handle) = self.handle.as_ref() else {
            return;
        };
        if !self.server.modules.hooks.writes_through(&mut self.local) {
            return;
        }
        if let Some(writer) = self.transport.direct_writer() {
            self.lent = handle.open_direct(writer);
            if !self.lent {
                // Refused (a stanza was queued meanwhile, or the session is being kicked):
                // the transport, which marked itself lent, must know it is not, or a
                // WebSocket would hold its pongs and pings back (and its reads would return
                // at once for them) until a later loan is taken back.
                self.transport.reclaim(Vec::new());
            }
        }
    }

    /// Take the socket back before this task writes or decides anything; whether a direct
    /// write left part of a stanza, now first in the transport's buffer, to be written.
    pub(super) fn take_socket_back(&mut self) -> bool {
        if !std::mem::take(&mut self.lent) {
            return false;
        }
        let Some(handle) = self.handle.as_ref() else {
            return false;
        };
        let rest = handle.close_direct();
        let rest_first = !rest.is_empty();
        self.transport.reclaim(rest);
        rest_first
    }
}
