//! The TOML configuration: every key Salon understands, its default, and errors that name the
//! file, line and key. The reference for operators is `docs/configuration.md`; keep them in step.

use serde::Deserialize;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The host where accounts live.
    pub domain: String,
    /// Where the database, certificates and uploads are kept.
    pub data_dir: PathBuf,
    /// Bare JIDs with administrative rights on this server.
    pub admins: Vec<String>,
    /// Threads that run connections and rooms; 0 means one per CPU core. Fewer threads spend
    /// less CPU per delivery (less waking each other) but cap what one server can carry.
    pub worker_threads: usize,
    pub tls: Option<TlsConfig>,
    pub listen: ListenConfig,
    pub c2s: C2sConfig,
    pub anonymous: Option<AnonymousConfig>,
    pub muc: Option<MucConfig>,
    /// HTTP File Upload (XEP-0363); absent: no upload service.
    pub upload: Option<UploadConfig>,
    pub limits: LimitsConfig,
    pub http: HttpConfig,
    pub contact: ContactConfig,
    /// Message Archive Management (XEP-0313) for accounts' one-to-one messages.
    pub archive: ArchiveConfig,
    pub log: LogConfig,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArchiveConfig {
    /// Keep each account's chats so its clients can fetch them (XEP-0313).
    pub enabled: bool,
    /// Archived account messages older than this many days are deleted; 0 keeps them.
    pub retention_days: u64,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        ArchiveConfig {
            enabled: true,
            retention_days: 0,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenConfig {
    /// Client connections with STARTTLS (RFC 6120 §5). `"off"` disables the listener.
    #[serde(deserialize_with = "listener")]
    pub c2s: Option<SocketAddr>,
    /// Client connections with TLS from the first byte (XEP-0368). `"off"` disables it.
    #[serde(deserialize_with = "listener")]
    pub c2s_direct_tls: Option<SocketAddr>,
    /// HTTP: WebSocket, BOSH, uploads, web client. `"off"` disables it.
    #[serde(deserialize_with = "listener")]
    pub http: Option<SocketAddr>,
    /// The same over HTTPS with the server's certificate. Off unless set.
    #[serde(deserialize_with = "listener")]
    pub https: Option<SocketAddr>,
    /// Prometheus metrics at `/metrics`, on a listener of its own so that it is never exposed
    /// through the public web side by accident. Off unless set.
    #[serde(deserialize_with = "listener")]
    pub metrics: Option<SocketAddr>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct C2sConfig {
    /// Refuse SASL (and so everything else) before TLS.
    pub require_encryption: bool,
    /// Seconds a client has to authenticate before it is disconnected.
    pub auth_timeout: u64,
    /// Seconds a session whose connection dropped is kept for XEP-0198 resumption; its
    /// occupant stays in rooms meanwhile.
    pub resume_timeout: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnonymousConfig {
    /// Host for SASL ANONYMOUS logins; never the main domain.
    pub domain: String,
    /// Seconds a guest's dropped session is kept for resumption. Shorter than for accounts:
    /// a closed tab cannot be told from a reload, and the guest stays in its rooms meanwhile.
    #[serde(default = "default_guest_resume_timeout")]
    pub resume_timeout: u64,
}

fn default_guest_resume_timeout() -> u64 {
    60
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MucConfig {
    /// Host of the multi-user chat service.
    pub domain: String,
    /// Who may create rooms by joining them.
    #[serde(default)]
    pub create_rooms: CreateRooms,
    /// Messages kept in memory per room for history on join (rooms choose up to this).
    #[serde(default = "default_max_history")]
    pub max_history: usize,
    /// Days archived room messages are kept (0: forever).
    #[serde(default = "default_archive_days")]
    pub archive_retention_days: u64,
    /// Occupants one room may hold (rooms may set a lower limit).
    #[serde(default = "default_max_occupants")]
    pub max_occupants: usize,
    /// Rooms one creator may create in any hour (0: no limit): an account, or a visitor of the
    /// anonymous host counted by its address (it gets a new JID with every login). The
    /// server's admins are not counted.
    #[serde(default = "default_rooms_per_hour")]
    pub rooms_per_hour: usize,
    /// Rooms all creators from one IP address (an IPv6 /64) may create in any hour (0: no
    /// limit), the server's admins excepted.
    #[serde(default = "default_rooms_per_hour_per_address")]
    pub rooms_per_hour_per_address: usize,
}

/// Who may create rooms (`[muc] create_rooms`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CreateRooms {
    /// Anyone, anonymous visitors included.
    #[default]
    Anyone,
    /// Users with an account on this server.
    Registered,
    /// Only the server's `admins`.
    Admins,
}

impl CreateRooms {
    pub fn as_str(self) -> &'static str {
        match self {
            CreateRooms::Anyone => "anyone",
            CreateRooms::Registered => "registered",
            CreateRooms::Admins => "admins",
        }
    }
}

fn default_max_history() -> usize {
    100
}

fn default_archive_days() -> u64 {
    0
}

fn default_max_occupants() -> usize {
    1000
}

fn default_rooms_per_hour() -> usize {
    20
}

fn default_rooms_per_hour_per_address() -> usize {
    60
}

impl MucConfig {
    pub fn new(domain: &str) -> MucConfig {
        MucConfig {
            domain: domain.to_string(),
            create_rooms: CreateRooms::default(),
            max_history: default_max_history(),
            archive_retention_days: default_archive_days(),
            max_occupants: default_max_occupants(),
            rooms_per_hour: default_rooms_per_hour(),
            rooms_per_hour_per_address: default_rooms_per_hour_per_address(),
        }
    }
}

/// `[upload]`: the HTTP File Upload service (XEP-0363). Sizes are in bytes, times in seconds.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadConfig {
    /// Host of the upload service. Empty in the file means `upload.DOMAIN`.
    pub domain: String,
    /// Base URL of the PUT and GET links, e.g. `https://files.example.org`, when uploads are
    /// reached at another address than `http.public_url` (a reverse proxy in front of Salon's
    /// HTTP listener). Absent: `http.public_url`, else `listen.https`, else `listen.http`.
    pub public_url: Option<String>,
    /// Largest file an account may upload.
    pub max_file_size: u64,
    /// Bytes one account may upload in any 24 hours (0: no limit).
    pub quota_per_day: u64,
    /// Bytes all stored uploads may take together (0: no limit).
    pub total_quota: u64,
    /// Content types accepted, like `"image/png"` or `"image/*"`; empty: any.
    pub allowed_types: Vec<String>,
    /// Seconds an account's upload is kept (0: until deleted by hand).
    pub expire_after: u64,
    /// Seconds a slot may be used for its PUT after it was handed out.
    pub slot_lifetime: u64,
    /// Slots one account may be handed in any hour (0: no limit), whatever their size.
    pub slots_per_hour: usize,
    /// Seconds between sweeps that delete expired files.
    pub sweep_interval: u64,
    /// Stricter settings for visitors of the anonymous host.
    pub anonymous: AnonymousUploadConfig,
}

/// `[upload.anonymous]`: what visitors of the anonymous host may upload.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnonymousUploadConfig {
    /// Whether visitors may upload at all (`false`: slot requests get `<not-allowed/>`).
    pub enabled: bool,
    /// Largest file a visitor may upload (never more than `upload.max_file_size`).
    pub max_file_size: u64,
    /// Bytes visitors from one IP address may upload in any 24 hours (0: no limit). By address,
    /// because a visitor gets a new JID with every login.
    pub quota_per_day: u64,
    /// Content types visitors may upload; absent: the same as `upload.allowed_types`.
    pub allowed_types: Option<Vec<String>>,
    /// Seconds a visitor's upload is kept (0: until deleted by hand).
    pub expire_after: u64,
    /// Slots visitors from one IP address (an IPv6 /64) may be handed in any hour (0: no
    /// limit), whatever their size.
    pub slots_per_hour: usize,
}

impl Default for UploadConfig {
    fn default() -> Self {
        UploadConfig {
            domain: String::new(),
            public_url: None,
            max_file_size: 100 * 1024 * 1024,
            quota_per_day: 1024 * 1024 * 1024,
            total_quota: 10 * 1024 * 1024 * 1024,
            allowed_types: Vec::new(),
            expire_after: 7 * 86_400,
            slot_lifetime: 300,
            slots_per_hour: 200,
            sweep_interval: 3600,
            anonymous: AnonymousUploadConfig::default(),
        }
    }
}

impl Default for AnonymousUploadConfig {
    fn default() -> Self {
        AnonymousUploadConfig {
            enabled: true,
            max_file_size: 10 * 1024 * 1024,
            quota_per_day: 100 * 1024 * 1024,
            allowed_types: None,
            expire_after: 86_400,
            slots_per_hour: 30,
        }
    }
}

impl UploadConfig {
    pub fn new(domain: &str) -> UploadConfig {
        UploadConfig {
            domain: domain.to_string(),
            ..UploadConfig::default()
        }
    }
}

/// Whether `pattern` from `allowed_types` is a media type (`type/subtype`, either may be `*`).
fn is_type_pattern(pattern: &str) -> bool {
    let token = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$&-^_.+*".contains(c))
    };
    matches!(pattern.split_once('/'), Some((t, s)) if token(t) && token(s))
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest stanza a client may send, in bytes (RFC 6120 §13.12).
    pub max_stanza_bytes: usize,
    /// Deepest element nesting inside one stanza.
    pub max_xml_depth: usize,
    /// Most attributes on one element.
    pub max_attributes: usize,
    /// Most elements in one stanza: an empty element is four bytes on the wire but hundreds
    /// once parsed.
    pub max_stanza_elements: usize,
    /// Largest estimated memory of one stanza's parsed tree, in bytes; bounds the parser's
    /// memory per connection, which bytes alone do not.
    pub max_stanza_memory: usize,
    /// Stanzas waiting to be written to one connection before it is cut off as too slow.
    pub outbound_queue: usize,
    /// Failed logins one IP address (an IPv6 /64) may make per minute before logins are refused.
    pub login_failures_per_minute: u32,
    /// Failed logins on one account from one IP address per minute before that account's
    /// logins from that address are refused.
    pub login_failures_per_account_per_minute: u32,
    /// Simultaneous connections from one IP address (an IPv6 /64).
    pub connections_per_ip: usize,
    /// Logins (SASL attempts, successful or not, anonymous ones included) one IP address (an
    /// IPv6 /64) may start per minute.
    pub logins_per_minute: u32,
    /// Messages held for one offline account.
    pub offline_messages_per_user: usize,
    /// Stanzas per second one session may send (bursts up to twice that are allowed).
    pub stanzas_per_second: u32,
    /// Stanzas sent to a client with stream management (XEP-0198) that it has not yet
    /// acknowledged; one more ends its stream with `<policy-violation/>`.
    pub unacked_stanzas: usize,
    /// The same bound in bytes, so that a few huge stanzas cannot hold memory either.
    pub unacked_bytes: usize,
    /// Seconds a write to a client may take before the connection is given up as stuck (a
    /// reader that stopped reading); the session then ends and leaves its rooms.
    pub write_timeout: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Origins allowed to use WebSocket, BOSH and host-meta from a browser (CORS). `["*"]`
    /// allows any site to embed the chat.
    pub cors_origins: Vec<String>,
    /// Reverse proxies whose `X-Forwarded-For` and `X-Forwarded-Proto` are believed: IP
    /// addresses or CIDR ranges. Requests from anyone else are taken at face value.
    pub trusted_proxies: Vec<String>,
    /// The address people reach Salon's HTTP side at, e.g. `https://chat.example.org`; used in
    /// host-meta and room links. Absent: taken from each request's Host header.
    pub public_url: Option<String>,
    /// Largest WebSocket message accepted, in bytes; larger closes the connection with
    /// close code 1009. Stanzas over `limits.max_stanza_bytes` already get `<policy-violation/>`.
    pub max_websocket_message: usize,
    /// Seconds between WebSocket pings that keep idle connections (and proxies) alive.
    pub websocket_ping_interval: u64,
    /// Treat connections from the loopback address (not through a trusted proxy) as
    /// encrypted: their traffic never leaves the machine.
    pub loopback_is_secure: bool,
    /// Seconds without any BOSH request after which a BOSH session ends (XEP-0124 `inactivity`).
    pub bosh_inactivity: u64,
    /// Longest a BOSH request is held waiting for data (clients may ask for less).
    pub bosh_max_wait: u64,
    /// Seconds a client has to send a request's whole header; also how long an idle keep-alive
    /// connection stays open.
    pub header_read_timeout: u64,
    /// Seconds a connection may go without a byte read or written while it is served; longer
    /// than `bosh_max_wait` and `websocket_ping_interval`, which keep live ones busy.
    pub idle_timeout: u64,
    /// Simultaneous HTTP connections from one TCP peer (trusted proxies are exempt).
    pub connections_per_ip: usize,
    /// Directory holding Converse.js's `dist/` files, served at `/converse/dist/`. Salon does
    /// not ship Converse.js.
    pub converse_dir: Option<PathBuf>,
    /// Base URL of Converse.js's files when they are hosted elsewhere (instead of
    /// `converse_dir`).
    pub converse_url: Option<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            cors_origins: vec!["*".into()],
            trusted_proxies: Vec::new(),
            public_url: None,
            max_websocket_message: 1024 * 1024,
            websocket_ping_interval: 30,
            loopback_is_secure: true,
            bosh_inactivity: 60,
            bosh_max_wait: 60,
            header_read_timeout: 10,
            idle_timeout: 90,
            connections_per_ip: 128,
            converse_dir: None,
            converse_url: None,
        }
    }
}

/// An address or CIDR range from `http.trusted_proxies`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpRange {
    network: std::net::IpAddr,
    prefix: u8,
}

impl IpRange {
    pub fn parse(text: &str) -> Option<IpRange> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix.parse::<u8>().ok()?)),
            None => (text, None),
        };
        let network: std::net::IpAddr = address.trim().parse().ok()?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(IpRange { network, prefix })
    }

    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map(std::net::IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.network, ip) {
            (std::net::IpAddr::V4(net), std::net::IpAddr::V4(ip)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - self.prefix)
                };
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (std::net::IpAddr::V6(net), std::net::IpAddr::V6(ip)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - self.prefix)
                };
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl HttpConfig {
    pub fn trusted_proxy_ranges(&self) -> Vec<IpRange> {
        self.trusted_proxies
            .iter()
            .filter_map(|p| IpRange::parse(p))
            .collect()
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContactConfig {
    /// XEP-0157 addresses, as URIs (`mailto:…`, `xmpp:…`, `https://…`).
    pub admin: Vec<String>,
    pub abuse: Vec<String>,
    pub support: Vec<String>,
    pub security: Vec<String>,
    pub feedback: Vec<String>,
    pub sales: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `tracing` filter, e.g. "info" or "salon_server=debug".
    pub level: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            domain: "localhost".into(),
            data_dir: PathBuf::from("./salon-data"),
            admins: Vec::new(),
            worker_threads: 0,
            tls: None,
            listen: ListenConfig::default(),
            c2s: C2sConfig::default(),
            anonymous: None,
            muc: None,
            upload: None,
            limits: LimitsConfig::default(),
            http: HttpConfig::default(),
            contact: ContactConfig::default(),
            archive: ArchiveConfig::default(),
            log: LogConfig::default(),
        }
    }
}

/// A listener address, or `"off"`: TOML has no null, and leaving the key out means the default.
fn listener<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(deserializer)?;
    if text == "off" {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        serde::de::Error::custom(format!(
            "`{text}` is not an address like \"127.0.0.1:5222\" or \"[::]:5222\", nor \"off\""
        ))
    })
}

impl Default for ListenConfig {
    fn default() -> Self {
        ListenConfig {
            c2s: Some(SocketAddr::from(([127, 0, 0, 1], 5222))),
            c2s_direct_tls: Some(SocketAddr::from(([127, 0, 0, 1], 5223))),
            http: Some(SocketAddr::from(([127, 0, 0, 1], 5280))),
            https: None,
            metrics: None,
        }
    }
}

impl Default for C2sConfig {
    fn default() -> Self {
        C2sConfig {
            require_encryption: true,
            auth_timeout: 60,
            resume_timeout: 300,
        }
    }
}

impl LimitsConfig {
    /// The limits on each stanza's parsed tree, for the stream parsers of every transport.
    pub fn tree_limits(&self) -> salon_xml::TreeLimits {
        salon_xml::TreeLimits {
            max_elements: self.max_stanza_elements,
            max_memory: self.max_stanza_memory,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_stanza_bytes: 256 * 1024,
            max_xml_depth: 32,
            max_attributes: 64,
            max_stanza_elements: 4096,
            max_stanza_memory: 1024 * 1024,
            outbound_queue: 2048,
            login_failures_per_minute: 30,
            login_failures_per_account_per_minute: 5,
            connections_per_ip: 64,
            logins_per_minute: 60,
            offline_messages_per_user: 500,
            stanzas_per_second: 200,
            unacked_stanzas: 5000,
            unacked_bytes: 16 * 1024 * 1024,
            write_timeout: 30,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
        }
    }
}

/// A configuration error, precise enough to fix without reading code.
#[derive(Debug)]
pub struct ConfigError {
    pub file: Option<PathBuf>,
    pub line: Option<usize>,
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{}", file.display())?,
            None => write!(f, "<built-in configuration>")?,
        }
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": key `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// The development setup used when no file is given: `localhost`, `anon.localhost`,
    /// `rooms.localhost`, `upload.localhost`, loopback listeners, data in `./salon-data`.
    pub fn development() -> Config {
        Config {
            anonymous: Some(AnonymousConfig {
                domain: "anon.localhost".into(),
                resume_timeout: default_guest_resume_timeout(),
            }),
            muc: Some(MucConfig::new("rooms.localhost")),
            upload: Some(UploadConfig::new("upload.localhost")),
            ..Config::default()
        }
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: Some(path.to_path_buf()),
            line: None,
            key: None,
            message: format!("cannot read: {e}"),
        })?;
        Config::parse(&text, Some(path))
    }

    pub fn parse(text: &str, path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|span| line_of(text, span.start));
            ConfigError {
                file: path.map(Path::to_path_buf),
                line,
                key: line.and_then(|l| key_on_line(text, l)),
                message: e.message().to_string(),
            }
        })?;
        config.normalise();
        config.validate().map_err(|(key, message)| {
            let line = find_key_line(text, &key);
            ConfigError {
                file: path.map(Path::to_path_buf),
                line,
                key: Some(key),
                message,
            }
        })?;
        Ok(config)
    }

    /// Host names as the server compares them (RFC 7622 §3.2: lower case, nameprep), so that
    /// `EXAMPLE.org` in the file works like `example.org`. Invalid names are left for
    /// `validate` to report.
    fn normalise(&mut self) {
        let normal = |domain: &mut String| {
            if let Ok(jid) = jid::BareJid::new(domain) {
                if jid.node().is_none() {
                    *domain = jid.to_string();
                }
            }
        };
        normal(&mut self.domain);
        if let Some(anonymous) = &mut self.anonymous {
            normal(&mut anonymous.domain);
        }
        if let Some(muc) = &mut self.muc {
            normal(&mut muc.domain);
        }
        if let Some(upload) = &mut self.upload {
            if upload.domain.is_empty() {
                upload.domain = format!("upload.{}", self.domain);
            }
            normal(&mut upload.domain);
        }
    }

    /// Checks that cannot be expressed in types. Returns the dotted key and the problem.
    fn validate(&self) -> Result<(), (String, String)> {
        let check_domain = |key: &str, domain: &str| -> Result<(), (String, String)> {
            match jid::BareJid::new(domain) {
                Ok(jid) if jid.node().is_none() => Ok(()),
                _ => Err((
                    key.to_string(),
                    format!("`{domain}` is not a valid domain name"),
                )),
            }
        };
        check_domain("domain", &self.domain)?;
        let mut hosts = vec![("domain", self.domain.as_str())];
        if let Some(anon) = &self.anonymous {
            check_domain("anonymous.domain", &anon.domain)?;
            hosts.push(("anonymous.domain", &anon.domain));
        }
        if let Some(muc) = &self.muc {
            check_domain("muc.domain", &muc.domain)?;
            hosts.push(("muc.domain", &muc.domain));
        }
        if let Some(upload) = &self.upload {
            check_domain("upload.domain", &upload.domain)?;
            hosts.push(("upload.domain", &upload.domain));
        }
        for (i, (key, host)) in hosts.iter().enumerate() {
            if hosts[..i].iter().any(|(_, other)| other == host) {
                return Err((
                    key.to_string(),
                    format!("`{host}` is already used by another host; each needs its own"),
                ));
            }
        }
        for admin in &self.admins {
            if jid::BareJid::new(admin).is_err() {
                return Err(("admins".into(), format!("`{admin}` is not a valid JID")));
            }
        }
        if self.worker_threads > 1024 {
            return Err((
                "worker_threads".into(),
                "at most 1024 (0 means one per CPU core)".into(),
            ));
        }
        let limits = &self.limits;
        for (key, value, min) in [
            ("limits.max_stanza_bytes", limits.max_stanza_bytes, 10_000),
            ("c2s.auth_timeout", self.c2s.auth_timeout as usize, 5),
            ("limits.max_xml_depth", limits.max_xml_depth, 4),
            ("limits.max_attributes", limits.max_attributes, 8),
            ("limits.max_stanza_elements", limits.max_stanza_elements, 64),
            (
                "http.header_read_timeout",
                self.http.header_read_timeout as usize,
                1,
            ),
            ("http.connections_per_ip", self.http.connections_per_ip, 1),
            (
                "http.idle_timeout",
                self.http.idle_timeout as usize,
                self.http
                    .bosh_max_wait
                    .max(self.http.websocket_ping_interval) as usize
                    + 1,
            ),
            (
                "limits.max_stanza_memory",
                limits.max_stanza_memory,
                64 * 1024,
            ),
            ("limits.outbound_queue", limits.outbound_queue, 16),
            ("limits.unacked_stanzas", limits.unacked_stanzas, 16),
            ("limits.unacked_bytes", limits.unacked_bytes, 64 * 1024),
            ("limits.write_timeout", limits.write_timeout as usize, 1),
            ("limits.connections_per_ip", limits.connections_per_ip, 1),
            (
                "limits.stanzas_per_second",
                limits.stanzas_per_second as usize,
                1,
            ),
            (
                "limits.login_failures_per_minute",
                limits.login_failures_per_minute as usize,
                1,
            ),
            (
                "limits.logins_per_minute",
                limits.logins_per_minute as usize,
                1,
            ),
            (
                "limits.login_failures_per_account_per_minute",
                limits.login_failures_per_account_per_minute as usize,
                1,
            ),
        ] {
            if value < min {
                return Err((key.into(), format!("must be at least {min}, got {value}")));
            }
        }
        if self.listen.c2s.is_none() && self.listen.c2s_direct_tls.is_none() {
            return Err((
                "listen".into(),
                "no client listener: set listen.c2s or listen.c2s_direct_tls".into(),
            ));
        }
        for proxy in &self.http.trusted_proxies {
            if IpRange::parse(proxy).is_none() {
                return Err((
                    "http.trusted_proxies".into(),
                    format!("`{proxy}` is not an IP address or CIDR range"),
                ));
            }
        }
        if let Some(url) = &self.http.converse_url {
            if !(url.starts_with("http://") || url.starts_with("https://") || url.starts_with('/'))
            {
                return Err((
                    "http.converse_url".into(),
                    format!("`{url}` must be an http(s) URL or a path starting with /"),
                ));
            }
        }
        if let Some(url) = &self.http.public_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err((
                    "http.public_url".into(),
                    format!("`{url}` must start with http:// or https://"),
                ));
            }
        }
        for (key, value) in [
            ("http.bosh_inactivity", self.http.bosh_inactivity),
            ("http.bosh_max_wait", self.http.bosh_max_wait),
            (
                "http.websocket_ping_interval",
                self.http.websocket_ping_interval,
            ),
        ] {
            if value == 0 {
                return Err((key.into(), "must be at least 1".into()));
            }
        }
        if self.http.max_websocket_message < self.limits.max_stanza_bytes {
            return Err((
                "http.max_websocket_message".into(),
                "must be at least limits.max_stanza_bytes".into(),
            ));
        }
        if let Some(upload) = &self.upload {
            self.validate_upload(upload)?;
        }
        if let Err(e) = tracing_filter_check(&self.log.level) {
            return Err(("log.level".into(), e));
        }
        Ok(())
    }

    /// Where browsers reach Salon's HTTP side: `http.public_url`, or else the HTTP listener
    /// (with `domain` standing in for an unspecified address). None without an HTTP listener.
    pub fn web_base_url(&self) -> Option<String> {
        if let Some(url) = &self.http.public_url {
            return Some(url.trim_end_matches('/').to_string());
        }
        let addr = self.listen.http?;
        Some(if addr.ip().is_unspecified() {
            format!("http://{}:{}", self.domain, addr.port())
        } else {
            format!("http://{addr}")
        })
    }

    fn validate_upload(&self, upload: &UploadConfig) -> Result<(), (String, String)> {
        if let Some(url) = &upload.public_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err((
                    "upload.public_url".into(),
                    format!("`{url}` must start with http:// or https://"),
                ));
            }
        } else if self.http.public_url.is_none()
            && self.listen.http.is_none()
            && self.listen.https.is_none()
        {
            return Err((
                "upload".into(),
                "uploads need Salon's HTTP listener (listen.http or listen.https) or an \
                 external address (upload.public_url)"
                    .into(),
            ));
        }
        for (key, value) in [
            ("upload.slot_lifetime", upload.slot_lifetime),
            ("upload.sweep_interval", upload.sweep_interval),
        ] {
            if value == 0 {
                return Err((key.into(), "must be at least 1".into()));
            }
        }
        let types = [
            ("upload.allowed_types", Some(&upload.allowed_types)),
            (
                "upload.anonymous.allowed_types",
                upload.anonymous.allowed_types.as_ref(),
            ),
        ];
        for (key, list) in types {
            for pattern in list.into_iter().flatten() {
                if !is_type_pattern(pattern) {
                    return Err((
                        key.into(),
                        format!(
                            "`{pattern}` is not a content type like \"image/png\" or \"image/*\""
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// How long a dropped session of a user of `domain` waits for resumption (XEP-0198).
    pub fn resume_timeout_for(&self, domain: &str) -> u64 {
        match &self.anonymous {
            Some(anonymous) if anonymous.domain == domain => anonymous.resume_timeout,
            _ => self.c2s.resume_timeout,
        }
    }

    /// The hosts whose users log in here: the main domain and the anonymous host.
    pub fn anonymous_domain(&self) -> Option<&str> {
        self.anonymous.as_ref().map(|a| a.domain.as_str())
    }

    /// A readable dump of the effective configuration, as `salon check` prints it.
    pub fn describe(&self) -> String {
        let opt = |a: &Option<SocketAddr>| a.map_or("off".to_string(), |a| a.to_string());
        let mut out = String::new();
        out.push_str(&format!("domain = {:?}\n", self.domain));
        out.push_str(&format!("data_dir = {:?}\n", self.data_dir.display()));
        out.push_str(&format!("admins = {:?}\n", self.admins));
        out.push_str(&format!(
            "worker_threads = {}\n",
            match self.worker_threads {
                0 => "0 (one per CPU core)".to_string(),
                n => n.to_string(),
            }
        ));
        match &self.tls {
            Some(tls) => out.push_str(&format!(
                "tls.cert = {:?}\ntls.key = {:?}\n",
                tls.cert.display(),
                tls.key.display()
            )),
            None => out.push_str("tls = self-signed certificate in data_dir\n"),
        }
        out.push_str(&format!(
            "listen.c2s = {}\nlisten.c2s_direct_tls = {}\nlisten.http = {}\nlisten.https = {}\nlisten.metrics = {}\n",
            opt(&self.listen.c2s),
            opt(&self.listen.c2s_direct_tls),
            opt(&self.listen.http),
            opt(&self.listen.https),
            opt(&self.listen.metrics)
        ));
        out.push_str(&format!(
            "c2s.require_encryption = {}\nc2s.auth_timeout = {}\nc2s.resume_timeout = {}\n",
            self.c2s.require_encryption, self.c2s.auth_timeout, self.c2s.resume_timeout
        ));
        out.push_str(&format!(
            "anonymous.domain = {}\n",
            self.anonymous_domain()
                .unwrap_or("off (no anonymous logins)")
        ));
        match &self.muc {
            Some(muc) => out.push_str(&format!(
                "muc.domain = {}\nmuc.create_rooms = \"{}\"\nmuc.max_history = {}\nmuc.archive_retention_days = {}\nmuc.max_occupants = {}\nmuc.rooms_per_hour = {}\nmuc.rooms_per_hour_per_address = {}\n",
                muc.domain,
                                muc.create_rooms.as_str(),
                muc.max_history,
                muc.archive_retention_days,
                muc.max_occupants,
                muc.rooms_per_hour,
                muc.rooms_per_hour_per_address
            )),
            None => out.push_str("muc.domain = off (no multi-user chat)\n"),
        }
        match &self.upload {
            Some(u) => {
                let a = &u.anonymous;
                out.push_str(&format!(
                    "upload.domain = {}\nupload.public_url = {}\nupload.max_file_size = {}\nupload.quota_per_day = {}\nupload.total_quota = {}\nupload.allowed_types = {:?}\nupload.expire_after = {}\nupload.slot_lifetime = {}\nupload.slots_per_hour = {}\nupload.sweep_interval = {}\n",
                    u.domain,
                    u.public_url.as_deref().unwrap_or("(from http.public_url or listen.http)"),
                    u.max_file_size,
                    u.quota_per_day,
                    u.total_quota,
                    u.allowed_types,
                    u.expire_after,
                    u.slot_lifetime,
                    u.slots_per_hour,
                    u.sweep_interval
                ));
                out.push_str(&format!(
                    "upload.anonymous.enabled = {}\nupload.anonymous.max_file_size = {}\nupload.anonymous.quota_per_day = {}\nupload.anonymous.allowed_types = {}\nupload.anonymous.expire_after = {}\nupload.anonymous.slots_per_hour = {}\n",
                    a.enabled,
                    a.max_file_size,
                    a.quota_per_day,
                    a.allowed_types
                        .as_ref()
                        .map_or("(as upload.allowed_types)".to_string(), |t| format!("{t:?}")),
                    a.expire_after,
                    a.slots_per_hour
                ));
            }
            None => out.push_str("upload.domain = off (no file upload)\n"),
        }
        let l = &self.limits;
        out.push_str(&format!(
            "limits.max_stanza_bytes = {}\nlimits.max_xml_depth = {}\nlimits.max_attributes = {}\nlimits.outbound_queue = {}\nlimits.login_failures_per_minute = {}\nlimits.login_failures_per_account_per_minute = {}\nlimits.connections_per_ip = {}\nlimits.logins_per_minute = {}\nlimits.offline_messages_per_user = {}\nlimits.stanzas_per_second = {}\nlimits.unacked_stanzas = {}\nlimits.unacked_bytes = {}\nlimits.write_timeout = {}\n",
            l.max_stanza_bytes, l.max_xml_depth, l.max_attributes, l.outbound_queue,
            l.login_failures_per_minute, l.login_failures_per_account_per_minute, l.connections_per_ip, l.logins_per_minute, l.offline_messages_per_user,
            l.stanzas_per_second, l.unacked_stanzas, l.unacked_bytes, l.write_timeout
        ));
        out.push_str(&format!(
            "limits.max_stanza_elements = {}\nlimits.max_stanza_memory = {}\n",
            l.max_stanza_elements, l.max_stanza_memory
        ));
        let h = &self.http;
        out.push_str(&format!(
            "http.cors_origins = {:?}\nhttp.trusted_proxies = {:?}\nhttp.public_url = {}\nhttp.max_websocket_message = {}\nhttp.websocket_ping_interval = {}\nhttp.loopback_is_secure = {}\nhttp.bosh_inactivity = {}\nhttp.bosh_max_wait = {}\n",
            h.cors_origins,
            h.trusted_proxies,
            h.public_url.as_deref().unwrap_or("(from each request's Host header)"),
            h.max_websocket_message,
            h.websocket_ping_interval,
            h.loopback_is_secure,
            h.bosh_inactivity,
            h.bosh_max_wait
        ));
        out.push_str(&format!(
            "http.header_read_timeout = {}\nhttp.idle_timeout = {}\nhttp.connections_per_ip = {}\n",
            h.header_read_timeout, h.idle_timeout, h.connections_per_ip
        ));
        out.push_str(&format!(
            "http.converse_dir = {}\nhttp.converse_url = {}\n",
            h.converse_dir
                .as_ref()
                .map_or("(none)".to_string(), |d| format!("{:?}", d.display())),
            h.converse_url.as_deref().unwrap_or("(none)")
        ));
        if let Some(anonymous) = &self.anonymous {
            out.push_str(&format!(
                "anonymous.resume_timeout = {}\n",
                anonymous.resume_timeout
            ));
        }
        out.push_str(&format!(
            "archive.enabled = {}\narchive.retention_days = {}\n",
            self.archive.enabled, self.archive.retention_days
        ));
        out.push_str(&format!("log.level = {:?}\n", self.log.level));
        out
    }
}

/// A `tracing` filter: comma-separated `level` or `target=level` directives.
fn tracing_filter_check(filter: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    if filter.trim().is_empty() {
        return Err("must not be empty; use e.g. \"info\"".into());
    }
    for directive in filter.split(',').map(str::trim) {
        let level = directive.rsplit('=').next().unwrap_or(directive);
        let is_target_only = !directive.contains('=') && directive.contains("::");
        if !is_target_only && !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "`{directive}` is not a level; use one of trace, debug, info, warn, error, off, optionally as target=level"
            ));
        }
    }
    Ok(())
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The dotted key defined on `line` (1-based), using the nearest `[table]` header above it.
fn key_on_line(text: &str, line: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let current = lines.get(line.checked_sub(1)?)?.trim();
    let table = lines[..line - 1]
        .iter()
        .rev()
        .map(|l| l.trim())
        .find(|l| l.starts_with('[') && l.ends_with(']'))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    if current.starts_with('[') {
        return Some(current.trim_matches(|c| c == '[' || c == ']').to_string());
    }
    let key = current.split('=').next()?.trim();
    if key.is_empty() {
        return table;
    }
    Some(match table {
        Some(t) => format!("{t}.{key}"),
        None => key.to_string(),
    })
}

/// The line on which a dotted key is set, if it is in the file at all.
fn find_key_line(text: &str, dotted: &str) -> Option<usize> {
    (1..=text.lines().count()).find(|&l| key_on_line(text, l).as_deref() == Some(dotted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_example_parses() {
        let text = r#"
domain = "example.org"
data_dir = "/var/lib/salon"
[tls]
cert = "/etc/salon/fullchain.pem"
key = "/etc/salon/privkey.pem"
[listen]
c2s = "0.0.0.0:5222"
c2s_direct_tls = "0.0.0.0:5223"
http = "0.0.0.0:5280"
[c2s]
require_encryption = true
[anonymous]
domain = "anon.example.org"
[muc]
domain = "rooms.example.org"
"#;
        let config = Config::parse(text, None).unwrap();
        assert_eq!(config.domain, "example.org");
        assert_eq!(config.anonymous_domain(), Some("anon.example.org"));
        assert_eq!(config.listen.c2s.unwrap().port(), 5222);
        assert!(config.c2s.require_encryption);
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let text = "domain = \"example.org\"\n[c2s]\nrequire_encryptoin = false\n";
        let err = Config::parse(text, Some(Path::new("salon.toml"))).unwrap_err();
        assert_eq!(err.line, Some(3));
        assert_eq!(err.key.as_deref(), Some("c2s.require_encryptoin"));
        let shown = err.to_string();
        assert!(
            shown.starts_with("salon.toml:3: key `c2s.require_encryptoin`"),
            "{shown}"
        );
    }

    #[test]
    fn worker_threads_default_to_one_per_core_and_are_bounded() {
        assert_eq!(Config::parse("", None).unwrap().worker_threads, 0);
        let config = Config::parse("worker_threads = 1\n", None).unwrap();
        assert_eq!(config.worker_threads, 1);
        let err = Config::parse("worker_threads = 5000\n", None).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("worker_threads"));
        let err = Config::parse("worker_threads = -1\n", None).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("worker_threads"));
    }

    #[test]
    fn account_archives_are_on_by_default_and_configurable() {
        let config = Config::parse("", None).unwrap();
        assert!(config.archive.enabled);
        assert_eq!(config.archive.retention_days, 0);
        let config =
            Config::parse("[archive]\nenabled = false\nretention_days = 30\n", None).unwrap();
        assert!(!config.archive.enabled);
        assert_eq!(config.archive.retention_days, 30);
        assert!(config.describe().contains("archive.retention_days = 30\n"));
        let err = Config::parse("[archive]\nretention = 30\n", None).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("archive.retention"));
    }

    #[test]
    fn wrong_type_names_line_and_key() {
        let text = "domain = \"example.org\"\n[c2s]\nrequire_encryption = \"yes\"\n";
        let err = Config::parse(text, None).unwrap_err();
        assert_eq!(err.line, Some(3));
        assert_eq!(err.key.as_deref(), Some("c2s.require_encryption"));
    }

    #[test]
    fn listeners_can_be_off_and_domains_are_normalised() {
        let text = "domain = \"Example.ORG\"\n[listen]\nc2s_direct_tls = \"off\"\nhttp = \"off\"\n";
        let config = Config::parse(text, None).unwrap();
        assert_eq!(config.domain, "example.org");
        assert!(config.listen.c2s.is_some());
        assert!(config.listen.c2s_direct_tls.is_none());
        assert!(config.listen.http.is_none());
        let text = "[listen]\nc2s = \"off\"\nc2s_direct_tls = \"off\"\n";
        let err = Config::parse(text, None).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("listen"));
    }

    #[test]
    fn trusted_proxy_ranges_match() {
        let range = IpRange::parse("10.0.0.0/8").unwrap();
        assert!(range.contains("10.1.2.3".parse().unwrap()));
        assert!(!range.contains("11.0.0.1".parse().unwrap()));
        assert!(range.contains("::ffff:10.0.0.1".parse().unwrap()));
        let single = IpRange::parse("::1").unwrap();
        assert!(single.contains("::1".parse().unwrap()));
        assert!(!single.contains("::2".parse().unwrap()));
        assert!(IpRange::parse("10.0.0.0/33").is_none());
        let err = Config::parse("[http]\ntrusted_proxies = [\"nope\"]\n", None).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("http.trusted_proxies"));
    }

    #[test]
    fn misspelt_log_level_is_refused() {
        let err = Config::parse("[log]\nlevel = \"inf\"\n", None).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("log.level"));
        assert!(Config::parse("[log]\nlevel = \"info,salon_server=debug\"\n", None).is_ok());
    }

    #[test]
    fn upload_section_defaults_and_errors() {
        let config = Config::parse("domain = \"example.org\"\n[upload]\n", None).unwrap();
        let upload = config.upload.unwrap();
        assert_eq!(upload.domain, "upload.example.org");
        assert_eq!(upload.expire_after, 7 * 86_400);
        assert_eq!(upload.anonymous.expire_after, 86_400);
        assert!(Config::parse("", None).unwrap().upload.is_none());
        assert!(Config::development().upload.is_some());
        let text = "[upload]\nallowed_types = [\"image\"]\n";
        let err = Config::parse(text, None).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("upload.allowed_types"));
        assert_eq!(err.line, Some(2));
        let text = "[upload]\n[upload.anonymous]\nallowed_types = [\"x/\"]\n";
        let err = Config::parse(text, None).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("upload.anonymous.allowed_types"));
        let text = "[upload]\nmax_file_sise = 3\n";
        let err = Config::parse(text, None).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("upload.max_file_sise"));
        let text = "[listen]\nhttp = \"off\"\n[upload]\n";
        let err = Config::parse(text, None).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("upload"));
        let text = "[muc]\ndomain = \"up.localhost\"\n[upload]\ndomain = \"up.localhost\"\n";
        let err = Config::parse(text, None).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("upload.domain"));
    }

    #[test]
    fn bad_value_names_line_and_key() {
        let text = "domain = \"example.org\"\n[listen]\nc2s = \"not an address\"\n";
        let err = Config::parse(text, None).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("listen.c2s"));
        let text = "domain = \"exa mple@org\"\n";
        let err = Config::parse(text, None).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("domain"));
        assert_eq!(err.line, Some(1));
        let text = "domain = \"example.org\"\n[muc]\ndomain = \"example.org\"\n";
        let err = Config::parse(text, None).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("muc.domain"));
        assert_eq!(err.line, Some(3));
    }
}
