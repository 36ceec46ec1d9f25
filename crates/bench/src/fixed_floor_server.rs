//! The server half of the `fixed-floor` scenario, run in a child process of `salon-bench` (so
//! that its CPU time and context switches are read from /proc like a real server's): the
//! system work one room message needs and nothing else. For every message a client sends it
//! reads the message from its loopback socket, appends one record to a journal file with one
//! `write(2)` (as Salon's archive journal does) and writes one delivery to every client (the
//! sender's echo and the other occupants' copies). No XML, no routing, no archive database.
//!
//! Two shapes: `thread` (one thread blocking in epoll, the cheapest any server can be) and
//! `tasks` (a tokio runtime with two workers, or `--workers`, laid out as Salon is: one task per connection
//! that reads its socket and writes its queued deliveries, a room task that journals each
//! message and queues the deliveries), and `direct` (the same, but the room writes the
//! deliveries to the sockets itself: what a fan-out costs when no session task is woken).

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
    /// A tokio runtime with two workers, one task per connection and a room task.
    Tasks,
    /// As `tasks`, but the room writes each delivery to the occupants' sockets itself
    /// (queueing to the session only what a full socket did not take): no session task is
    /// woken for a delivery.
    Direct,
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

/// Entry point of the child: `salon-bench __fixed-floor-server MODE WORKERS CLIENTS JOURNAL
/// DEADLINE_S`.
/// Prints the port it listens on, then `ready` once every client is connected, then (when all
/// clients have closed) the counts as one JSON line. Exits by itself after the deadline.
pub fn child_main(args: &[String]) -> Result<()> {
    let [mode, workers, clients, journal, deadline] = args else {
        bail!("usage: {CHILD_ARG} thread|tasks|direct WORKERS CLIENTS JOURNAL DEADLINE_S");
    };
    let workers: usize = workers.parse().context("WORKERS")?;
    let mode = <Mode as clap::ValueEnum>::from_str(mode, true).map_err(anyhow::Error::msg)?;
    let clients: usize = clients.parse().context("CLIENTS")?;
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
    let journal = OpenOptions::new()
        .create(true)
        .append(true)
        .open(Path::new(journal))
        .context("opening the journal")?;
    println!("ready");
    let counts = match mode {
        Mode::Thread => thread::serve(sockets, journal)?,
        Mode::Tasks => tasks::serve(sockets, journal, workers.max(1), false)?,
        Mode::Direct => tasks::serve(sockets, journal, workers.max(1), true)?,
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

    pub fn serve(sockets: Vec<std::net::TcpStream>, mut journal: File) -> Result<ServerCounts> {
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
                                append(&mut journal, &record(counts.messages, &message))?;
                                counts.journal_writes += 1;
                                let delivery = delivery(&message);
                                for (j, client) in clients.iter_mut().enumerate() {
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
    use std::sync::Arc;
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
        journal: File,
        workers: usize,
        direct: bool,
    ) -> Result<ServerCounts> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_io()
            .build()?;
        let counters = Arc::new(Counters::default());
        runtime.block_on(run(sockets, journal, direct, counters.clone()))?;
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
        journal: File,
        direct: bool,
        counters: Arc<Counters>,
    ) -> Result<()> {
        let (inbox_tx, inbox_rx) = mpsc::channel::<Vec<u8>>(QUEUE);
        let mut occupants = Vec::new();
        let mut sessions = Vec::new();
        for socket in sockets {
            socket.set_nonblocking(true)?;
            let (reader, writer) = tokio::net::TcpStream::from_std(socket)?.into_split();
            let (queue_tx, queue_rx) = mpsc::channel::<Bytes>(QUEUE);
            let outbox = Arc::new(Outbox {
                writer,
                queued: std::sync::Mutex::new(false),
            });
            occupants.push((queue_tx, outbox.clone()));
            sessions.push(tokio::spawn(session(
                reader,
                outbox,
                inbox_tx.clone(),
                queue_rx,
                counters.clone(),
            )));
        }
        drop(inbox_tx);
        let room = tokio::spawn(room(inbox_rx, journal, occupants, direct, counters));
        for session in sessions {
            session.await??;
        }
        room.await?
    }

    /// A session's socket for writing, shared with the room in the `direct` mode.
    struct Outbox {
        writer: tokio::net::tcp::OwnedWriteHalf,
        /// Set while deliveries go through the session's queue (the socket once did not take
        /// all of one): the room then queues too, so that order holds.
        queued: std::sync::Mutex<bool>,
    }

    /// The room: journal the message, then queue one delivery to every occupant's session
    /// (serialised once, shared), or in the `direct` mode write it to the occupant's socket
    /// itself, queueing only what a full socket did not take.
    async fn room(
        mut inbox: mpsc::Receiver<Vec<u8>>,
        mut journal: File,
        occupants: Vec<(mpsc::Sender<Bytes>, Arc<Outbox>)>,
        direct: bool,
        counters: Arc<Counters>,
    ) -> Result<()> {
        while let Some(message) = inbox.recv().await {
            let sequence = counters.messages.fetch_add(1, Relaxed) + 1;
            append(&mut journal, &record(sequence, &message))?;
            counters.journal_writes.fetch_add(1, Relaxed);
            let delivery = Bytes::from(delivery(&message));
            for (queue, outbox) in &occupants {
                // A session that is gone or cannot keep up loses it (Salon disconnects it).
                if !direct {
                    let _ = queue.try_send(delivery.clone());
                    continue;
                }
                let mut queued = outbox.queued.lock().unwrap_or_else(|e| e.into_inner());
                if *queued {
                    let _ = queue.try_send(delivery.clone());
                    continue;
                }
                counters.socket_writes.fetch_add(1, Relaxed);
                match outbox.writer.try_write(&delivery) {
                    Ok(n) if n == delivery.len() => {}
                    Ok(n) => {
                        *queued = true;
                        let _ = queue.try_send(delivery.slice(n..));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        *queued = true;
                        let _ = queue.try_send(delivery.clone());
                    }
                    Err(_) => {}
                }
            }
        }
        Ok(())
    }

    /// One session: reads its socket and hands each message to the room, writes whatever is
    /// queued for it (everything ready in one write).
    async fn session(
        mut reader: tokio::net::tcp::OwnedReadHalf,
        outbox: Arc<Outbox>,
        inbox: mpsc::Sender<Vec<u8>>,
        mut queue: mpsc::Receiver<Bytes>,
        counters: Arc<Counters>,
    ) -> Result<()> {
        let mut buffer = vec![0u8; 16 * 1024];
        let mut input = Vec::new();
        let mut batch = Vec::new();
        let mut reading = true;
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
                        if inbox.send(message).await.is_err() {
                            reading = false;
                            break;
                        }
                    }
                }
                first = queue.recv() => {
                    let Some(first) = first else { return Ok(()) };
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
                        // Whatever the room queued meanwhile goes out before it writes again.
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
}
