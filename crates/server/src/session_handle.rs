//! One bound session as the rest of the server sees it (RFC 6120 §7): its address, its presence,
//! the feature modules' slots, and its outbound queue with its bound: stanzas serialised once
//! by the sender and shared by every recipient (docs/ARCHITECTURE.md, "The path of a stanza").

use crate::durable::Commit;
use crate::stanza::StreamCondition;
use atomic_waker::AtomicWaker;
use bytes::Bytes;
use minidom::Element;
use std::collections::HashSet;
use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// What a session's writer receives: stanza bytes serialised once by the sender, so a fan-out
/// to many recipients shares one buffer.
#[derive(Debug, Clone)]
pub enum Outbound {
    Stanza(Bytes),
    /// A fanned-out stanza: shared bytes around the recipient's own `to` address.
    Addressed(Arc<AddressedTemplate>, Arc<str>),
}

impl Outbound {
    /// Append the wire form of this stanza to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            Outbound::Stanza(bytes) => out.extend_from_slice(bytes),
            Outbound::Addressed(template, to) => {
                out.extend_from_slice(&template.head);
                out.extend_from_slice(to.as_bytes());
                out.extend_from_slice(&template.tail);
            }
        }
    }

    /// Bytes of the wire form, for the bounds on what waits for a client.
    pub fn wire_len(&self) -> usize {
        match self {
            Outbound::Stanza(bytes) => bytes.len(),
            Outbound::Addressed(template, to) => {
                template.head.len() + to.len() + template.tail.len()
            }
        }
    }

    /// Whether the wire form starts with `prefix` (short enough to end before any `to`).
    pub fn starts_with(&self, prefix: &[u8]) -> bool {
        match self {
            Outbound::Stanza(bytes) => bytes.starts_with(prefix),
            Outbound::Addressed(template, _) => template.head.starts_with(prefix),
        }
    }

    /// Whether `needle` occurs in the wire form, leaving the recipient's address aside.
    pub fn contains(&self, needle: &[u8]) -> bool {
        let within = |haystack: &[u8]| haystack.windows(needle.len()).any(|w| w == needle);
        match self {
            Outbound::Stanza(bytes) => within(bytes),
            Outbound::Addressed(template, _) => within(&template.head) || within(&template.tail),
        }
    }
}

/// A client's socket as a delivering task may use it: writes that never wait, made while the
/// session's own task is parked with nothing to write (see [`SessionHandle::open_direct`]). A
/// fan-out to a hundred occupants then costs a hundred writes, not a hundred task wake-ups
/// each followed by a write. Transports whose writes need their own task (TLS, BOSH) have none.
pub trait DirectWrite: Send + Sync {
    /// Write one stanza (its wire form in parts: a fanned-out template's head, the recipient's
    /// address and its tail; or the bytes and two empty parts), with the transport's framing, as far as the socket takes it now; what it did not take is
    /// appended to `rest`. `Err` only when nothing was written.
    fn try_write(&self, parts: [&[u8]; 3], rest: &mut Vec<u8>) -> io::Result<()>;
}

/// Who may write to the socket: the session's task, or (while `writer` is set) whoever
/// delivers a stanza to an empty queue.
#[derive(Default)]
struct Direct {
    writer: Option<Arc<dyn DirectWrite>>,
    /// A direct write the socket took only in part: the session writes the rest before
    /// anything else.
    rest: Vec<u8>,
}

/// A stanza serialised once for many recipients, split where the `to` address goes
/// (ARCHITECTURE.md: serialise a broadcast once). `to` values are inserted escaped.
#[derive(Debug)]
pub struct AddressedTemplate {
    head: Bytes,
    tail: Bytes,
}

/// Stands in for the `to` attribute while serialising a template; private-use characters
/// never appear in addresses we put there.
const TO_PLACEHOLDER: &str = "\u{E000}salon-recipient\u{E000}";

impl AddressedTemplate {
    /// Serialise `stanza` (whose `to` is ignored) once.
    pub fn new(stanza: &Element) -> Arc<AddressedTemplate> {
        // Written around the address, without copying the stanza to set a placeholder (a copy
        // and its drop cost about as much as the writing; callgrind, session 9).
        if let Some((bytes, at)) = salon_xml::serialize_around_attribute(stanza, "to") {
            return Arc::new(AddressedTemplate {
                head: Bytes::copy_from_slice(&bytes[..at]),
                tail: Bytes::copy_from_slice(&bytes[at..]),
            });
        }
        let mut copy = stanza.clone();
        crate::stanza::set_attr(&mut copy, "to", TO_PLACEHOLDER);
        let bytes = salon_xml::serialize(&copy);
        let marker = TO_PLACEHOLDER.as_bytes();
        let position = bytes
            .windows(marker.len())
            .position(|w| w == marker)
            .unwrap_or(bytes.len());
        let tail_start = (position + marker.len()).min(bytes.len());
        Arc::new(AddressedTemplate {
            head: Bytes::copy_from_slice(&bytes[..position]),
            tail: Bytes::copy_from_slice(&bytes[tail_start..]),
        })
    }

    /// A copy with `child` (serialised, its namespace declared) added as the last child: how
    /// history on join adds its `<delay/>` to a kept message without parsing it again. `None`
    /// when the stanza has no end tag to put it before.
    pub fn with_last_child(&self, child: &[u8]) -> Option<Arc<AddressedTemplate>> {
        let end_tag = self.tail.windows(2).rposition(|w| w == b"</")?;
        let mut tail = Vec::with_capacity(self.tail.len() + child.len());
        tail.extend_from_slice(&self.tail[..end_tag]);
        tail.extend_from_slice(child);
        tail.extend_from_slice(&self.tail[end_tag..]);
        Some(Arc::new(AddressedTemplate {
            head: self.head.clone(),
            tail: tail.into(),
        }))
    }

    /// The stanza addressed to `to`, as one buffer: for a recipient on another server, whose
    /// copy leaves through federation rather than a local session's queue.
    pub fn addressed(&self, to: &str) -> Bytes {
        let to = salon_xml::escape(to);
        let mut bytes = Vec::with_capacity(self.head.len() + to.len() + self.tail.len());
        bytes.extend_from_slice(&self.head);
        bytes.extend_from_slice(to.as_bytes());
        bytes.extend_from_slice(&self.tail);
        bytes.into()
    }

    /// The recipient address in the form the template expects.
    pub fn recipient(to: &str) -> Arc<str> {
        Arc::from(salon_xml::escape(to))
    }

    /// The stanza as serialised, without the `to` attribute (for archives and history), when
    /// the serialiser wrote it in the usual ` to='…'` form.
    pub fn without_recipient(&self) -> Option<Vec<u8>> {
        let head = self
            .head
            .strip_suffix(b" to='")
            .or_else(|| self.head.strip_suffix(b" to=\""))?;
        let tail = self
            .tail
            .strip_prefix(b"'")
            .or_else(|| self.tail.strip_prefix(b"\""))?;
        let mut bytes = Vec::with_capacity(head.len() + tail.len());
        bytes.extend_from_slice(head);
        bytes.extend_from_slice(tail);
        Some(bytes)
    }
}

/// A session's outbound queue: the stanzas, and where some must wait for a commit.
#[derive(Default)]
struct Queue {
    items: VecDeque<Outbound>,
    /// Stanzas held back until a commit is done, by position (counted from the session's
    /// first stanza), oldest first.
    gates: VecDeque<(u64, Commit)>,
    /// Stanzas taken by the writer so far: the position of `items[0]`.
    taken: u64,
    /// The commit the writer was last registered with, so it is not registered again.
    waiting_on: Option<Commit>,
    /// The session task's waker, from its last look at the queue: a stanza queued behind a
    /// commit registers it with that commit instead of waking the task to do so.
    task: Option<Waker>,
}

impl Queue {
    fn remember_task(&mut self, cx: &Context<'_>) {
        if !self.task.as_ref().is_some_and(|t| t.will_wake(cx.waker())) {
            self.task = Some(cx.waker().clone());
            // Registered as another task (or none): this one registers afresh.
            self.waiting_on = None;
        }
    }

    /// Queues `item` behind `commit` (not done yet); whether the task must be woken. It need
    /// not be when stanzas before this one are still queued (it was woken for them, and will
    /// register with this commit when it reaches it), nor when the task can be registered
    /// with the commit here: it is woken when the stanza may go, not once more in between.
    fn push_gated(&mut self, item: Outbound, commit: &Commit) -> bool {
        let position = self.taken + self.items.len() as u64;
        let behind_others = !self.items.is_empty();
        self.gates.push_back((position, commit.clone()));
        self.items.push_back(item);
        if behind_others {
            return false;
        }
        if self.waiting_on.as_ref().is_some_and(|w| w.same(commit)) {
            return false;
        }
        let Some(task) = &self.task else {
            return true;
        };
        if commit.poll_done(&mut Context::from_waker(task)).is_ready() {
            // Done meanwhile: the stanza may go now.
            return true;
        }
        self.waiting_on = Some(commit.clone());
        false
    }

    /// The stanzas before the first commit not yet done (all of them, mostly); `None` when the
    /// first one waits, with the task registered to be woken by its commit.
    fn take_ready(&mut self, cx: &mut Context<'_>) -> Option<VecDeque<Outbound>> {
        while let Some((position, commit)) = self.gates.front() {
            if commit.is_done() {
                self.gates.pop_front();
                continue;
            }
            let ready = (position - self.taken) as usize;
            if ready == 0 {
                if !self.waiting_on.as_ref().is_some_and(|w| w.same(commit)) {
                    let commit = commit.clone();
                    if commit.poll_done(cx).is_ready() {
                        self.gates.pop_front();
                        continue;
                    }
                    self.waiting_on = Some(commit);
                }
                return None;
            }
            self.taken += ready as u64;
            return Some(self.items.drain(..ready).collect());
        }
        self.taken += self.items.len() as u64;
        Some(std::mem::take(&mut self.items))
    }
}

/// A stanza of a session held by another task (a room between receiving a message and queueing
/// its archive write); dropping it, whatever became of the stanza, releases the session's
/// stream-management answers that waited for it.
pub struct InFlight(Arc<SessionHandle>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.waker.wake();
        }
    }
}

/// See [`SessionHandle::burst`].
pub struct Burst(Arc<SessionHandle>);

impl Drop for Burst {
    fn drop(&mut self) {
        self.0.bursts.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A stream error to close a session with, decided by someone other than the session itself.
#[derive(Debug, Clone)]
pub struct Kick {
    pub condition: StreamCondition,
    pub text: String,
}

/// Why a session's task was woken by its handle.
pub enum Signal {
    /// Close the stream with this error.
    Kicked(Kick),
    /// Stanzas to write, oldest first.
    Queued(VecDeque<Outbound>),
}

/// The presence a bound session has announced (RFC 6121 §4).
#[derive(Debug, Default)]
pub struct PresenceState {
    /// Has sent initial presence and not gone unavailable.
    pub available: bool,
    pub priority: i8,
    /// The last broadcast presence without `to`, serialised: kept for as long as the session
    /// lasts, and an element (its attribute maps, names and namespaces) held about 1 KiB more
    /// per session than its text; it is read back only to answer probes and new contacts.
    pub last: Option<Box<str>>,
    /// Addresses that received directed presence and must hear when we go offline.
    pub directed: HashSet<String>,
}

/// One bound session as the rest of the server sees it.
pub struct SessionHandle {
    pub jid: jid::FullJid,
    /// Unique per process, to tell a replaced session from its successor.
    pub id: u64,
    pub anonymous: bool,
    /// Stanzas waiting for this session's writer; at most `queue_limit`. A plain deque rather
    /// than a channel: it takes no memory while empty, which idle connections mostly are.
    queue: Mutex<Queue>,
    /// Stanzas this session sent that another task (a room) still holds: a stream-management
    /// answer covering them waits until they are handed to storage (see [`InFlight`]).
    in_flight: AtomicUsize,
    queue_limit: usize,
    /// The session's task, woken when stanzas are queued or it is kicked. Only that one task
    /// waits on a handle, so one waker slot (a few atomics per delivery) is enough, where a
    /// `Notify` would take a lock to register and again to unregister on every wait.
    waker: AtomicWaker,
    kick_reason: Mutex<Option<Kick>>,
    closing: AtomicBool,
    pub presence: Mutex<PresenceState>,
    /// Feature modules' state for this session, each in a slot of its own type.
    pub extensions: crate::extensions::Extensions,
    /// The connection is gone and the session waits for XEP-0198 resumption.
    detached: AtomicBool,
    /// The client's address (after trusted proxies), for abuse controls.
    pub peer_ip: std::net::IpAddr,
    /// `jid`, escaped once for fanned-out stanzas' `to`.
    address: Arc<str>,
    /// The socket, lent by the session's task while it waits with nothing to write.
    direct: Mutex<Direct>,
    /// Whether `direct` holds a writer (read without the lock on every delivery).
    direct_open: AtomicBool,
    /// A direct write ended the loan (the socket was full or failed): the session must look.
    direct_interrupted: AtomicBool,
    /// Bursts under way for this session (see [`SessionHandle::burst`]).
    bursts: AtomicUsize,
    /// The session has ended and told the modules (`SessionHook::ended`: its unavailable
    /// presence is on its way); see [`SessionHandle::has_ended`].
    ended: AtomicBool,
}

static NEXT_SESSION_ID: AtomicU64 = AtomicU64::new(1);

impl SessionHandle {
    pub fn new(
        jid: jid::FullJid,
        anonymous: bool,
        queue: usize,
        peer_ip: std::net::IpAddr,
    ) -> Arc<SessionHandle> {
        let address = AddressedTemplate::recipient(jid.as_str());
        let handle = SessionHandle {
            jid,
            id: NEXT_SESSION_ID.fetch_add(1, Ordering::Relaxed),
            anonymous,
            queue: Mutex::new(Queue::default()),
            in_flight: AtomicUsize::new(0),
            queue_limit: queue,
            waker: AtomicWaker::new(),
            kick_reason: Mutex::new(None),
            closing: AtomicBool::new(false),
            detached: AtomicBool::new(false),
            peer_ip,
            address,
            presence: Mutex::new(PresenceState::default()),
            extensions: Default::default(),
            direct: Mutex::new(Direct::default()),
            direct_open: AtomicBool::new(false),
            direct_interrupted: AtomicBool::new(false),
            bursts: AtomicUsize::new(0),
            ended: AtomicBool::new(false),
        };
        Arc::new(handle)
    }

    /// Queue bytes for this session. A session whose queue is full cannot keep up; it is closed
    /// rather than allowed to grow memory without bound.
    pub fn send(&self, bytes: Bytes) {
        if self.may_write_direct() && self.write_direct([&bytes, &[], &[]]) {
            return;
        }
        self.enqueue(Outbound::Stanza(bytes));
    }

    /// Queue one copy of a fanned-out stanza, addressed to this session's JID.
    pub fn send_addressed(&self, template: &Arc<AddressedTemplate>) {
        self.send_addressed_after(template, None);
    }

    /// Queue bytes that may reach the client only once `commit` is done (a message its
    /// archive must hold first); whatever is queued after them waits too, so order is kept.
    pub fn send_after(&self, bytes: Bytes, commit: Option<&Commit>) {
        match commit.filter(|c| !c.is_done()) {
            None => self.send(bytes),
            Some(commit) => self.enqueue_after(Outbound::Stanza(bytes), Some(commit)),
        }
    }

    /// [`send_addressed`](Self::send_addressed), held back until `commit` is done.
    pub fn send_addressed_after(&self, template: &Arc<AddressedTemplate>, commit: Option<&Commit>) {
        let commit = commit.filter(|c| !c.is_done());
        if commit.is_none() && self.may_write_direct() {
            // Written from the parts: no reference counts touched for a copy that goes at once.
            let parts = [
                &template.head[..],
                self.address.as_bytes(),
                &template.tail[..],
            ];
            if self.write_direct(parts) {
                return;
            }
        }
        let item = Outbound::Addressed(template.clone(), self.address.clone());
        self.enqueue_after(item, commit);
    }

    fn enqueue(&self, item: Outbound) {
        self.enqueue_after(item, None);
    }

    fn enqueue_after(&self, item: Outbound, commit: Option<&Commit>) {
        let commit = commit.filter(|c| !c.is_done());
        let accepted = match self.queue.lock() {
            Ok(mut queue) if queue.items.len() < self.queue_limit => Some(match commit {
                Some(commit) => queue.push_gated(item, commit),
                None => {
                    queue.items.push_back(item);
                    true
                }
            }),
            _ => None,
        };
        if let Some(wake) = accepted {
            if wake {
                self.waker.wake();
            }
        } else if !self.closing.load(Ordering::SeqCst) {
            tracing::warn!(jid = %self.jid, "outbound queue full; disconnecting slow reader");
            self.kick(
                StreamCondition::PolicyViolation,
                "too many stanzas waiting to be read; the connection is too slow",
            );
        }
    }

    /// Many stanzas for this one client are coming from the caller (a room's occupants and
    /// history on join, a page of archive results): until the guard is dropped they are queued
    /// rather than written one system call each, and go out in one write when the session's
    /// task wakes.
    pub fn burst(self: &Arc<Self>) -> Burst {
        self.bursts.fetch_add(1, Ordering::AcqRel);
        Burst(self.clone())
    }

    fn may_write_direct(&self) -> bool {
        self.direct_open.load(Ordering::Acquire) && self.bursts.load(Ordering::Acquire) == 0
    }

    /// Write a stanza to the socket at once if the session lent it and nothing queued must go
    /// first; `false` when it must be queued instead.
    fn write_direct(&self, parts: [&[u8]; 3]) -> bool {
        let Ok(mut direct) = self.direct.lock() else {
            return false;
        };
        let Some(writer) = direct.writer.as_ref() else {
            return false;
        };
        // Stanzas queued before the loan ended, or a delivery that fell back to the queue
        // while the loan was being made, go first.
        let queue_empty = self.queue.lock().is_ok_and(|queue| queue.items.is_empty());
        if !queue_empty || self.closing.load(Ordering::Acquire) {
            return false;
        }
        let mut rest = Vec::new();
        match writer.try_write(parts, &mut rest) {
            Ok(()) if rest.is_empty() => true,
            Ok(()) => {
                // The socket is full: the session takes over, rest first.
                direct.rest = rest;
                self.end_loan(&mut direct);
                true
            }
            Err(e) => {
                if e.kind() != io::ErrorKind::WouldBlock {
                    tracing::debug!(jid = %self.jid, error = %e, "direct write failed");
                }
                self.end_loan(&mut direct);
                false
            }
        }
    }

    fn end_loan(&self, direct: &mut Direct) {
        direct.writer = None;
        self.direct_open.store(false, Ordering::Release);
        self.direct_interrupted.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Lend the socket to delivering tasks while the session's task waits with nothing to
    /// write; refused while stanzas are queued (the session must write those first).
    pub fn open_direct(&self, writer: Arc<dyn DirectWrite>) -> bool {
        let Ok(mut direct) = self.direct.lock() else {
            return false;
        };
        let queue_empty = self.queue.lock().is_ok_and(|queue| queue.items.is_empty());
        if !queue_empty || !direct.rest.is_empty() || self.closing.load(Ordering::Acquire) {
            return false;
        }
        direct.writer = Some(writer);
        self.direct_open.store(true, Ordering::Release);
        true
    }

    /// Take the socket back before the session's task writes: returns the part of a stanza a
    /// direct write left unwritten, which must be written first.
    pub fn close_direct(&self) -> Vec<u8> {
        self.direct_interrupted.store(false, Ordering::Release);
        let Ok(mut direct) = self.direct.lock() else {
            return Vec::new();
        };
        direct.writer = None;
        self.direct_open.store(false, Ordering::Release);
        std::mem::take(&mut direct.rest)
    }

    /// What the session's task must act on next: a kick first, then everything queued (the
    /// writer sends a batch in one go). Registers the task to be woken for either.
    pub fn poll_signal(&self, cx: &mut Context<'_>) -> Poll<Signal> {
        self.waker.register(cx.waker());
        if let Some(kick) = self.kick_reason.lock().ok().and_then(|r| r.clone()) {
            return Poll::Ready(Signal::Kicked(kick));
        }
        match self.queue.lock() {
            Ok(mut queue) => {
                // Whichever task polls last is the one to wake (a resumed stream's task takes
                // over the handle of the one that ended).
                queue.remember_task(cx);
                if queue.items.is_empty() {
                    if self.direct_interrupted.load(Ordering::Acquire) {
                        // A direct write left the rest of a stanza to write.
                        return Poll::Ready(Signal::Queued(VecDeque::new()));
                    }
                    return Poll::Pending;
                }
                match queue.take_ready(cx) {
                    Some(ready) => Poll::Ready(Signal::Queued(ready)),
                    None => Poll::Pending,
                }
            }
            Err(_) => Poll::Pending,
        }
    }

    /// Counts a stanza this session sent as held by another task until the guard is dropped.
    pub fn in_flight(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// Ready once no stanza this session sent is held by another task.
    pub fn poll_none_in_flight(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.in_flight.load(Ordering::Acquire) == 0 {
            return Poll::Ready(());
        }
        self.waker.register(cx.waker());
        match self.in_flight.load(Ordering::Acquire) {
            0 => Poll::Ready(()),
            _ => Poll::Pending,
        }
    }

    /// Resolves when the session is kicked; queued stanzas are left where they are.
    pub fn poll_kicked(&self, cx: &mut Context<'_>) -> Poll<Kick> {
        self.waker.register(cx.waker());
        match self.kick_reason.lock().ok().and_then(|r| r.clone()) {
            Some(kick) => Poll::Ready(kick),
            None => Poll::Pending,
        }
    }

    /// Wait for [`poll_signal`](Self::poll_signal).
    pub async fn signal(&self) -> Signal {
        std::future::poll_fn(|cx| self.poll_signal(cx)).await
    }

    pub fn send_element(&self, element: &Element) {
        self.send(Bytes::from(salon_xml::serialize(element)));
    }

    /// Ask the session to close its stream with this error.
    pub fn kick(&self, condition: StreamCondition, text: impl Into<String>) {
        if self.closing.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Ok(mut reason) = self.kick_reason.lock() {
            *reason = Some(Kick {
                condition,
                text: text.into(),
            });
        }
        self.waker.wake();
    }

    /// Record that the session has ended and its `SessionHook::ended` hooks have run.
    pub fn mark_ended(&self) {
        self.ended.store(true, Ordering::Release);
    }

    /// Whether the session has ended and told the modules so (a session replaced by a new one
    /// with the same address is waited for, `session/replaced.rs`).
    pub fn has_ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    pub fn set_detached(&self, detached: bool) {
        self.detached.store(detached, Ordering::SeqCst);
    }

    /// Whether the session has lost its connection and waits to be resumed.
    pub fn is_detached(&self) -> bool {
        self.detached.load(Ordering::SeqCst)
    }

    pub fn is_available(&self) -> bool {
        self.presence.lock().map(|p| p.available).unwrap_or(false)
    }

    pub fn priority(&self) -> i8 {
        self.presence.lock().map(|p| p.priority).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stanza::Build;

    fn written(item: &Outbound) -> String {
        let mut out = Vec::new();
        item.write_to(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn template_splices_each_recipient_into_one_serialisation() {
        let message = Build::new("message", crate::stanza::ns::CLIENT)
            .attr("from", "room@rooms.example/nick")
            .attr("type", "groupchat")
            .child(
                Build::new("body", crate::stanza::ns::CLIENT)
                    .text("a <b> & 'c'")
                    .build(),
            )
            .build();
        let template = AddressedTemplate::new(&message);
        let first = written(&Outbound::Addressed(
            template.clone(),
            AddressedTemplate::recipient("a@example/x"),
        ));
        let second = written(&Outbound::Addressed(
            template.clone(),
            AddressedTemplate::recipient("o'brien@example/y"),
        ));
        assert!(first.contains("to='a@example/x'"), "{first}");
        assert!(second.contains("to='o&apos;brien@example/y'"), "{second}");
        assert_eq!(
            first.replace("to='a@example/x'", "X"),
            second.replace("to='o&apos;brien@example/y'", "X")
        );
        // Without the recipient it is the stanza as serialised on its own.
        let bare = String::from_utf8(template.without_recipient().unwrap()).unwrap();
        assert_eq!(
            bare,
            String::from_utf8(salon_xml::serialize(&message)).unwrap()
        );
    }

    /// A socket that takes `room` more bytes, then would block.
    struct Socket {
        room: Mutex<usize>,
        written: Mutex<Vec<u8>>,
    }

    impl DirectWrite for Socket {
        fn try_write(&self, parts: [&[u8]; 3], rest: &mut Vec<u8>) -> io::Result<()> {
            let mut room = self.room.lock().unwrap();
            if *room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let whole = parts.concat();
            let taken = whole.len().min(*room);
            *room -= taken;
            self.written
                .lock()
                .unwrap()
                .extend_from_slice(&whole[..taken]);
            rest.extend_from_slice(&whole[taken..]);
            Ok(())
        }
    }

    /// A bound session's handle, and a socket that takes `room` bytes before it would block.
    fn handle_and_socket(user: &str, room: usize) -> (Arc<SessionHandle>, Arc<Socket>) {
        let jid: jid::FullJid = format!("{user}@example/r").parse().unwrap();
        let handle = SessionHandle::new(jid, false, 16, std::net::IpAddr::from([127, 0, 0, 1]));
        let socket = Arc::new(Socket {
            room: Mutex::new(room),
            written: Mutex::new(Vec::new()),
        });
        (handle, socket)
    }

    fn queued(handle: &SessionHandle) -> Vec<String> {
        let queue = handle.queue.lock().unwrap();
        queue.items.iter().map(written).collect()
    }

    #[test]
    fn direct_writes_keep_order_when_the_socket_fills() {
        let (handle, socket) = handle_and_socket("a", 10);
        // Not lent: queued.
        handle.send(Bytes::from_static(b"<one/>"));
        assert_eq!(queued(&handle), ["<one/>"]);
        // Lending is refused while something is queued: it must be written first.
        assert!(!handle.open_direct(socket.clone()));
        handle.queue.lock().unwrap().items.clear();
        assert!(handle.open_direct(socket.clone()));

        // Fits: written at once, nothing queued.
        handle.send(Bytes::from_static(b"<two/>"));
        assert_eq!(&socket.written.lock().unwrap()[..], b"<two/>");
        assert!(queued(&handle).is_empty());
        // Fits in part: the rest is kept for the session, the loan ends and the session is
        // told, and what follows is queued behind it.
        handle.send(Bytes::from_static(b"<three/>"));
        handle.send(Bytes::from_static(b"<four/>"));
        assert_eq!(&socket.written.lock().unwrap()[..], b"<two/><thr");
        assert_eq!(queued(&handle), ["<four/>"]);
        assert!(handle.direct_interrupted.load(Ordering::Acquire));
        assert_eq!(handle.close_direct(), b"ee/>");
        assert!(!handle.direct_interrupted.load(Ordering::Acquire));
    }

    #[test]
    fn a_full_socket_sends_the_stanza_to_the_queue() {
        let (handle, socket) = handle_and_socket("b", 0);
        assert!(handle.open_direct(socket.clone()));
        handle.send(Bytes::from_static(b"<one/>"));
        handle.send(Bytes::from_static(b"<two/>"));
        assert_eq!(queued(&handle), ["<one/>", "<two/>"]);
        assert!(handle.close_direct().is_empty());
    }

    #[test]
    fn a_burst_for_one_client_is_queued_for_one_write() {
        let (handle, socket) = handle_and_socket("c", 1 << 20);
        assert!(handle.open_direct(socket.clone()));
        {
            let _burst = handle.burst();
            handle.send(Bytes::from_static(b"<one/>"));
            handle.send(Bytes::from_static(b"<two/>"));
        }
        // Queued behind the burst, so not written directly either.
        handle.send(Bytes::from_static(b"<three/>"));
        assert_eq!(queued(&handle), ["<one/>", "<two/>", "<three/>"]);
        assert!(socket.written.lock().unwrap().is_empty());
        // Once the session has written the queue, single deliveries go direct again.
        handle.queue.lock().unwrap().items.clear();
        handle.send(Bytes::from_static(b"<four/>"));
        assert_eq!(&socket.written.lock().unwrap()[..], b"<four/>");
    }
}
