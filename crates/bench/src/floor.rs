//! The `floor` scenario: what one small TCP write per delivery costs on this machine, with no
//! XMPP server at all. A thread accepts `clients` loopback connections and, for every message
//! the room would carry, writes one groupchat-sized stanza to each of them (the fan-out a MUC
//! server does), while this process's async readers consume them as `salon-bench muc` clients
//! do. The writer thread's CPU time, read from /proc like a server's, bounds what any server
//! that writes once per delivery can reach: deliveries per CPU-second above this are
//! impossible here without putting several deliveries into one write.

use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

/// About the size of one groupchat delivery from Salon in the muc scenario (stanza-id,
/// occupant-id, a timestamped body and the recipient's full JID).
const DELIVERY: usize = 420;

#[derive(Debug, Serialize)]
pub struct FloorReport {
    pub scenario: &'static str,
    pub clients: usize,
    pub rate_per_client: f64,
    pub duration_s: f64,
    pub bytes_per_write: usize,
    pub writes: u64,
    pub bytes_received: u64,
    pub writer_cpu_s: f64,
    pub writes_per_cpu_s: f64,
    pub cpu_us_per_write: f64,
}

/// Write to `clients` connections as a room of `clients` occupants, each sending `rate`
/// messages per second, would make a server write, for `duration`.
pub async fn run(clients: usize, rate: f64, duration: Duration) -> Result<FloorReport> {
    if clients == 0 || rate <= 0.0 {
        bail!("floor needs --clients ≥ 1 and a positive --rate");
    }
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a loopback port")?;
    let addr = listener.local_addr()?;
    // Accept while connecting: the listen backlog is shorter than a few hundred clients.
    let acceptor = std::thread::spawn(move || -> Result<Vec<TcpStream>> {
        let mut sockets = Vec::with_capacity(clients);
        for _ in 0..clients {
            let (socket, _) = listener.accept()?;
            socket.set_nodelay(true)?;
            sockets.push(socket);
        }
        Ok(sockets)
    });
    let received = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::with_capacity(clients);
    for _ in 0..clients {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let received = received.clone();
        readers.push(tokio::spawn(async move {
            let mut buffer = vec![0u8; 16 * 1024];
            while let Ok(n) = stream.read(&mut buffer).await {
                if n == 0 {
                    break;
                }
                received.fetch_add(n as u64, Relaxed);
            }
        }));
    }
    let sockets = tokio::task::spawn_blocking(move || acceptor.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the accepting thread panicked"))??;
    // Messages per second into the room; each one is written to every occupant.
    let room_rate = rate * clients as f64;
    let writer = std::thread::spawn(move || write_fan_out(sockets, room_rate, duration));
    let (writes, writer_cpu_s) = tokio::task::spawn_blocking(move || writer.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the writer thread panicked"))??;
    let expected = writes * DELIVERY as u64;
    let deadline = Instant::now() + Duration::from_secs(5);
    while received.load(Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for reader in readers {
        reader.abort();
    }
    let bytes_received = received.load(Relaxed);
    if bytes_received < expected {
        bail!("only {bytes_received} of {expected} bytes arrived");
    }
    Ok(FloorReport {
        scenario: "floor",
        clients,
        rate_per_client: rate,
        duration_s: duration.as_secs_f64(),
        bytes_per_write: DELIVERY,
        writes,
        bytes_received,
        writer_cpu_s,
        writes_per_cpu_s: writes as f64 / writer_cpu_s.max(1e-9),
        cpu_us_per_write: 1e6 * writer_cpu_s / writes.max(1) as f64,
    })
}

/// Runs on its own thread, so that /proc/thread-self holds only its own CPU time. Returns the
/// number of writes and the thread's CPU seconds (user + system, as for a server process).
fn write_fan_out(
    mut sockets: Vec<TcpStream>,
    room_rate: f64,
    duration: Duration,
) -> Result<(u64, f64)> {
    let delivery = vec![b'x'; DELIVERY];
    let period = Duration::from_secs_f64(1.0 / room_rate);
    let start = Instant::now();
    let cpu_start = crate::stats::cpu_seconds("thread-self")?;
    let mut writes = 0u64;
    let mut next = start;
    while next < start + duration {
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
        for socket in &mut sockets {
            socket.write_all(&delivery)?;
            writes += 1;
        }
        next += period;
    }
    let cpu = crate::stats::cpu_seconds("thread-self")? - cpu_start;
    Ok((writes, cpu))
}

pub fn table(r: &FloorReport) -> String {
    format!(
        "scenario                     floor (one {} byte write per delivery, no server)\n\
         clients                      {}\n\
         rate                         {} msg/s per client for {:.0} s\n\
         writes                       {} ({} bytes received)\n\
         writer CPU                   {:.2} s\n\
         writes per CPU-s             {:.0}\n\
         CPU per write                {:.2} µs\n",
        r.bytes_per_write,
        r.clients,
        r.rate_per_client,
        r.duration_s,
        r.writes,
        r.bytes_received,
        r.writer_cpu_s,
        r.writes_per_cpu_s,
        r.cpu_us_per_write
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_delivery_is_written_and_read_and_its_cost_measured() {
        // 4 clients at 10 msg/s each: a room message every 25 ms, written to all 4.
        let report = run(4, 10.0, Duration::from_millis(300)).await.unwrap();
        assert_eq!(report.writes % 4, 0, "whole fan-outs only: {report:?}");
        assert!(
            (40..=56).contains(&report.writes),
            "about 12 fan-outs of 4: {report:?}"
        );
        assert_eq!(report.bytes_received, report.writes * DELIVERY as u64);
        assert!(report.writer_cpu_s >= 0.0 && report.writes_per_cpu_s > 0.0);
    }

    #[tokio::test]
    async fn refuses_an_empty_room() {
        assert!(run(0, 1.0, Duration::from_millis(10)).await.is_err());
        assert!(run(2, 0.0, Duration::from_millis(10)).await.is_err());
    }
}
