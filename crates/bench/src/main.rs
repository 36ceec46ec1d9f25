//! `salon-bench`: a load generator for XMPP servers. One process, thousands of client
//! connections over plain TCP (loopback only), WebSocket (RFC 7395) or BOSH (XEP-0206), measuring login rate,
//! server memory per connection, 1:1 and group-chat throughput, delivery latency, lost
//! messages and the server's CPU per delivery. See bench/README.md.

mod bosh;
mod conn;
mod fixed_floor;
mod fixed_floor_server;
mod floor;
mod incoming;
mod logins;
mod muc;
mod sasl;
mod scenario;
mod stats;

use anyhow::{bail, Context, Result};
use clap::Parser;
use conn::{Auth, Target};
use scenario::{Plan, Report, Scenario};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "salon-bench",
    version,
    about = "Load generator for XMPP servers (login rate, 1:1 chat, MUC fan-out; TCP, WebSocket and BOSH)"
)]
struct Args {
    /// What to measure.
    #[arg(value_enum)]
    scenario: Scenario,
    /// Server address; must be a loopback address.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 5222)]
    port: u16,
    /// The host where accounts live (PLAIN and SCRAM logins).
    #[arg(long, default_value = "localhost")]
    domain: String,
    /// The anonymous host (ANONYMOUS logins).
    #[arg(long, default_value = "anon.localhost")]
    anon_domain: String,
    /// The MUC service.
    #[arg(long, default_value = "rooms.localhost")]
    muc_domain: String,
    /// Accounts are PREFIX0 … PREFIX{N-1}.
    #[arg(long, default_value = "bench")]
    user_prefix: String,
    #[arg(long, default_value = "secret")]
    password: String,
    #[arg(long, value_enum, default_value_t = Auth::Anonymous)]
    auth: Auth,
    /// Number of client connections.
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Seconds of sending (or, for `connect`, of staying idle).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Messages per second each client sends (chat, muc, ws).
    #[arg(long, default_value_t = 1.0)]
    rate: f64,
    /// Rooms the clients are spread over (muc, ws).
    #[arg(long, default_value_t = 1)]
    rooms: usize,
    /// WebSocket endpoint for the `ws` scenario; must be on a loopback address.
    #[arg(long, default_value = "ws://127.0.0.1:5280/xmpp-websocket")]
    ws_url: String,
    /// BOSH endpoint for the `bosh` scenario; must be on a loopback address.
    #[arg(long, default_value = "http://127.0.0.1:5280/http-bind")]
    bosh_url: String,
    /// Server process to watch: VmRSS and CPU time from /proc/PID.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Logins in flight at once.
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    /// Seconds to wait for outstanding deliveries after sending stops.
    #[arg(long, default_value_t = 5.0)]
    drain: f64,
    /// Seconds allowed for all logins, and again for all room joins.
    #[arg(long, default_value_t = 120.0)]
    setup_timeout: f64,
    /// Seconds allowed for one login.
    #[arg(long, default_value_t = 30.0)]
    login_timeout: f64,
    /// Hard limit for the whole run, in seconds (default: 2 × setup timeout + duration + drain + 30).
    #[arg(long)]
    timeout: Option<f64>,
    /// Send initial presence after login (always done for `chat`).
    #[arg(long)]
    presence: bool,
    /// Write the report as JSON to this file (the table still goes to stdout).
    #[arg(long)]
    json: Option<PathBuf>,
    /// How the `fixed-floor` scenario's server works: one thread blocking in epoll, or tasks
    /// on a two-worker tokio runtime laid out as Salon's sessions and rooms are.
    #[arg(long, value_enum, default_value_t = fixed_floor::Mode::Thread)]
    mode: fixed_floor::Mode,
    /// Worker threads of the `fixed-floor` tasks mode's tokio runtime.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// What the `fixed-floor` scenario's messages are: `room` (as `muc --rooms 1`, each to
    /// every client) or `chat` (as `chat`, clients in pairs, each to the partner only).
    #[arg(long, value_enum, default_value_t = fixed_floor::Shape::Room)]
    shape: fixed_floor::Shape,
    /// The `fixed-floor` scenario's journal: one `write(2)` per message, or none (Salon's
    /// mapped journal appends without a system call).
    #[arg(long, value_enum, default_value_t = fixed_floor::JournalMode::Write)]
    journal: fixed_floor::JournalMode,
    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Table,
    Json,
}

fn loopback(host: &str, port: u16) -> Result<SocketAddr> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {host}"))?
        .collect();
    match addrs.iter().find(|a| a.ip().is_loopback()) {
        Some(a) if addrs.iter().all(|a| a.ip().is_loopback()) => Ok(*a),
        _ => bail!("{host} is not a loopback address; salon-bench only connects to this machine"),
    }
}

/// The loopback address of `scheme://host[:port]/path` (port 80 when none is given).
fn url_addr(url: &str, scheme: &str, option: &str) -> Result<SocketAddr> {
    let rest = url
        .strip_prefix(scheme)
        .with_context(|| format!("{option} {url} must start with {scheme} (no TLS on loopback)"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
            h.trim_start_matches('[').trim_end_matches(']'),
            p.parse::<u16>()
                .with_context(|| format!("bad port in {option}"))?,
        ),
        _ => (authority, 80),
    };
    loopback(host, port)
}

fn plan(args: &Args) -> Result<Plan> {
    if args.clients == 0 {
        bail!("--clients must be at least 1");
    }
    if args.duration < 0.0 || args.drain < 0.0 || args.rate < 0.0 {
        bail!("--duration, --drain and --rate must not be negative");
    }
    if matches!(
        args.scenario,
        Scenario::Muc | Scenario::Ws | Scenario::Bosh | Scenario::Logins | Scenario::WsLogins
    ) {
        if args.rooms == 0 || args.rooms > args.clients {
            bail!("--rooms must be between 1 and --clients");
        }
        if args.rate <= 0.0 {
            bail!("--rate must be positive for {:?}", args.scenario);
        }
    }
    if args.scenario == Scenario::Chat && !args.clients.is_multiple_of(2) {
        bail!("chat pairs clients: --clients must be even");
    }
    let (addr, ws_url, bosh_url) = match args.scenario {
        Scenario::Ws | Scenario::WsLogins => (
            url_addr(&args.ws_url, "ws://", "--ws-url")?,
            Some(args.ws_url.clone()),
            None,
        ),
        Scenario::Bosh => (
            url_addr(&args.bosh_url, "http://", "--bosh-url")?,
            None,
            Some(args.bosh_url.clone()),
        ),
        _ => (loopback(&args.host, args.port)?, None, None),
    };
    if let Some(pid) = args.server_pid {
        stats::rss_kib(pid)?;
    }
    Ok(Plan {
        scenario: args.scenario,
        target: Target {
            addr,
            ws_url,
            bosh_url,
            domain: args.domain.clone(),
            anon_domain: args.anon_domain.clone(),
            auth: args.auth,
            user_prefix: args.user_prefix.clone(),
            password: args.password.clone(),
        },
        clients: args.clients,
        rooms: args.rooms,
        muc_domain: args.muc_domain.clone(),
        rate: args.rate,
        duration: Duration::from_secs_f64(args.duration),
        drain: Duration::from_secs_f64(args.drain),
        setup_timeout: Duration::from_secs_f64(args.setup_timeout),
        login_timeout: Duration::from_secs_f64(args.login_timeout),
        concurrency: args.concurrency,
        presence: args.presence,
        server_pid: args.server_pid,
    })
}

fn fmt_opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

fn fmt_ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.1} ms"))
        .unwrap_or_else(|| "-".into())
}

fn table(r: &Report) -> String {
    let mut rows: Vec<(&str, String)> = vec![
        (
            "scenario",
            format!("{} over {} ({} login)", r.scenario, r.transport, r.auth),
        ),
        ("clients", r.clients.to_string()),
    ];
    if let Some(rooms) = r.rooms {
        rows.push(("rooms", rooms.to_string()));
    }
    rows.push((
        "logins",
        format!(
            "{} ok, {} failed in {:.2} s = {:.0} logins/s",
            r.logins_ok, r.logins_failed, r.login_seconds, r.logins_per_s
        ),
    ));
    if let Some(e) = &r.first_login_error {
        rows.push(("first login error", e.clone()));
    }
    if r.server_pid.is_some() {
        rows.push((
            "server RSS",
            format!(
                "{} KiB before, {} after login, {} after setup, {} at end",
                fmt_opt(r.rss_before_kib),
                fmt_opt(r.rss_after_login_kib),
                fmt_opt(r.rss_after_setup_kib),
                fmt_opt(r.rss_end_kib)
            ),
        ));
        rows.push((
            "server RSS per connection",
            r.rss_per_connection_kib
                .map(|v| format!("{v:.1} KiB"))
                .unwrap_or_else(|| "-".into()),
        ));
        rows.push((
            "server CPU for logins",
            r.server_cpu_login_s
                .map(|v| format!("{v:.2} s"))
                .unwrap_or_else(|| "-".into()),
        ));
    }
    if r.scenario != "connect" {
        rows.push((
            "rate",
            format!(
                "{} msg/s per client for {:.0} s",
                fmt_opt(r.rate_per_client),
                r.duration_s
            ),
        ));
        rows.push(("messages sent", r.messages_sent.to_string()));
        rows.push((
            "deliveries",
            format!(
                "{} of {} expected ({} during the send window)",
                r.deliveries_received, r.deliveries_expected, r.deliveries_in_window
            ),
        ));
        rows.push(("deliveries/s", format!("{:.0}", r.deliveries_per_s)));
        rows.push((
            "lost",
            format!(
                "{} ({:.2} %) after {:.1} s drain",
                r.lost, r.lost_percent, r.drain_s
            ),
        ));
        rows.push((
            "latency p50/p95/p99/max",
            format!(
                "{} / {} / {} / {}",
                fmt_ms(r.latency.p50_ms),
                fmt_ms(r.latency.p95_ms),
                fmt_ms(r.latency.p99_ms),
                fmt_ms(r.latency.max_ms)
            ),
        ));
        if let Some(cpu) = r.server_cpu_s {
            rows.push((
                "server CPU",
                format!(
                    "{cpu:.2} s ({:.0} % of one core)",
                    r.server_cpu_percent.unwrap_or(0.0)
                ),
            ));
            rows.push((
                "deliveries per server CPU-s",
                r.deliveries_per_server_cpu_s
                    .map(|v| format!("{v:.0}"))
                    .unwrap_or_else(|| "-".into()),
            ));
        }
        if let Some(us) = r.server_cpu_us_per_message {
            rows.push((
                "server per message sent",
                format!(
                    "{us:.1} µs CPU, {:.2} voluntary + {:.2} involuntary context switches",
                    r.server_voluntary_switches_per_message.unwrap_or(0.0),
                    r.server_involuntary_switches_per_message.unwrap_or(0.0)
                ),
            ));
        }
        if let Some(load) = r.load_1min {
            rows.push(("1-minute load at start", format!("{load:.2}")));
        }
    } else {
        rows.push(("idle", format!("{:.0} s", r.duration_s)));
    }
    rows.push(("load generator CPU", format!("{:.2} s", r.bench_cpu_s)));
    rows.push((
        "errors",
        format!(
            "{} stanza errors, {} clients disconnected",
            r.stanza_errors, r.disconnects
        ),
    ));
    if let Some(e) = &r.first_error {
        rows.push(("first error", e.clone()));
    }
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("{k:<width$}  {v}\n"))
        .collect()
}

async fn run(args: &Args) -> Result<Report> {
    let plan = plan(args)?;
    let hard = args
        .timeout
        .unwrap_or(2.0 * args.setup_timeout + args.duration + args.drain + 30.0);
    match tokio::time::timeout(Duration::from_secs_f64(hard), scenario::run(plan)).await {
        Ok(result) => result,
        Err(_) => bail!("hard timeout: the run took longer than {hard:.0} s"),
    }
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some(fixed_floor_server::CHILD_ARG) {
        match fixed_floor_server::child_main(&argv[2..]) {
            Ok(()) => std::process::exit(0),
            Err(e) => fail(e),
        }
    }
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if args.scenario == Scenario::Floor {
        let duration = Duration::from_secs_f64(args.duration.max(0.0));
        match runtime.block_on(floor::run(args.clients, args.rate, duration)) {
            Ok(report) => emit(&args, &report, floor::table),
            Err(e) => fail(e),
        }
    }
    if args.scenario == Scenario::FixedFloor {
        let plan = fixed_floor::FixedFloorPlan {
            mode: args.mode,
            shape: args.shape,
            journal: args.journal,
            workers: args.workers,
            clients: args.clients,
            rate: args.rate,
            duration: Duration::from_secs_f64(args.duration.max(0.0)),
            drain: Duration::from_secs_f64(args.drain.max(0.0)),
        };
        match runtime.block_on(fixed_floor::run(plan)) {
            Ok(report) => emit(&args, &report, fixed_floor::table),
            Err(e) => fail(e),
        }
    }
    if matches!(args.scenario, Scenario::Logins | Scenario::WsLogins) {
        let result = plan(&args).and_then(|plan| {
            let ws = plan.target.ws_url.is_some();
            let plan = logins::LoginPlan {
                target: plan.target,
                clients: plan.clients,
                rooms: plan.rooms,
                muc_domain: plan.muc_domain,
                rate: plan.rate,
                hold: plan.duration,
                login_timeout: plan.login_timeout,
                server_pid: plan.server_pid,
            };
            let hard = args.timeout.unwrap_or(
                plan.clients as f64 / plan.rate.max(1e-3)
                    + 2.0 * args.login_timeout
                    + args.duration
                    + 30.0,
            );
            runtime.block_on(async {
                match tokio::time::timeout(Duration::from_secs_f64(hard), logins::run(plan, ws))
                    .await
                {
                    Ok(result) => result,
                    Err(_) => bail!("hard timeout: the run took longer than {hard:.0} s"),
                }
            })
        });
        match result {
            Ok(report) => emit(&args, &report, logins::table),
            Err(e) => fail(e),
        }
    }
    match runtime.block_on(run(&args)) {
        Ok(report) => emit(&args, &report, table),
        // Client tasks may still be blocked on a dead server: do not wait for them.
        Err(e) => fail(e),
    }
}

/// Print the report as the user asked (and save its JSON with `--json`), then exit.
fn emit<R: serde::Serialize>(args: &Args, report: &R, table: fn(&R) -> String) -> ! {
    let json = serde_json::to_string_pretty(report).expect("report serialises");
    if let Some(path) = &args.json {
        if let Err(e) = std::fs::write(path, format!("{json}\n")) {
            eprintln!("salon-bench: cannot write {}: {e}", path.display());
            std::process::exit(1);
        }
    }
    match args.format {
        Format::Table => print!("{}", table(report)),
        Format::Json => println!("{json}"),
    }
    std::process::exit(0);
}

fn fail(error: anyhow::Error) -> ! {
    eprintln!("salon-bench: {error:#}");
    std::process::exit(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets() {
        assert!(loopback("127.0.0.1", 5222).is_ok());
        assert!(loopback("::1", 5222).is_ok());
        assert!(loopback("10.0.0.1", 5222).is_err());
        assert!(loopback("192.168.1.1", 5222).is_err());
    }

    #[test]
    fn ws_url_must_be_loopback() {
        let mut args = Args::parse_from(["salon-bench", "ws", "--ws-url", "ws://10.1.2.3:5280/x"]);
        assert!(plan(&args).is_err());
        args.ws_url = "wss://127.0.0.1:5281/x".into();
        assert!(plan(&args).is_err());
        args.ws_url = "ws://127.0.0.1:5280/xmpp-websocket".into();
        let p = plan(&args).unwrap();
        assert_eq!(p.target.addr, "127.0.0.1:5280".parse().unwrap());
        args.ws_url = "ws://[::1]:5290/xmpp-websocket".into();
        assert_eq!(
            plan(&args).unwrap().target.addr,
            "[::1]:5290".parse().unwrap()
        );
    }

    #[test]
    fn bosh_url_must_be_loopback() {
        let mut args = Args::parse_from([
            "salon-bench",
            "bosh",
            "--bosh-url",
            "http://10.1.2.3:5280/http-bind",
        ]);
        assert!(plan(&args).is_err());
        args.bosh_url = "https://127.0.0.1:5281/http-bind".into();
        assert!(plan(&args).is_err());
        args.bosh_url = "http://127.0.0.1:15280/http-bind".into();
        let p = plan(&args).unwrap();
        assert_eq!(p.target.addr, "127.0.0.1:15280".parse().unwrap());
        assert_eq!(
            p.target.bosh_url.as_deref(),
            Some("http://127.0.0.1:15280/http-bind")
        );
        assert!(p.target.ws_url.is_none());
    }

    #[test]
    fn argument_checks() {
        let args = Args::parse_from(["salon-bench", "chat", "--clients", "3"]);
        assert!(plan(&args).is_err());
        let args = Args::parse_from(["salon-bench", "muc", "--clients", "3", "--rooms", "4"]);
        assert!(plan(&args).is_err());
        let args = Args::parse_from(["salon-bench", "muc", "--clients", "4", "--rooms", "2"]);
        assert!(plan(&args).is_ok());
    }
}
