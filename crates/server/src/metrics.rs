//! Prometheus metrics (OpenMetrics text format), served on `listen.metrics`: counters bumped
//! where things happen, and gauges read from the server's state when a scrape asks.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use std::sync::Arc;

type Labels = Vec<(&'static str, &'static str)>;

pub struct Metrics {
    registry: Registry,
    stanzas_message: Counter,
    stanzas_presence: Counter,
    stanzas_iq: Counter,
    logins_ok: Counter,
    logins_failed: Counter,
    connections_opened: Counter,
    sessions: Family<Labels, Gauge>,
    connections: Gauge,
    rooms: Gauge,
    occupants: Gauge,
    uptime: Gauge,
    resident_memory: Gauge,
    cpu_seconds: Counter<f64, std::sync::atomic::AtomicU64>,
    /// The CPU time already added to `cpu_seconds`; the counter only goes up by differences.
    cpu_counted: std::sync::Mutex<f64>,
    open_fds: Gauge,
    /// Federation: streams open, authentications and bounces, by label.
    s2s_streams: Family<Labels, Gauge>,
    s2s_authentications: Family<Labels, Counter>,
    s2s_bounces: Family<Labels, Counter>,
    /// Where the room gauges come from, when a chat service runs.
    room_counts: std::sync::OnceLock<Arc<dyn RoomCounts>>,
}

/// What the server reports about itself at the moment of a scrape.
pub struct ServerGauges {
    pub account_sessions: usize,
    pub guest_sessions: usize,
    pub connections: usize,
    pub uptime_seconds: u64,
}

/// A service that can say how many rooms run and how many occupants they have.
pub trait RoomCounts: Send + Sync {
    /// (rooms, occupants)
    fn totals(&self) -> (usize, usize);
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let stanzas = Family::<Labels, Counter>::default();
        registry.register(
            "salon_stanzas_received",
            "Stanzas received from clients, by kind",
            stanzas.clone(),
        );
        let logins = Family::<Labels, Counter>::default();
        registry.register(
            "salon_logins",
            "SASL authentications, by result",
            logins.clone(),
        );
        let connections_opened = Counter::default();
        registry.register(
            "salon_connections_opened",
            "Client connections accepted (TCP, WebSocket and BOSH)",
            connections_opened.clone(),
        );
        let sessions = Family::<Labels, Gauge>::default();
        registry.register(
            "salon_sessions",
            "Bound client sessions, by kind of user",
            sessions.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "salon_connections",
            "Open client connections",
            connections.clone(),
        );
        let rooms = Gauge::default();
        registry.register(
            "salon_rooms",
            "Multi-user chat rooms running",
            rooms.clone(),
        );
        let occupants = Gauge::default();
        registry.register(
            "salon_room_occupants",
            "Occupants of all rooms together",
            occupants.clone(),
        );
        let uptime = Gauge::default();
        registry.register_with_unit(
            "salon_uptime",
            "Time since the server started",
            Unit::Seconds,
            uptime.clone(),
        );
        // The process metrics as Prometheus names them for every program.
        let resident_memory = Gauge::default();
        registry.register_with_unit(
            "process_resident_memory",
            "Resident memory size",
            Unit::Bytes,
            resident_memory.clone(),
        );
        let cpu_seconds = Counter::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register_with_unit(
            "process_cpu",
            "User and system CPU time spent",
            Unit::Seconds,
            cpu_seconds.clone(),
        );
        let open_fds = Gauge::default();
        registry.register(
            "process_open_fds",
            "Open file descriptors",
            open_fds.clone(),
        );
        let s2s_streams = Family::<Labels, Gauge>::default();
        registry.register(
            "salon_s2s_streams",
            "Open server-to-server streams, by direction",
            s2s_streams.clone(),
        );
        let s2s_authentications = Family::<Labels, Counter>::default();
        registry.register(
            "salon_s2s_authentications",
            "Server-to-server streams authenticated, by direction and method",
            s2s_authentications.clone(),
        );
        let s2s_bounces = Family::<Labels, Counter>::default();
        registry.register(
            "salon_s2s_bounces",
            "Stanzas for other servers bounced to their sender, by error condition",
            s2s_bounces.clone(),
        );
        // Counters held directly, so that counting takes no label lookup.
        let counter = |family: &Family<Labels, Counter>, name, value| {
            let counter: Counter = family.get_or_create(&vec![(name, value)]).clone();
            counter
        };
        Metrics {
            stanzas_message: counter(&stanzas, "kind", "message"),
            stanzas_presence: counter(&stanzas, "kind", "presence"),
            stanzas_iq: counter(&stanzas, "kind", "iq"),
            logins_ok: counter(&logins, "result", "success"),
            logins_failed: counter(&logins, "result", "failure"),
            registry,
            connections_opened,
            sessions,
            connections,
            rooms,
            occupants,
            uptime,
            resident_memory,
            cpu_seconds,
            cpu_counted: std::sync::Mutex::new(0.0),
            open_fds,
            room_counts: std::sync::OnceLock::new(),
            s2s_streams,
            s2s_authentications,
            s2s_bounces,
        }
    }

    /// A server-to-server stream opened (`+1`) or closed (`-1`); `direction` is `incoming` or
    /// `outgoing`.
    pub fn s2s_stream(&self, direction: &'static str, change: i64) {
        self.s2s_streams
            .get_or_create(&vec![("direction", direction)])
            .inc_by(change);
    }

    /// A server-to-server stream authenticated, `method` `sasl_external` or `dialback`.
    pub fn s2s_authenticated(&self, direction: &'static str, method: &'static str) {
        self.s2s_authentications
            .get_or_create(&vec![("direction", direction), ("method", method)])
            .inc();
    }

    /// A stanza for another server bounced with `condition`.
    pub fn s2s_bounced(&self, condition: &'static str) {
        self.s2s_bounces
            .get_or_create(&vec![("condition", condition)])
            .inc();
    }

    /// A stanza from a client: `message`, `presence` or `iq`.
    pub fn stanza_received(&self, name: &str) {
        match name {
            "message" => self.stanzas_message.inc(),
            "presence" => self.stanzas_presence.inc(),
            "iq" => self.stanzas_iq.inc(),
            _ => 0,
        };
    }

    pub fn login(&self, succeeded: bool) {
        if succeeded {
            self.logins_ok.inc();
        } else {
            self.logins_failed.inc();
        }
    }

    /// Report the rooms of `source` in the room gauges.
    pub fn count_rooms_with(&self, source: Arc<dyn RoomCounts>) {
        let _ = self.room_counts.set(source);
    }

    pub fn connection_opened(&self) {
        self.connections_opened.inc();
    }

    /// The whole exposition, with the server's gauges as they are now.
    pub fn render(&self, now: &ServerGauges) -> String {
        let (accounts, guests) = (now.account_sessions, now.guest_sessions);
        self.sessions
            .get_or_create(&vec![("kind", "account")])
            .set(gauge_value(accounts));
        self.sessions
            .get_or_create(&vec![("kind", "guest")])
            .set(gauge_value(guests));
        self.connections.set(gauge_value(now.connections));
        let (rooms, occupants) = self.room_counts.get().map_or((0, 0), |m| m.totals());
        self.rooms.set(gauge_value(rooms));
        self.occupants.set(gauge_value(occupants));
        self.uptime.set(gauge_value(now.uptime_seconds as usize));
        if let Some(bytes) = resident_memory_bytes() {
            self.resident_memory.set(gauge_value(bytes));
        }
        if let (Some(seconds), Ok(mut counted)) = (cpu_seconds(), self.cpu_counted.lock()) {
            if seconds > *counted {
                self.cpu_seconds.inc_by(seconds - *counted);
                *counted = seconds;
            }
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds.set(gauge_value(fds.count()));
        }
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding metrics");
        }
        out
    }
}

fn gauge_value(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Resident set size from `/proc/self/statm` (Linux), in bytes.
fn resident_memory_bytes() -> Option<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions; it only reads a system constant.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * usize::try_from(page_size).ok()?)
}

/// User plus system CPU time of the whole process.
fn cpu_seconds() -> Option<f64> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a `rusage` into the pointer it is given, which is valid and
    // large enough; it is read only when the call reports success.
    let usage = unsafe {
        if libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) != 0 {
            return None;
        }
        usage.assume_init()
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some(seconds(usage.ru_utime) + seconds(usage.ru_stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_appear_in_the_exposition_with_their_labels() {
        let metrics = Metrics::new();
        metrics.stanza_received("message");
        metrics.stanza_received("message");
        metrics.stanza_received("iq");
        metrics.stanza_received("stream:features");
        metrics.login(false);
        let mut out = String::new();
        encode(&mut out, &metrics.registry).expect("encode");
        assert!(
            out.contains("salon_stanzas_received_total{kind=\"message\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("salon_stanzas_received_total{kind=\"iq\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("salon_stanzas_received_total{kind=\"presence\"} 0\n"),
            "{out}"
        );
        assert!(
            out.contains("salon_logins_total{result=\"failure\"} 1\n"),
            "{out}"
        );
        assert!(out.ends_with("# EOF\n"), "{out}");
    }
}
