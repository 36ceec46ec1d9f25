//! The server half of the `fixed-floor` scenario, run in a child process of `salon-bench` (so
//! that its CPU time and context switches are read from /proc like a real server's): the
//! system work one message needs and nothing else. No XML, no routing table, no archive
//! database.
//!
//! Two shapes of traffic:
//! - `room` (a room message, `muc --clients N --rooms 1`): for every message a client sends it
//!   reads the message from its loopback socket, appends one record to a journal and writes
//!   one delivery to every client (the sender's echo and the other occupants' copies);
//! - `chat` (a 1:1 message, `chat --clients N`): clients are in pairs (0,1), (2,3)…; it reads
//!   the message, appends one record to the journal and writes one delivery to the sender's
//!   partner only (no echo).
//!
//! The journal append is one `write(2)` (`--journal write`, as Salon's archive journal once
//! did) or nothing (`--journal none`: Salon's journal is now a mapped file, where an append is
//! a memcpy and no system call, so leaving the call out gives the least figure).
//!
//! Three modes: `thread` (one thread blocking in epoll, the cheapest any server can be),
//! `tasks` (a tokio runtime with two workers, or `--workers`, laid out as Salon is: one task
//! per connection that reads its socket and writes its queued deliveries; in the room shape a
//! room task that journals each message and queues the deliveries, in the chat shape the
//! sender's session journals and queues the delivery to the partner's session, as Salon's
//! sessions route 1:1 messages) and `direct` (the same, but whoever delivers writes to the
//! recipient's socket itself: what a delivery costs when no session task is woken for it).

use anyhow::{bail, Context, Result};
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

/// One message from a client: its send time (µs, little-endian u64), the sender's index (u64)
/// and filler, about the size of the `muc` scenario's groupchat message (≈ 130 bytes).
pub const MESSAGE: usize = 128;
/// One delivery: the message's first 16 bytes and filler, about the size of one groupchat
/// delivery from Salon in the `muc` scenario (as in the `floor` scenario).
pub const DELIVERY: usize = 420;
/// One journal record: a sequence number, the message, and filler to about the size of an
/// archived groupchat stanza's record in Salon's journal.
const RECORD: usize = 400;

/// The hidden first argument that makes `salon-bench` this server.
pub const CHILD_ARG: &str = "__fixed-floor-server";

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One thread blocking in epoll (mio).
    Thread,
    /// A tokio runtime with two workers, one task per connection (and a room task in the
    /// room shape).
    Tasks,
    /// As `tasks`, but the room (or, in the chat shape, the sender's session) writes each
    /// delivery to the recipient's socket itself (queueing to the recipient's session only
    /// what a full socket did not take): no session task is woken for a delivery.
    Direct,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    /// One room: every message is delivered to every client, the sender included.
    Room,
    /// 1:1 chat: clients in pairs (0,1), (2,3)…, each message delivered to the partner only.
    Chat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JournalMode {
    /// Append one record per message to a journal file with one `write(2)`.
    Write,
    /// No journal (an append to Salon's mapped journal is a memcpy, no system call).
    None,
}

/// The client a chat-shape message from client `i` goes to: pairs are (0,1), (2,3)…, as the
/// `chat` scenario pairs its clients.
pub fn partner(i: usize) -> usize {
    i ^ 1
}

/// Rejects a client count the shape cannot use: the chat shape needs whole pairs.
pub fn check_clients(shape: Shape, clients: usize) -> Result<()> {
    match shape {
        Shape::Room if clients == 0 => bail!("fixed-floor needs --clients ≥ 1"),
        Shape::Chat if clients < 2 || !clients.is_multiple_of(2) => {
            bail!("fixed-floor --shape chat pairs clients: --clients must be even and ≥ 2")
        }
        _ => Ok(()),
    }
}

/// What the child did, printed as its last line so the parent can report system calls.
#[derive(Debug, Default, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct ServerCounts {
    pub messages: u64,
    pub socket_reads: u64,
    pub socket_writes: u64,
    pub journal_writes: u64,
    pub polls: u64,
}

/// Entry point of the child: `salon-bench __fixed-floor-server MODE SHAPE WORKERS CLIENTS
/// JOURNAL_MODE JOURNAL DEADLINE_S`.
/// Prints the port it listens on, then `ready` once every client is connected, then (when all
/// clients have closed) the counts as one JSON line. Exits by itself after the deadline.
pub fn child_main(args: &[String]) -> Result<()> {
    let [mode, shape, workers, clients, journal_mode, journal, deadline] = args else {
        bail!(
            "usage: {CHILD_ARG} thread|tasks|direct room|chat WORKERS CLIENTS write|none \
             JOURNAL DEADLINE_S"
        );
    };
    let mode = <Mode as clap::ValueEnum>::from_str(mode, true).map_err(anyhow::Error::msg)?;
    let shape = <Shape as clap::ValueEnum>::from_str(shape, true).map_err(anyhow::Error::msg)?;
    let workers: usize = workers.parse().context("WORKERS")?;
    let clients: usize = clients.parse().context("CLIENTS")?;
    check_clients(shape, clients)?;
    let journal_mode = <JournalMode as clap::ValueEnum>::from_str(journal_mode, true)
        .map_err(anyhow::Error::msg)?;
    let deadline = Duration::from_secs_f64(deadline.parse().context("DEADLINE_S")?);
    // Whatever happens to the parent, this process does not outlive the run.
    std::thread::spawn(move || {
        std::thread::sleep(deadline);
        eprintln!("fixed-floor server: deadline reached, exiting");
        std::process::exit(2);
    });
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a loopback port")?;
    println!("{}", listener.local_addr()?.port());
    let mut sockets = Vec::with_capacity(clients);
    for _ in 0..clients {
        let (socket, _) = listener.accept()?;
        socket.set_nodelay(true)?;
        sockets.push(socket);
    }
    let journal = match journal_mode {
        JournalMode::Write => Some(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(Path::new(journal))
                .context("opening the journal")?,
        ),
        JournalMode::None => None,
    };
    println!("ready");
    let counts = match mode {
        Mode::Thread => thread::serve(sockets, journal, shape)?,
        Mode::Tasks => tasks::serve(sockets, journal, shape, workers.max(1), false)?,
        Mode::Direct => tasks::serve(sockets, journal, shape, workers.max(1), true)?,
    };
    println!("{}", serde_json::to_string(&counts)?);
    Ok(())
}

/// The journal record and the delivery for one message.
fn record(sequence: u64, message: &[u8]) -> Vec<u8> {
    let mut record = Vec::with_capacity(RECORD);
    record.extend_from_slice(&sequence.to_le_bytes());
    record.extend_from_slice(message);
    record.resize(RECORD, b'j');
    record
}

fn delivery(message: &[u8]) -> Vec<u8> {
    let mut delivery = Vec::with_capacity(DELIVERY);
    delivery.extend_from_slice(&message[..16]);
    delivery.resize(DELIVERY, b'd');
    delivery
}

/// Appends one record with one `write(2)`; a short write into the page cache does not happen
/// for a regular file short of a full disk, which is an error here.
fn append(journal: &mut File, record: &[u8]) -> Result<()> {
    let written = journal.write(record)?;
    if written != record.len() {
        bail!("short journal write ({written} of {})", record.len());
    }
    Ok(())
}

mod thread {
    use super::*;
    use mio::net::TcpStream;
    use mio::{Events, Interest, Poll, Token};

    struct Client {
        stream: TcpStream,
        input: Vec<u8>,
        /// Bytes a full socket buffer did not take yet (never, at these rates; kept correct).
        output: Vec<u8>,
        /// Registered for writability because `output` is not empty.
        watching_writes: bool,
        open: bool,
    }

    pub fn serve(
        sockets: Vec<std::net::TcpStream>,
        mut journal: Option<File>,
        shape: Shape,
    ) -> Result<ServerCounts> {
        let mut poll = Poll::new()?;
        let mut events = Events::with_capacity(64);
        let mut clients = Vec::with_capacity(sockets.len());
        for (i, socket) in sockets.into_iter().enumerate() {
            socket.set_nonblocking(true)?;
            let mut stream = TcpStream::from_std(socket);
            poll.registry()
                .register(&mut stream, Token(i), Interest::READABLE)?;
            clients.push(Client {
                stream,
                input: Vec::new(),
                output: Vec::new(),
                watching_writes: false,
                open: true,
            });
        }
        let mut counts = ServerCounts::default();
        let mut buffer = vec![0u8; 16 * 1024];
        while clients.iter().any(|c| c.open) {
            counts.polls += 1;
            match poll.poll(&mut events, None) {
                Ok(()) => {}
                // A signal (a tracer attaching, say) interrupts the wait: wait again.
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
            for event in events.iter() {
                let i = event.token().0;
                if event.is_writable() {
                    flush(&mut clients[i], &poll, i, &mut counts)?;
                }
                if !event.is_readable() {
                    continue;
                }
                // Edge-triggered: read until the socket is drained. A read shorter than the
                // buffer drained it (epoll(7) allows this for stream sockets), which saves
                // the read that would only return EAGAIN.
                loop {
                    counts.socket_reads += 1;
                    match clients[i].stream.read(&mut buffer) {
                        Ok(0) => {
                            clients[i].open = false;
                            poll.registry().deregister(&mut clients[i].stream)?;
                            break;
                        }
                        Ok(n) => {
                            clients[i].input.extend_from_slice(&buffer[..n]);
                            while clients[i].input.len() >= MESSAGE {
                                let message: Vec<u8> = clients[i].input.drain(..MESSAGE).collect();
                                counts.messages += 1;
                                if let Some(journal) = journal.as_mut() {
                                    append(journal, &record(counts.messages, &message))?;
                                    counts.journal_writes += 1;
                                }
                                let delivery = delivery(&message);
                                let recipients = match shape {
                                    Shape::Room => 0..clients.len(),
                                    Shape::Chat => partner(i)..partner(i) + 1,
                                };
                                for j in recipients {
                                    let client = &mut clients[j];
                                    if client.open {
                                        client.output.extend_from_slice(&delivery);
                                        flush(client, &poll, j, &mut counts)?;
                                    }
                                }
                            }
                            if n < buffer.len() {
                                break;
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        Ok(counts)
    }

    fn flush(client: &mut Client, poll: &Poll, i: usize, counts: &mut ServerCounts) -> Result<()> {
        while !client.output.is_empty() {
            counts.socket_writes += 1;
            match client.stream.write(&client.output) {
                Ok(n) => {
                    client.output.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // The client went away; its EOF will close it.
                Err(_) => {
                    client.output.clear();
                    break;
                }
            }
        }
        let backlog = !client.output.is_empty();
        if backlog != client.watching_writes {
            let interest = if backlog {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            poll.registry()
                .reregister(&mut client.stream, Token(i), interest)?;
            client.watching_writes = backlog;
        }
        Ok(())
    }
}

mod tasks {
    use super::*;
    use bytes::Bytes;
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    use std::sync::{Arc, Mutex};
    use tokio::io::AsyncReadExt;
    use tokio::sync::mpsc;

    /// A room's inbox and a session's queue are bounded in Salon too.
    const QUEUE: usize = 4096;

    #[derive(Default)]
    struct Counters {
        messages: AtomicU64,
        socket_reads: AtomicU64,
        socket_writes: AtomicU64,
        journal_writes: AtomicU64,
    }

    pub fn serve(
        sockets: Vec<std::net::TcpStream>,
        journal: Option<File>,
        shape: Shape,
        workers: usize,
        direct: bool,
    ) -> Result<ServerCounts> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_io()
            .build()?;
        let counters = Arc::new(Counters::default());
        runtime.block_on(run(sockets, journal, shape, direct, counters.clone()))?;
        Ok(ServerCounts {
            messages: counters.messages.load(Relaxed),
            socket_reads: counters.socket_reads.load(Relaxed),
            socket_writes: counters.socket_writes.load(Relaxed),
            journal_writes: counters.journal_writes.load(Relaxed),
            polls: 0,
        })
    }

    async fn run(
        sockets: Vec<std::net::TcpStream>,
        journal: Option<File>,
        shape: Shape,
        direct: bool,
        counters: Arc<Counters>,
    ) -> Result<()> {
        let mut recipients = Vec::new();
        let mut halves = Vec::new();
        for socket in sockets {
            socket.set_nonblocking(true)?;
            let (reader, writer) = tokio::net::TcpStream::from_std(socket)?.into_split();
            let (queue_tx, queue_rx) = mpsc::channel::<Bytes>(QUEUE);
            let outbox = Arc::new(Outbox {
                writer,
                queued: Mutex::new(false),
            });
            recipients.push(Recipient {
                queue: queue_tx,
                outbox: outbox.clone(),
            });
            halves.push((reader, outbox, queue_rx));
        }
        let (room, routes) = match shape {
            Shape::Room => {
                let (inbox_tx, inbox_rx) = mpsc::channel::<Vec<u8>>(QUEUE);
                let routes: Vec<Route> = (0..halves.len())
                    .map(|_| Route::Room(inbox_tx.clone()))
                    .collect();
                let room = tokio::spawn(room(
                    inbox_rx,
                    journal,
                    recipients,
                    direct,
                    counters.clone(),
                ));
                (Some(room), routes)
            }
            Shape::Chat => {
                // One journal for the whole server, as Salon's archive has: the sessions take
                // turns at it.
                let journal = journal.map(|file| Arc::new(Mutex::new(file)));
                let routes = (0..halves.len())
                    .map(|i| Route::Partner {
                        partner: recipients[partner(i)].clone(),
                        journal: journal.clone(),
                        direct,
                    })
                    .collect();
                // Only the partners hold a session's queue now, so a session's queue closes
                // when its partner's session ends.
                drop(recipients);
                (None, routes)
            }
        };
        let mut sessions = Vec::new();
        for ((reader, outbox, queue), route) in halves.into_iter().zip(routes) {
            sessions.push(tokio::spawn(session(
                reader,
                outbox,
                route,
                queue,
                counters.clone(),
            )));
        }
        for session in sessions {
            session.await??;
        }
        match room {
            Some(room) => room.await?,
            None => Ok(()),
        }
    }

    /// A session's socket for writing, shared with whoever delivers to it in the `direct` mode.
    struct Outbox {
        writer: tokio::net::tcp::OwnedWriteHalf,
        /// Set while deliveries go through the session's queue (the socket once did not take
        /// all of one): the deliverer then queues too, so that order holds.
        queued: Mutex<bool>,
    }

    /// A session as others deliver to it.
    #[derive(Clone)]
    struct Recipient {
        queue: mpsc::Sender<Bytes>,
        outbox: Arc<Outbox>,
    }

    impl Recipient {
        /// Queues one delivery to the session, or in the `direct` mode writes it to the
        /// session's socket, queueing only what a full socket did not take (and, after that,
        /// everything until the session has written its queue, so that order holds). A
        /// session that is gone or cannot keep up loses it (Salon disconnects it).
        fn deliver(&self, delivery: &Bytes, direct: bool, counters: &Counters) {
            if !direct {
                let _ = self.queue.try_send(delivery.clone());
                return;
            }
            let mut queued = self.outbox.queued.lock().unwrap_or_else(|e| e.into_inner());
            if *queued {
                let _ = self.queue.try_send(delivery.clone());
                return;
            }
            counters.socket_writes.fetch_add(1, Relaxed);
            match self.outbox.writer.try_write(delivery) {
                Ok(n) if n == delivery.len() => {}
                Ok(n) => {
                    *queued = true;
                    let _ = self.queue.try_send(delivery.slice(n..));
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    *queued = true;
                    let _ = self.queue.try_send(delivery.clone());
                }
                Err(_) => {}
            }
        }
    }

    /// Where a session's messages go.
    enum Route {
        /// Room shape: to the room task.
        Room(mpsc::Sender<Vec<u8>>),
        /// Chat shape: the session journals the message itself and delivers it to its
        /// partner's session, as Salon's sessions route a 1:1 message without a room.
        Partner {
            partner: Recipient,
            journal: Option<Arc<Mutex<File>>>,
            direct: bool,
        },
    }

    /// Numbers the message and appends its record if there is a journal.
    fn journal_message(
        journal: Option<&mut File>,
        message: &[u8],
        counters: &Counters,
    ) -> Result<()> {
        let sequence = counters.messages.fetch_add(1, Relaxed) + 1;
        if let Some(journal) = journal {
            append(journal, &record(sequence, message))?;
            counters.journal_writes.fetch_add(1, Relaxed);
        }
        Ok(())
    }

    /// The room: journal the message, then deliver it to every occupant (serialised once,
    /// shared).
    async fn room(
        mut inbox: mpsc::Receiver<Vec<u8>>,
        mut journal: Option<File>,
        occupants: Vec<Recipient>,
        direct: bool,
        counters: Arc<Counters>,
    ) -> Result<()> {
        while let Some(message) = inbox.recv().await {
            journal_message(journal.as_mut(), &message, &counters)?;
            let delivery = Bytes::from(delivery(&message));
            for occupant in &occupants {
                occupant.deliver(&delivery, direct, &counters);
            }
        }
        Ok(())
    }

    /// One session: reads its socket and hands each message on (to the room, or journals it
    /// and delivers it to its partner), writes whatever is queued for it (everything ready in
    /// one write).
    async fn session(
        mut reader: tokio::net::tcp::OwnedReadHalf,
        outbox: Arc<Outbox>,
        route: Route,
        mut queue: mpsc::Receiver<Bytes>,
        counters: Arc<Counters>,
    ) -> Result<()> {
        let mut buffer = vec![0u8; 16 * 1024];
        let mut input = Vec::new();
        let mut batch = Vec::new();
        let mut reading = true;
        // Until nobody can deliver to this session any more (the room, or the partner's
        // session, has ended): its own client may still be sending.
        let mut receiving = true;
        loop {
            tokio::select! {
                read = reader.read(&mut buffer), if reading => {
                    counters.socket_reads.fetch_add(1, Relaxed);
                    let n = read?;
                    if n == 0 {
                        // The client closed: nothing more to deliver to it.
                        return Ok(());
                    }
                    input.extend_from_slice(&buffer[..n]);
                    while input.len() >= MESSAGE {
                        let message: Vec<u8> = input.drain(..MESSAGE).collect();
                        match &route {
                            Route::Room(inbox) => {
                                if inbox.send(message).await.is_err() {
                                    reading = false;
                                    break;
                                }
                            }
                            Route::Partner { partner, journal, direct } => {
                                let mut journal = journal
                                    .as_ref()
                                    .map(|j| j.lock().unwrap_or_else(|e| e.into_inner()));
                                journal_message(journal.as_deref_mut(), &message, &counters)?;
                                drop(journal);
                                let delivery = Bytes::from(delivery(&message));
                                partner.deliver(&delivery, *direct, &counters);
                            }
                        }
                    }
                }
                first = queue.recv(), if receiving => {
                    let Some(first) = first else {
                        receiving = false;
                        continue;
                    };
                    batch.clear();
                    batch.extend_from_slice(&first);
                    loop {
                        while let Ok(next) = queue.try_recv() {
                            batch.extend_from_slice(&next);
                        }
                        if write_all(&outbox.writer, &batch, &counters).await.is_err() {
                            return Ok(());
                        }
                        batch.clear();
                        // Whatever was queued meanwhile goes out before the deliverer writes
                        // again.
                        let mut queued = outbox.queued.lock().unwrap_or_else(|e| e.into_inner());
                        match queue.try_recv() {
                            Ok(next) => batch.extend_from_slice(&next),
                            Err(_) => {
                                *queued = false;
                                break;
                            }
                        }
                    }
                }
                else => return Ok(()),
            }
        }
    }

    async fn write_all(
        writer: &tokio::net::tcp::OwnedWriteHalf,
        mut bytes: &[u8],
        counters: &Counters,
    ) -> std::io::Result<()> {
        while !bytes.is_empty() {
            counters.socket_writes.fetch_add(1, Relaxed);
            match writer.try_write(bytes) {
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == ErrorKind::WouldBlock => writer.writable().await?,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_deliveries_carry_the_stamp() {
        let mut message = vec![b'm'; MESSAGE];
        message[..8].copy_from_slice(&1234u64.to_le_bytes());
        let d = delivery(&message);
        assert_eq!(d.len(), DELIVERY);
        assert_eq!(&d[..16], &message[..16]);
        let r = record(7, &message);
        assert_eq!(r.len(), RECORD);
        assert_eq!(&r[..8], &7u64.to_le_bytes());
    }

    #[test]
    fn chat_pairs_neighbours_and_needs_whole_pairs() {
        for i in 0..10 {
            assert_eq!(partner(i), i ^ 1);
            assert_eq!(partner(partner(i)), i);
            assert_ne!(partner(i), i);
        }
        assert_eq!(
            (partner(0), partner(1), partner(198), partner(199)),
            (1, 0, 199, 198)
        );
        assert!(check_clients(Shape::Chat, 200).is_ok());
        assert!(check_clients(Shape::Chat, 2).is_ok());
        assert!(check_clients(Shape::Chat, 201).is_err());
        assert!(check_clients(Shape::Chat, 1).is_err());
        assert!(check_clients(Shape::Chat, 0).is_err());
        assert!(check_clients(Shape::Room, 1).is_ok());
        assert!(check_clients(Shape::Room, 0).is_err());
    }
}
