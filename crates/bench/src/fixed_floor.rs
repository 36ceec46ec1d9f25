//! The `fixed-floor` scenario: what one message must cost a server on this machine, at the
//! least, when the server is idle between messages (issue 17's fixed cost of a message). It
//! starts `fixed_floor_server` in a child process (this binary, run again with a hidden first
//! argument) that only does the system work a message needs: wake up for the input, read the
//! message, append it to a journal (one `write(2)`, or with `--journal none` nothing, as an
//! append to Salon's mapped journal makes no system call), write the deliveries. Its CPU time
//! and context switches are read from /proc like a server's, over the same window (sending
//! plus drain). What Salon spends beyond this per message is what its own code and its
//! wake-ups cost.
//!
//! Two shapes, so that each of Salon's figures has its floor measured on the same machine:
//! - `--shape room` (default): the clients send and read as `salon-bench muc --clients N
//!   --rooms 1 --rate R` does; each message is delivered to every client, the sender too.
//! - `--shape chat`: as `salon-bench chat --clients N --rate R`; clients in pairs (0,1),
//!   (2,3)…, each message delivered to the sender's partner only, so one delivery per
//!   message (issue 17's 1:1 target is counted in deliveries per CPU-second).

use crate::fixed_floor_server::{check_clients, ServerCounts, CHILD_ARG, DELIVERY, MESSAGE};
pub use crate::fixed_floor_server::{JournalMode, Mode, Shape};
use crate::stats::{cpu_seconds, load_1min, proc_sample, Latency};
use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::{interval_at, MissedTickBehavior};

pub struct FixedFloorPlan {
    pub mode: Mode,
    pub shape: Shape,
    pub journal: JournalMode,
    /// Worker threads of the tasks mode's runtime (Salon's default on this machine is 2).
    pub workers: usize,
    pub clients: usize,
    pub rate: f64,
    pub duration: Duration,
    pub drain: Duration,
}

#[derive(Debug, Serialize)]
pub struct FixedFloorReport {
    pub scenario: &'static str,
    pub mode: Mode,
    /// `room` (every message to every client) or `chat` (to the sender's partner only).
    pub shape: Shape,
    /// `write` (one `write(2)` per message) or `none`.
    pub journal: JournalMode,
    /// Only for the tasks and direct modes.
    pub workers: Option<usize>,
    pub clients: usize,
    pub rate_per_client: f64,
    pub duration_s: f64,
    pub server_pid: u32,
    pub messages_sent: u64,
    pub deliveries_expected: u64,
    pub deliveries_received: u64,
    pub lost: u64,
    pub latency: Latency,
    /// The server's CPU over sending and drain: all threads' schedstat run time (ns
    /// resolution) and, for comparison with the other scenarios, /proc/PID/stat (10 ms ticks).
    pub server_cpu_s: f64,
    pub server_cpu_stat_s: f64,
    pub server_cpu_us_per_message: f64,
    pub server_voluntary_switches_per_message: f64,
    pub server_involuntary_switches_per_message: f64,
    /// What the server counted over the whole run (the thread mode counts every read, write
    /// and epoll_wait; the tasks mode only the reads and writes that returned to a task).
    pub server_counts: ServerCounts,
    pub load_1min: Option<f64>,
    pub bench_cpu_s: f64,
}

/// The child server, killed if it is still running when this is dropped.
struct Server {
    child: Child,
    lines: BufReader<ChildStdout>,
    journal: std::path::PathBuf,
}

impl Server {
    fn start(plan: &FixedFloorPlan) -> Result<(Server, u16)> {
        let journal = std::env::temp_dir().join(format!(
            "salon-bench-fixed-floor-{}.journal",
            std::process::id()
        ));
        let deadline = plan.duration + plan.drain + Duration::from_secs(60);
        let name = |v: &dyn std::fmt::Debug| format!("{v:?}").to_lowercase();
        let mut child = Command::new(std::env::current_exe().context("finding salon-bench")?)
            .arg(CHILD_ARG)
            .arg(name(&plan.mode))
            .arg(name(&plan.shape))
            .arg(plan.workers.to_string())
            .arg(plan.clients.to_string())
            .arg(name(&plan.journal))
            .arg(&journal)
            .arg(deadline.as_secs_f64().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the fixed-floor server")?;
        let stdout = child.stdout.take().expect("piped stdout");
        let mut server = Server {
            child,
            lines: BufReader::new(stdout),
            journal,
        };
        let port = server.line()?.parse().context("the server's port")?;
        Ok((server, port))
    }

    fn line(&mut self) -> Result<String> {
        let mut line = String::new();
        if self.lines.read_line(&mut line)? == 0 {
            bail!("the fixed-floor server exited early");
        }
        Ok(line.trim().to_string())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.journal);
    }
}

pub async fn run(plan: FixedFloorPlan) -> Result<FixedFloorReport> {
    check_clients(plan.shape, plan.clients)?;
    if plan.rate <= 0.0 {
        bail!("fixed-floor needs a positive --rate");
    }
    let (mut server, port) = Server::start(&plan)?;
    let pid = server.child.id();
    let mut streams = Vec::with_capacity(plan.clients);
    for _ in 0..plan.clients {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream.set_nodelay(true)?;
        streams.push(stream);
    }
    let (line, mut server) = tokio::task::spawn_blocking(move || (server.line(), server)).await?;
    if line? != "ready" {
        bail!("the fixed-floor server did not get ready");
    }

    let epoch = Instant::now();
    let sent = Arc::new(AtomicU64::new(0));
    let received = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut readers = Vec::new();
    let mut writers = Vec::new();
    for stream in streams {
        let (reader, writer) = stream.into_split();
        readers.push(tokio::spawn(read_deliveries(
            reader,
            epoch,
            received.clone(),
            stop_rx.clone(),
        )));
        writers.push(writer);
    }
    // Let the server settle into waiting before the window opens.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let load = load_1min();
    let bench_cpu_start = cpu_seconds("self")?;
    let start = proc_sample(pid)?;
    let stat_start = cpu_seconds(&pid.to_string())?;
    let send_until = tokio::time::Instant::now() + plan.duration;
    let mut senders = Vec::new();
    for (index, writer) in writers.into_iter().enumerate() {
        senders.push(tokio::spawn(send_messages(
            writer,
            index as u64,
            plan.rate,
            send_until,
            epoch,
            sent.clone(),
        )));
    }
    let mut writers = Vec::new();
    for sender in senders {
        writers.push(sender.await??);
    }
    let expected = sent.load(Relaxed)
        * match plan.shape {
            Shape::Room => plan.clients as u64,
            Shape::Chat => 1,
        };
    let drain_until = Instant::now() + plan.drain;
    while received.load(Relaxed) < expected && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let end = proc_sample(pid)?;
    let stat_end = cpu_seconds(&pid.to_string())?;
    let bench_cpu_s = cpu_seconds("self")? - bench_cpu_start;

    stop_tx.send_replace(true);
    let mut latencies = Vec::new();
    for reader in readers {
        latencies.append(&mut reader.await??);
    }
    // Closing the clients ends the server, which prints what it counted.
    drop(writers);
    let counts = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::task::spawn_blocking(move || (server.line(), server)),
    )
    .await
    .map_err(|_| anyhow!("the fixed-floor server did not stop"))??
    .0?;
    let counts: ServerCounts = serde_json::from_str(&counts).context("the server's counts")?;

    let used = end.since(&start);
    let messages = sent.load(Relaxed);
    let per = |v: u64| v as f64 / messages.max(1) as f64;
    let deliveries_received = received.load(Relaxed);
    Ok(FixedFloorReport {
        scenario: "fixed-floor",
        mode: plan.mode,
        shape: plan.shape,
        journal: plan.journal,
        workers: (plan.mode != Mode::Thread).then_some(plan.workers),
        clients: plan.clients,
        rate_per_client: plan.rate,
        duration_s: plan.duration.as_secs_f64(),
        server_pid: pid,
        messages_sent: messages,
        deliveries_expected: expected,
        deliveries_received,
        lost: expected.saturating_sub(deliveries_received),
        latency: Latency::from_micros(latencies),
        server_cpu_s: used.cpu_ns as f64 / 1e9,
        server_cpu_stat_s: stat_end - stat_start,
        server_cpu_us_per_message: per(used.cpu_ns) / 1000.0,
        server_voluntary_switches_per_message: per(used.voluntary_switches),
        server_involuntary_switches_per_message: per(used.involuntary_switches),
        server_counts: counts,
        load_1min: load,
        bench_cpu_s,
    })
}

/// Sends `rate` messages per second until `until`, the first at a random point of the first
/// period (as the muc scenario's clients do, so that they do not send in lockstep).
async fn send_messages(
    mut writer: tokio::net::tcp::OwnedWriteHalf,
    index: u64,
    rate: f64,
    until: tokio::time::Instant,
    epoch: Instant,
    sent: Arc<AtomicU64>,
) -> Result<tokio::net::tcp::OwnedWriteHalf> {
    let period = Duration::from_secs_f64(1.0 / rate);
    let offset = period.mul_f64(rand::random::<f64>());
    let mut ticker = interval_at(tokio::time::Instant::now() + offset, period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut message = vec![b'm'; MESSAGE];
    message[8..16].copy_from_slice(&index.to_le_bytes());
    loop {
        let now = ticker.tick().await;
        if now >= until {
            return Ok(writer);
        }
        let stamp = epoch.elapsed().as_micros() as u64;
        message[..8].copy_from_slice(&stamp.to_le_bytes());
        writer.write_all(&message).await?;
        sent.fetch_add(1, Relaxed);
    }
}

/// Reads deliveries until told to stop; returns their latencies in µs.
async fn read_deliveries(
    mut reader: tokio::net::tcp::OwnedReadHalf,
    epoch: Instant,
    received: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) -> Result<Vec<u32>> {
    let mut latencies = Vec::new();
    let mut buffer = vec![0u8; 16 * 1024];
    let mut pending = Vec::new();
    loop {
        tokio::select! {
            _ = stop.changed() => return Ok(latencies),
            read = reader.read(&mut buffer) => {
                let n = read?;
                if n == 0 {
                    bail!("the fixed-floor server closed a connection");
                }
                let now = epoch.elapsed().as_micros() as u64;
                pending.extend_from_slice(&buffer[..n]);
                while pending.len() >= DELIVERY {
                    let stamp = u64::from_le_bytes(pending[..8].try_into().expect("8 bytes"));
                    latencies.push(now.saturating_sub(stamp).min(u32::MAX as u64) as u32);
                    pending.drain(..DELIVERY);
                    received.fetch_add(1, Relaxed);
                }
            }
        }
    }
}

pub fn table(r: &FixedFloorReport) -> String {
    let ms = |v: Option<f64>| v.map(|v| format!("{v:.2} ms")).unwrap_or("-".into());
    let per = |v: u64| v as f64 / r.server_counts.messages.max(1) as f64;
    format!(
        "scenario                     fixed-floor {}, {} (read, {}, {}; no XML)\n\
         clients                      {} {}\n\
         rate                         {} msg/s per client for {:.0} s\n\
         messages sent                {}\n\
         deliveries                   {} of {} ({} lost)\n\
         latency p50/p99/max          {} / {} / {}\n\
         server CPU                   {:.3} s ({:.2} s in /proc/PID/stat ticks)\n\
         server CPU per message       {:.1} µs\n\
         context switches per message {:.2} voluntary, {:.2} involuntary\n\
         server calls per message     {:.2} reads, {:.2} socket writes, {:.2} journal writes, {:.2} polls\n\
         1-minute load at start       {}\n\
         load generator CPU           {:.2} s\n",
        format!("{:?}", r.shape).to_lowercase(),
        match r.workers {
            Some(n) => format!("{} on {n} workers", format!("{:?}", r.mode).to_lowercase()),
            None => format!("{:?}", r.mode).to_lowercase(),
        },
        match r.journal {
            JournalMode::Write => "one journal write(2)",
            JournalMode::None => "no journal",
        },
        match r.shape {
            Shape::Room => "one write per client",
            Shape::Chat => "one write to the partner",
        },
        r.clients,
        match r.shape {
            Shape::Room => "in one room",
            Shape::Chat => "in pairs (1:1)",
        },
        r.rate_per_client,
        r.duration_s,
        r.messages_sent,
        r.deliveries_received,
        r.deliveries_expected,
        r.lost,
        ms(r.latency.p50_ms),
        ms(r.latency.p99_ms),
        ms(r.latency.max_ms),
        r.server_cpu_s,
        r.server_cpu_stat_s,
        r.server_cpu_us_per_message,
        r.server_voluntary_switches_per_message,
        r.server_involuntary_switches_per_message,
        per(r.server_counts.socket_reads),
        per(r.server_counts.socket_writes),
        per(r.server_counts.journal_writes),
        per(r.server_counts.polls),
        r.load_1min.map(|l| format!("{l:.2}")).unwrap_or("-".into()),
        r.bench_cpu_s,
    )
}
