//! The client tasks and the conductor that moves them through the phases of a run:
//! log in → (join rooms) → send for `duration` → drain → stop.

use crate::conn::{
    describe_error, login, stanza_error, Conn, Incoming, Session, Target, NS_CLIENT,
};
use crate::stats::{cpu_seconds, load_1min, proc_sample, rss_kib, Latency};
use anyhow::{anyhow, bail, Result};
use salon_xml::minidom::Element;
use std::sync::atomic::{
    AtomicU64, AtomicUsize,
    Ordering::{Relaxed, SeqCst},
};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify, Semaphore};
use tokio::time::{interval_at, timeout, MissedTickBehavior};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Log in and stay idle: login rate and server memory per connection.
    Connect,
    /// 1:1 messages between pairs of clients.
    Chat,
    /// Group chat: clients in rooms, each sending at the rate.
    Muc,
    /// The muc scenario over WebSocket (RFC 7395).
    Ws,
    /// The muc scenario over BOSH (XEP-0206), `hold=1`, at most two requests in flight.
    Bosh,
    /// No server: the CPU cost of one loopback write per delivery, at the muc scenario's load.
    Floor,
    /// A minimal server in a child process doing only a room message's system work (read,
    /// one journal write, one write per occupant): the fixed cost's floor.
    FixedFloor,
    /// Visitors arriving at `--rate` logins per second, each logging in and joining a room.
    Logins,
    /// The logins scenario over WebSocket (RFC 7395).
    WsLogins,
}

/// Phases, in order; clients watch the current one.
const LOGIN: u8 = 0;
const JOIN_FIRST: u8 = 1;
const JOIN_REST: u8 = 2;
const RUN: u8 = 3;
const DRAIN: u8 = 4;
const STOP: u8 = 5;

pub struct Plan {
    pub scenario: Scenario,
    pub target: Target,
    pub clients: usize,
    pub rooms: usize,
    pub muc_domain: String,
    pub rate: f64,
    pub duration: Duration,
    pub drain: Duration,
    pub setup_timeout: Duration,
    pub login_timeout: Duration,
    pub concurrency: usize,
    pub presence: bool,
    pub server_pid: Option<u32>,
}

impl Plan {
    fn is_muc(&self) -> bool {
        matches!(self.scenario, Scenario::Muc | Scenario::Ws | Scenario::Bosh)
    }
}

struct Shared {
    plan: Plan,
    epoch: Instant,
    room_prefix: String,
    login_gate: Semaphore,
    jids: Vec<OnceLock<String>>,
    occupants: Vec<AtomicUsize>,
    logged_in: AtomicUsize,
    login_failed: AtomicUsize,
    setup_done: AtomicUsize,
    setup_failed: AtomicUsize,
    sent: AtomicU64,
    expected: AtomicU64,
    /// Messages being written whose deliveries are not yet in `expected`. The drain waits
    /// for these too: a message sent as the window closed used to count as lost when its
    /// deliveries came in after a drain that had already ended.
    in_flight: AtomicU64,
    received: AtomicU64,
    received_in_window: AtomicU64,
    stanza_errors: AtomicU64,
    disconnects: AtomicUsize,
    first_login_error: Mutex<Option<String>>,
    first_setup_error: Mutex<Option<String>>,
    first_error: Mutex<Option<String>>,
    progress: Notify,
}

impl Shared {
    fn note(slot: &Mutex<Option<String>>, message: String) {
        let mut slot = slot.lock().unwrap();
        if slot.is_none() {
            *slot = Some(message);
        }
    }

    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    fn room_jid(&self, room: usize) -> String {
        format!("{}{room}@{}", self.room_prefix, self.plan.muc_domain)
    }
}

/// Everything a run measured.
#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    pub scenario: String,
    pub transport: String,
    pub auth: String,
    pub clients: usize,
    pub rooms: Option<usize>,
    pub rate_per_client: Option<f64>,
    pub duration_s: f64,
    pub logins_ok: usize,
    pub logins_failed: usize,
    pub login_seconds: f64,
    pub logins_per_s: f64,
    pub first_login_error: Option<String>,
    pub server_pid: Option<u32>,
    pub rss_before_kib: Option<u64>,
    pub rss_after_login_kib: Option<u64>,
    pub rss_after_setup_kib: Option<u64>,
    pub rss_end_kib: Option<u64>,
    pub rss_per_connection_kib: Option<f64>,
    pub server_cpu_login_s: Option<f64>,
    pub messages_sent: u64,
    pub deliveries_expected: u64,
    pub deliveries_received: u64,
    pub deliveries_in_window: u64,
    pub deliveries_per_s: f64,
    pub lost: u64,
    pub lost_percent: f64,
    pub drain_s: f64,
    pub latency: Latency,
    pub server_cpu_s: Option<f64>,
    pub server_cpu_percent: Option<f64>,
    pub deliveries_per_server_cpu_s: Option<f64>,
    /// Per message sent, over the send window and drain: the server's CPU (all threads'
    /// schedstat run time) and its threads' context switches (see `stats::proc_sample`).
    pub server_cpu_us_per_message: Option<f64>,
    pub server_voluntary_switches_per_message: Option<f64>,
    pub server_involuntary_switches_per_message: Option<f64>,
    /// The 1-minute load average when sending started (the machine may be shared).
    pub load_1min: Option<f64>,
    pub bench_cpu_s: f64,
    pub stanza_errors: u64,
    pub disconnects: usize,
    pub first_error: Option<String>,
}

async fn wait_for(shared: &Shared, done: impl Fn() -> bool) {
    loop {
        let notified = shared.progress.notified();
        if done() {
            return;
        }
        // The notification can be missed between check and wait; poll as a fallback.
        let _ = timeout(Duration::from_millis(100), notified).await;
    }
}

/// Run one scenario to the end. Errors are setup failures (one clear line for the user).
pub async fn run(plan: Plan) -> Result<Report> {
    let clients = plan.clients;
    let rooms = plan.rooms.max(1);
    let pid = plan.server_pid;
    let rss = |pid: Option<u32>| pid.map(rss_kib).transpose();
    let cpu = |pid: Option<u32>| pid.map(|p| cpu_seconds(&p.to_string())).transpose();
    let mut report = Report {
        scenario: format!("{:?}", plan.scenario).to_lowercase(),
        transport: if plan.target.ws_url.is_some() {
            "websocket".into()
        } else if plan.target.bosh_url.is_some() {
            "bosh".into()
        } else {
            "tcp".into()
        },
        auth: format!("{:?}", plan.target.auth).to_lowercase(),
        clients,
        server_pid: pid,
        ..Report::default()
    };
    if plan.is_muc() {
        report.rooms = Some(rooms);
    }
    if plan.scenario != Scenario::Connect {
        report.rate_per_client = Some(plan.rate);
    }
    report.rss_before_kib = rss(pid)?;
    let bench_cpu_start = cpu_seconds("self").unwrap_or(0.0);
    let cpu_login_start = cpu(pid)?;

    let shared = Arc::new(Shared {
        epoch: Instant::now(),
        room_prefix: format!("bench{}r", std::process::id()),
        login_gate: Semaphore::new(plan.concurrency.max(1)),
        jids: (0..clients).map(|_| OnceLock::new()).collect(),
        occupants: (0..rooms).map(|_| AtomicUsize::new(0)).collect(),
        logged_in: AtomicUsize::new(0),
        login_failed: AtomicUsize::new(0),
        setup_done: AtomicUsize::new(0),
        setup_failed: AtomicUsize::new(0),
        sent: AtomicU64::new(0),
        expected: AtomicU64::new(0),
        in_flight: AtomicU64::new(0),
        received: AtomicU64::new(0),
        received_in_window: AtomicU64::new(0),
        stanza_errors: AtomicU64::new(0),
        disconnects: AtomicUsize::new(0),
        first_login_error: Mutex::new(None),
        first_setup_error: Mutex::new(None),
        first_error: Mutex::new(None),
        progress: Notify::new(),
        plan,
    });
    let (phase_tx, phase_rx) = watch::channel(LOGIN);

    // Log in.
    let login_start = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for index in 0..clients {
        tasks.push(tokio::spawn(client(
            shared.clone(),
            index,
            phase_rx.clone(),
        )));
    }
    let setup_timeout = shared.plan.setup_timeout;
    let all_tried =
        || shared.logged_in.load(Relaxed) + shared.login_failed.load(Relaxed) >= clients;
    if timeout(setup_timeout, wait_for(&shared, all_tried))
        .await
        .is_err()
    {
        bail!(
            "setup timed out after {}s: {} of {clients} clients logged in, {} failed{}",
            setup_timeout.as_secs(),
            shared.logged_in.load(Relaxed),
            shared.login_failed.load(Relaxed),
            first(&shared.first_login_error)
        );
    }
    report.login_seconds = login_start.elapsed().as_secs_f64();
    report.logins_ok = shared.logged_in.load(Relaxed);
    report.logins_failed = shared.login_failed.load(Relaxed);
    report.logins_per_s = report.logins_ok as f64 / report.login_seconds.max(1e-9);
    report.first_login_error = shared.first_login_error.lock().unwrap().clone();
    if let (Some(before), Some(after)) = (cpu_login_start, cpu(pid)?) {
        report.server_cpu_login_s = Some(after - before);
    }
    if report.logins_ok == 0 {
        bail!("no client could log in{}", first(&shared.first_login_error));
    }
    if report.logins_failed > 0 && shared.plan.scenario != Scenario::Connect {
        bail!(
            "setup failed: {} of {clients} clients could not log in{}",
            report.logins_failed,
            first(&shared.first_login_error)
        );
    }
    // Let the server settle (freed handshake buffers, queued writes) before measuring memory.
    tokio::time::sleep(Duration::from_millis(500)).await;
    report.rss_after_login_kib = rss(pid)?;

    // Set up: presence, room joins (the first client of each room creates and unlocks it).
    let logged_in = report.logins_ok;
    let setup = async {
        if shared.plan.is_muc() {
            phase_tx.send_replace(JOIN_FIRST);
            let firsts = rooms.min(clients);
            wait_for(&shared, || {
                shared.setup_done.load(Relaxed) + shared.setup_failed.load(Relaxed) >= firsts
            })
            .await;
        }
        phase_tx.send_replace(JOIN_REST);
        wait_for(&shared, || {
            shared.setup_done.load(Relaxed) + shared.setup_failed.load(Relaxed) >= logged_in
        })
        .await;
    };
    if timeout(setup_timeout, setup).await.is_err() {
        bail!(
            "setup timed out after {}s: {} of {logged_in} clients ready{}",
            setup_timeout.as_secs(),
            shared.setup_done.load(Relaxed),
            first(&shared.first_setup_error)
        );
    }
    let failed = shared.setup_failed.load(Relaxed);
    if failed > 0 {
        bail!(
            "setup failed for {failed} of {logged_in} clients{}",
            first(&shared.first_setup_error)
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    report.rss_after_setup_kib = rss(pid)?;
    if let (Some(before), Some(after)) = (report.rss_before_kib, report.rss_after_setup_kib) {
        report.rss_per_connection_kib = Some((after as f64 - before as f64) / logged_in as f64);
    }

    // Run.
    let duration = shared.plan.duration;
    report.duration_s = duration.as_secs_f64();
    let cpu_start = cpu(pid)?;
    let sample_start = pid.map(proc_sample).transpose()?;
    report.load_1min = load_1min();
    let run_start = Instant::now();
    phase_tx.send_replace(RUN);
    tokio::time::sleep(duration).await;
    phase_tx.send_replace(DRAIN);
    let drain_start = Instant::now();
    if shared.plan.scenario != Scenario::Connect {
        let _ = timeout(
            shared.plan.drain,
            wait_for(&shared, || {
                shared.in_flight.load(SeqCst) == 0
                    && shared.received.load(Relaxed) >= shared.expected.load(SeqCst)
            }),
        )
        .await;
    }
    report.drain_s = drain_start.elapsed().as_secs_f64();
    let cpu_end = cpu(pid)?;
    let sample_end = pid.map(proc_sample).transpose()?;
    let run_elapsed = run_start.elapsed().as_secs_f64();
    report.rss_end_kib = rss(pid)?;
    phase_tx.send_replace(STOP);

    let mut latencies = Vec::new();
    for task in tasks {
        if let Ok(Ok(mut l)) = timeout(Duration::from_secs(10), task).await {
            latencies.append(&mut l);
        }
    }
    report.messages_sent = shared.sent.load(Relaxed);
    report.deliveries_expected = shared.expected.load(Relaxed);
    report.deliveries_received = shared.received.load(Relaxed);
    report.deliveries_in_window = shared.received_in_window.load(Relaxed);
    report.deliveries_per_s = report.deliveries_in_window as f64 / duration.as_secs_f64();
    report.lost = report
        .deliveries_expected
        .saturating_sub(report.deliveries_received);
    if report.deliveries_expected > 0 {
        report.lost_percent = 100.0 * report.lost as f64 / report.deliveries_expected as f64;
    }
    report.latency = Latency::from_micros(latencies);
    if let (Some(a), Some(b)) = (cpu_start, cpu_end) {
        let used = b - a;
        report.server_cpu_s = Some(used);
        report.server_cpu_percent = Some(100.0 * used / run_elapsed);
        if used > 0.0 && report.deliveries_received > 0 {
            report.deliveries_per_server_cpu_s = Some(report.deliveries_received as f64 / used);
        }
    }
    if let (Some(a), Some(b)) = (sample_start, sample_end) {
        let used = b.since(&a);
        let per =
            |v: u64| (report.messages_sent > 0).then(|| v as f64 / report.messages_sent as f64);
        report.server_cpu_us_per_message = per(used.cpu_ns).map(|ns| ns / 1000.0);
        report.server_voluntary_switches_per_message = per(used.voluntary_switches);
        report.server_involuntary_switches_per_message = per(used.involuntary_switches);
    }
    report.bench_cpu_s = cpu_seconds("self").unwrap_or(0.0) - bench_cpu_start;
    report.stanza_errors = shared.stanza_errors.load(Relaxed);
    report.disconnects = shared.disconnects.load(Relaxed);
    report.first_error = shared.first_error.lock().unwrap().clone();
    Ok(report)
}

fn first(slot: &Mutex<Option<String>>) -> String {
    match &*slot.lock().unwrap() {
        Some(e) => format!("; first error: {e}"),
        None => String::new(),
    }
}

/// One client from login to stop; returns its latency samples (µs).
async fn client(shared: Arc<Shared>, index: usize, mut phase: watch::Receiver<u8>) -> Vec<u32> {
    let permit = shared.login_gate.acquire().await;
    let session = match timeout(shared.plan.login_timeout, login(&shared.plan.target, index)).await
    {
        Ok(result) => result,
        Err(_) => Err(anyhow!(
            "login timed out after {}s",
            shared.plan.login_timeout.as_secs()
        )),
    };
    drop(permit);
    let Session { mut conn, jid } = match session {
        Ok(s) => s,
        Err(e) => {
            Shared::note(&shared.first_login_error, format!("client {index}: {e:#}"));
            shared.login_failed.fetch_add(1, Relaxed);
            shared.progress.notify_waiters();
            return Vec::new();
        }
    };
    let _ = shared.jids[index].set(jid);
    shared.logged_in.fetch_add(1, Relaxed);
    shared.progress.notify_waiters();
    let mut state = ClientState {
        index,
        latencies: Vec::new(),
        setup_reported: false,
    };
    if let Err(e) = drive(&shared, &mut conn, &mut phase, &mut state).await {
        let phase_now = *phase.borrow();
        if !state.setup_reported {
            state.setup_reported = true;
            Shared::note(&shared.first_setup_error, format!("client {index}: {e:#}"));
            shared.setup_failed.fetch_add(1, Relaxed);
        } else if phase_now < STOP {
            Shared::note(&shared.first_error, format!("client {index}: {e:#}"));
            shared.disconnects.fetch_add(1, Relaxed);
        }
        shared.progress.notify_waiters();
        return state.latencies;
    }
    let _ = timeout(Duration::from_secs(2), conn.close()).await;
    state.latencies
}

struct ClientState {
    index: usize,
    latencies: Vec<u32>,
    setup_reported: bool,
}

/// What an incoming stanza means to the measurement.
fn handle(shared: &Shared, state: &mut ClientState, el: &Element, phase: u8) {
    match el.name() {
        "message" => {
            if el.attr("type") == Some("error") {
                shared.stanza_errors.fetch_add(1, Relaxed);
                let why = stanza_error(el);
                Shared::note(
                    &shared.first_error,
                    format!(
                        "client {}: message error from {:?}: {why}",
                        state.index,
                        el.attr("from")
                    ),
                );
                return;
            }
            let Some(body) = el.get_child("body", NS_CLIENT) else {
                return;
            };
            let text = body.text();
            let Some(sent_us) = text
                .strip_prefix("bench ")
                .and_then(|t| t.split(' ').next())
                .and_then(|t| t.parse::<u64>().ok())
            else {
                return;
            };
            let latency = shared.now_us().saturating_sub(sent_us);
            state.latencies.push(latency.min(u32::MAX as u64) as u32);
            shared.received.fetch_add(1, Relaxed);
            if phase == RUN {
                shared.received_in_window.fetch_add(1, Relaxed);
            }
        }
        "iq" | "presence" if el.attr("type") == Some("error") => {
            shared.stanza_errors.fetch_add(1, Relaxed);
            let why = stanza_error(el);
            Shared::note(
                &shared.first_error,
                format!(
                    "client {}: {} error from {:?}: {why}",
                    state.index,
                    el.name(),
                    el.attr("from")
                ),
            );
        }
        _ => {}
    }
}

/// Read and account for one event; an iq get or set gets an empty result, which is what a
/// server's ping (XEP-0199) needs.
async fn on_event(
    shared: &Shared,
    conn: &mut Conn,
    state: &mut ClientState,
    event: Incoming,
    phase: u8,
) -> Result<()> {
    match event {
        Incoming::Open => Ok(()),
        Incoming::Close => bail!("server closed the stream"),
        Incoming::Stanza(el) => {
            if el.name() == "error" && el.ns() == crate::conn::NS_STREAMS {
                bail!("stream error: {}", describe_error(&el));
            }
            if el.name() == "iq" && matches!(el.attr("type"), Some("get") | Some("set")) {
                let id = el.attr("id").unwrap_or("");
                let to = el.attr("from").unwrap_or("");
                conn.send(&format!(
                    "<iq xmlns='jabber:client' type='result' id='{}' to='{}'/>",
                    salon_xml::escape(id),
                    salon_xml::escape(to)
                ))
                .await?;
            }
            handle(shared, state, &el, phase);
            Ok(())
        }
    }
}

/// Wait until the conductor reaches `target`, reading (and accounting for) whatever arrives.
async fn wait_phase(
    shared: &Shared,
    conn: &mut Conn,
    phase: &mut watch::Receiver<u8>,
    state: &mut ClientState,
    target: u8,
) -> Result<u8> {
    loop {
        let now = *phase.borrow_and_update();
        if now >= target {
            return Ok(now);
        }
        tokio::select! {
            changed = phase.changed() => {
                if changed.is_err() {
                    return Ok(STOP);
                }
            }
            event = conn.recv() => on_event(shared, conn, state, event?, now).await?,
        }
    }
}

/// Join room `room` as nick `u{index}`, then account for what arrived meanwhile.
async fn join(
    shared: &Shared,
    conn: &mut Conn,
    state: &mut ClientState,
    room: usize,
) -> Result<()> {
    let mut others = Vec::new();
    let nick = format!("u{}", state.index);
    crate::muc::join(conn, &shared.room_jid(room), &nick, &mut others).await?;
    for event in others {
        on_event(shared, conn, state, event, JOIN_REST).await?;
    }
    shared.occupants[room].fetch_add(1, Relaxed);
    Ok(())
}

async fn drive(
    shared: &Shared,
    conn: &mut Conn,
    phase: &mut watch::Receiver<u8>,
    state: &mut ClientState,
) -> Result<()> {
    let plan = &shared.plan;
    let index = state.index;
    let rooms = plan.rooms.max(1);
    let room = index % rooms;
    if plan.is_muc() {
        wait_phase(shared, conn, phase, state, JOIN_FIRST).await?;
        if index < rooms {
            join(shared, conn, state, room).await?;
            ready(shared, state);
        }
        wait_phase(shared, conn, phase, state, JOIN_REST).await?;
        if index >= rooms {
            join(shared, conn, state, room).await?;
            ready(shared, state);
        }
    } else {
        wait_phase(shared, conn, phase, state, JOIN_REST).await?;
        if plan.presence || plan.scenario == Scenario::Chat {
            conn.send("<presence xmlns='jabber:client'/>").await?;
        }
        ready(shared, state);
    }
    if wait_phase(shared, conn, phase, state, RUN).await? >= DRAIN {
        return Ok(());
    }

    // Who to send to.
    let to = match plan.scenario {
        Scenario::Connect
        | Scenario::Floor
        | Scenario::FixedFloor
        | Scenario::Logins
        | Scenario::WsLogins => None,
        Scenario::Chat => shared
            .jids
            .get(index ^ 1)
            .and_then(|j| j.get())
            .map(|jid| (jid.clone(), "chat", None)),
        Scenario::Muc | Scenario::Ws | Scenario::Bosh => {
            Some((shared.room_jid(room), "groupchat", Some(room)))
        }
    };
    let mut sending = to.is_some() && plan.rate > 0.0;
    let period = Duration::from_secs_f64(1.0 / plan.rate.max(1e-6));
    // Spread the clients' first messages over one period so they do not send in lockstep.
    let offset = period.mul_f64(rand::random::<f64>());
    let mut ticker = interval_at(tokio::time::Instant::now() + offset, period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut seq: u64 = 0;
    let mut now = RUN;
    loop {
        tokio::select! {
            changed = phase.changed() => {
                now = if changed.is_err() { STOP } else { *phase.borrow_and_update() };
                if now >= DRAIN {
                    sending = false;
                }
                if now >= STOP {
                    return Ok(());
                }
            }
            _ = ticker.tick(), if sending => {
                // Announce the send before looking at the phase: either the drain sees it in
                // flight, or this sees the drain and does not send.
                shared.in_flight.fetch_add(1, SeqCst);
                if *phase.borrow() >= DRAIN {
                    shared.in_flight.fetch_sub(1, SeqCst);
                    sending = false;
                    continue;
                }
                let (to, kind, room) = to.as_ref().expect("sending implies a target");
                seq += 1;
                let stamp = shared.now_us();
                let written = conn.send(&format!(
                    "<message xmlns='jabber:client' type='{kind}' to='{}' id='m{seq}'><body>bench {stamp} {index}</body></message>",
                    salon_xml::escape(to)
                ))
                .await;
                if written.is_ok() {
                    let fan_out = match room {
                        Some(r) => shared.occupants[*r].load(Relaxed) as u64,
                        None => 1,
                    };
                    shared.sent.fetch_add(1, Relaxed);
                    shared.expected.fetch_add(fan_out, SeqCst);
                }
                shared.in_flight.fetch_sub(1, SeqCst);
                written?;
            }
            event = conn.recv() => {
                let before = shared.received.load(Relaxed);
                on_event(shared, conn, state, event?, now).await?;
                if now >= DRAIN && shared.received.load(Relaxed) != before {
                    shared.progress.notify_waiters();
                }
            }
        }
    }
}

fn ready(shared: &Shared, state: &mut ClientState) {
    state.setup_reported = true;
    shared.setup_done.fetch_add(1, Relaxed);
    shared.progress.notify_waiters();
}
