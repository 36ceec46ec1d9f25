//! The `logins` and `ws-logins` scenarios: visitors arriving at a steady rate, as at the
//! built-in web page. Client i starts at i / rate seconds, connects (TCP, or WebSocket per
//! RFC 7395), logs in, binds, joins room i mod R (XEP-0045 §7.2) and then stays idle. Reports
//! the login rate reached, the time from the first byte of the connection to the room's
//! self-presence (status 110) per client, the server's CPU for the arrivals and its memory
//! per visitor held once everyone has arrived.

use crate::conn::{login, Conn, Target};
use crate::muc::join;
use crate::stats::{cpu_seconds, rss_kib, Latency};
use anyhow::{bail, Result};
use serde::Serialize;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::time::timeout;

pub struct LoginPlan {
    pub target: Target,
    pub clients: usize,
    pub rooms: usize,
    pub muc_domain: String,
    /// Logins started per second (all clients together).
    pub rate: f64,
    /// Seconds to stay connected after the last arrival (memory is read at its end).
    pub hold: Duration,
    pub login_timeout: Duration,
    pub server_pid: Option<u32>,
}

#[derive(Debug, Default, Serialize)]
pub struct LoginReport {
    pub scenario: &'static str,
    pub transport: &'static str,
    pub clients: usize,
    pub rooms: usize,
    pub rate_offered: f64,
    pub joined: usize,
    pub failed: usize,
    pub first_error: Option<String>,
    /// Joined clients divided by the time from the first start to the last join.
    pub logins_per_s: f64,
    /// From connect to the room's self-presence, per joined client.
    pub login_to_joined: Latency,
    pub arrival_seconds: f64,
    pub server_cpu_s: Option<f64>,
    pub server_cpu_us_per_login: Option<f64>,
    pub rss_before_kib: Option<u64>,
    pub rss_held_kib: Option<u64>,
    pub rss_per_visitor_kib: Option<f64>,
    pub bench_cpu_s: f64,
}

struct Shared {
    plan: LoginPlan,
    room_prefix: String,
    joined: AtomicUsize,
    failed: AtomicUsize,
    first_error: Mutex<Option<String>>,
    latencies: Mutex<Vec<u32>>,
}

impl Shared {
    fn room_jid(&self, room: usize) -> String {
        format!("{}{room}@{}", self.room_prefix, self.plan.muc_domain)
    }

    fn fail(&self, error: anyhow::Error) {
        self.failed.fetch_add(1, Relaxed);
        let mut slot = self.first_error.lock().unwrap();
        if slot.is_none() {
            *slot = Some(format!("{error:#}"));
        }
    }
}

/// Read and drop whatever the server sends (presence of later arrivals) until told to stop,
/// as an idle visitor's client does.
async fn idle(mut conn: Conn, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            event = conn.recv() => if event.is_err() { break },
        }
    }
    conn.close().await;
}

async fn visitor(shared: Arc<Shared>, index: usize, stop: watch::Receiver<bool>) {
    let plan = &shared.plan;
    let started = Instant::now();
    let arrival = async {
        let mut session = login(&plan.target, index).await?;
        // Presence to the server first, as a client does before joining.
        session
            .conn
            .send("<presence xmlns='jabber:client'/>")
            .await?;
        let room = shared.room_jid(index % plan.rooms);
        // What else arrives while joining (earlier visitors' presence) is dropped.
        join(
            &mut session.conn,
            &room,
            &format!("v{index}"),
            &mut Vec::new(),
        )
        .await?;
        Ok::<_, anyhow::Error>(session.conn)
    };
    match timeout(plan.login_timeout, arrival).await {
        Ok(Ok(conn)) => {
            let micros = started.elapsed().as_micros().min(u32::MAX as u128) as u32;
            shared.latencies.lock().unwrap().push(micros);
            shared.joined.fetch_add(1, Relaxed);
            idle(conn, stop).await;
        }
        Ok(Err(e)) => shared.fail(e),
        Err(_) => shared.fail(anyhow::anyhow!(
            "login and join took longer than {:?}",
            plan.login_timeout
        )),
    }
}

pub async fn run(plan: LoginPlan, ws: bool) -> Result<LoginReport> {
    if plan.rate <= 0.0 || plan.rooms == 0 {
        bail!("logins needs a positive --rate (logins per second) and --rooms ≥ 1");
    }
    let pid = plan.server_pid;
    let cpu = |pid: Option<u32>| pid.map(|p| cpu_seconds(&p.to_string())).transpose();
    let mut report = LoginReport {
        scenario: if ws { "ws-logins" } else { "logins" },
        transport: if ws { "websocket" } else { "tcp" },
        clients: plan.clients,
        rooms: plan.rooms,
        rate_offered: plan.rate,
        ..LoginReport::default()
    };
    let shared = Arc::new(Shared {
        room_prefix: format!("bench{}l", std::process::id()),
        joined: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        first_error: Mutex::new(None),
        latencies: Mutex::new(Vec::with_capacity(plan.clients)),
        plan,
    });
    // The rooms exist before the arrivals start: one owner each, created and unlocked in turn
    // (they stay, and are not counted).
    let mut owners = Vec::new();
    for room in 0..shared.plan.rooms {
        let mut session = login(&shared.plan.target, shared.plan.clients + room).await?;
        join(
            &mut session.conn,
            &shared.room_jid(room),
            "owner",
            &mut Vec::new(),
        )
        .await?;
        owners.push(session.conn);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    report.rss_before_kib = pid.map(rss_kib).transpose()?;
    let bench_cpu_start = cpu_seconds("self").unwrap_or(0.0);
    let cpu_start = cpu(pid)?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let start = tokio::time::Instant::now();
    let period = Duration::from_secs_f64(1.0 / shared.plan.rate);
    let mut tasks = Vec::with_capacity(shared.plan.clients);
    for index in 0..shared.plan.clients {
        tokio::time::sleep_until(start + period * index as u32).await;
        tasks.push(tokio::spawn(visitor(
            shared.clone(),
            index,
            stop_rx.clone(),
        )));
    }
    let clients = shared.plan.clients;
    let deadline = Instant::now() + shared.plan.login_timeout + Duration::from_secs(1);
    while shared.joined.load(Relaxed) + shared.failed.load(Relaxed) < clients
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    report.arrival_seconds = start.elapsed().as_secs_f64();
    let cpu_end = cpu(pid)?;
    report.joined = shared.joined.load(Relaxed);
    report.failed = clients - report.joined;
    report.first_error = shared.first_error.lock().unwrap().clone();
    report.logins_per_s = report.joined as f64 / report.arrival_seconds.max(1e-9);
    if let (Some(a), Some(b)) = (cpu_start, cpu_end) {
        report.server_cpu_s = Some(b - a);
        if report.joined > 0 {
            report.server_cpu_us_per_login = Some(1e6 * (b - a) / report.joined as f64);
        }
    }
    tokio::time::sleep(shared.plan.hold).await;
    report.rss_held_kib = pid.map(rss_kib).transpose()?;
    if let (Some(before), Some(after)) = (report.rss_before_kib, report.rss_held_kib) {
        if report.joined > 0 {
            report.rss_per_visitor_kib =
                Some((after as f64 - before as f64) / report.joined as f64);
        }
    }
    report.bench_cpu_s = cpu_seconds("self").unwrap_or(0.0) - bench_cpu_start;
    let latencies = std::mem::take(&mut *shared.latencies.lock().unwrap());
    report.login_to_joined = Latency::from_micros(latencies);
    stop_tx.send_replace(true);
    for task in tasks {
        let _ = timeout(Duration::from_secs(2), task).await;
    }
    for mut owner in owners {
        owner.close().await;
    }
    if report.joined == 0 {
        bail!(
            "no visitor could log in and join{}",
            report
                .first_error
                .as_ref()
                .map(|e| format!("; first error: {e}"))
                .unwrap_or_default()
        );
    }
    Ok(report)
}

pub fn table(r: &LoginReport) -> String {
    let opt = |v: Option<f64>, unit: &str| {
        v.map(|v| format!("{v:.1}{unit}"))
            .unwrap_or_else(|| "-".into())
    };
    let ms = |v: Option<f64>| {
        v.map(|v| format!("{v:.1} ms"))
            .unwrap_or_else(|| "-".into())
    };
    let l = &r.login_to_joined;
    let rows = [
        ("scenario", format!("{} over {}", r.scenario, r.transport)),
        (
            "visitors",
            format!(
                "{} offered at {:.0}/s into {} rooms: {} joined, {} failed",
                r.clients, r.rate_offered, r.rooms, r.joined, r.failed
            ),
        ),
        (
            "logins/s",
            format!(
                "{:.0} (all joined within {:.1} s)",
                r.logins_per_s, r.arrival_seconds
            ),
        ),
        (
            "login-to-joined p50/p95/p99/max",
            format!(
                "{} / {} / {} / {}",
                ms(l.p50_ms),
                ms(l.p95_ms),
                ms(l.p99_ms),
                ms(l.max_ms)
            ),
        ),
        (
            "server CPU for arrivals",
            format!(
                "{} ({} per login)",
                opt(r.server_cpu_s, " s"),
                opt(r.server_cpu_us_per_login, " µs")
            ),
        ),
        (
            "server RSS",
            format!(
                "{} KiB before, {} KiB held = {} per visitor",
                r.rss_before_kib
                    .map(|v| v.to_string())
                    .unwrap_or("-".into()),
                r.rss_held_kib.map(|v| v.to_string()).unwrap_or("-".into()),
                opt(r.rss_per_visitor_kib, " KiB")
            ),
        ),
        ("load generator CPU", format!("{:.2} s", r.bench_cpu_s)),
        (
            "first error",
            r.first_error.clone().unwrap_or_else(|| "-".into()),
        ),
    ];
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("{k:<width$}  {v}\n"))
        .collect()
}
