//! The sections of the configuration (`[listen]`, `[c2s]`, `[muc]`, `[upload]`, `[limits]`,
//! `[http]` …): their keys and defaults. Documented for operators in docs/configuration.md.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

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

/// Personal eventing (XEP-0163): what one account may keep in its nodes.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PepConfig {
    /// Largest item payload, in bytes of XML.
    pub max_item_bytes: usize,
    /// Items one node keeps at most; a node configured with `max_items = "max"` keeps this many.
    pub max_items_per_node: usize,
    /// Nodes one account may have.
    pub max_nodes_per_account: usize,
    /// Items one account's clients may publish or retract per minute (the server's own
    /// publishing on their behalf, such as bookmarks converted from private XML, does not
    /// count).
    pub max_publish_per_minute: u32,
}

impl Default for PepConfig {
    fn default() -> Self {
        PepConfig {
            max_item_bytes: 256 * 1024,
            max_items_per_node: 256,
            max_nodes_per_account: 256,
            max_publish_per_minute: 120,
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
    /// Server-to-server streams with STARTTLS (RFC 6120), usually port 5269. Off unless set;
    /// outgoing federation works without it, but peers cannot connect to us.
    #[serde(deserialize_with = "listener")]
    pub s2s: Option<SocketAddr>,
    /// Server-to-server streams with TLS from the first byte (XEP-0368). Off unless set.
    #[serde(deserialize_with = "listener")]
    pub s2s_direct_tls: Option<SocketAddr>,
    /// External components (XEP-0114), usually port 5347; keep it on loopback or a private
    /// network (the protocol has no TLS). Off unless set.
    #[serde(deserialize_with = "listener")]
    pub component: Option<SocketAddr>,
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
    /// Seconds a guest's dropped session is kept for resumption. Much shorter than for
    /// accounts: a closed tab cannot be told from a reload, and the guest stays in its rooms
    /// (a ghost in the occupant list) until this runs out. A reload takes well under a second,
    /// and the web client notices a stalled connection within about 10 s.
    #[serde(default = "default_guest_resume_timeout")]
    pub resume_timeout: u64,
}

pub(super) fn default_guest_resume_timeout() -> u64 {
    10
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
    /// Messages one room's archive keeps; the oldest go first (0: no limit).
    #[serde(default = "default_max_archive_messages")]
    pub max_archive_messages: usize,
    /// Bytes (of stored stanzas) one room's archive keeps; the oldest go first (0: no limit).
    #[serde(default = "default_max_archive_bytes")]
    pub max_archive_bytes: u64,
    /// Hours the archive of a room created by a guest keeps a message (0: as other rooms).
    #[serde(default = "default_guest_archive_hours")]
    pub guest_room_archive_retention_hours: u64,
    /// Seconds a guest waits between two messages in a room (XEP-0500 slow mode), unless the
    /// room asks for longer (0: only the room's setting).
    #[serde(default = "default_guest_slow_mode")]
    pub guest_slow_mode_seconds: u64,
    /// Seconds a ban given in a room lasts when neither the moderator nor the room's owner
    /// chose a duration (0: until lifted, as XEP-0045 has it).
    #[serde(default)]
    pub ban_duration_seconds: u64,
}

/// Push notifications (XEP-0357).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushConfig {
    /// Put the message's body in notifications; off by default, since the app server (and
    /// the phone vendor's push service behind it) would then read every message.
    pub include_body: bool,
    /// Notifications per minute to one push service (its JID), in bursts of a tenth of it;
    /// beyond, each registration's latest waits and replaces the one before (0: no limit).
    pub per_service_per_minute: u32,
}

impl Default for PushConfig {
    fn default() -> PushConfig {
        PushConfig {
            include_body: false,
            per_service_per_minute: 600,
        }
    }
}

/// Who may make an account in-band (XEP-0077 §3.1, before login).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Registration {
    /// Nobody: accounts come from `salon user add` or an admin's ad-hoc command.
    #[default]
    Closed,
    /// Only with an invitation token (XEP-0445).
    Invite,
    /// Anyone, within `limits.registrations_per_hour`.
    Open,
}

impl Registration {
    pub fn as_str(self) -> &'static str {
        match self {
            Registration::Closed => "closed",
            Registration::Invite => "invite",
            Registration::Open => "open",
        }
    }
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

fn default_max_archive_messages() -> usize {
    10_000
}

fn default_max_archive_bytes() -> u64 {
    16 * 1024 * 1024
}

fn default_guest_archive_hours() -> u64 {
    24
}

fn default_guest_slow_mode() -> u64 {
    0
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
            max_archive_messages: default_max_archive_messages(),
            max_archive_bytes: default_max_archive_bytes(),
            guest_room_archive_retention_hours: default_guest_archive_hours(),
            guest_slow_mode_seconds: default_guest_slow_mode(),
            ban_duration_seconds: 0,
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
pub(super) fn is_type_pattern(pattern: &str) -> bool {
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
    /// Seconds a stanza may take to arrive once its first byte has come, on TCP client
    /// streams: a client trickling one byte at a time (slowloris) would otherwise hold its
    /// connection, parser state and buffers for ever.
    pub stanza_timeout: u64,
    /// Bytes of XML a TCP or WebSocket peer may send before it has authenticated (stream
    /// headers, STARTTLS, the SASL exchange take a few KiB); one more ends the stream.
    pub unauthenticated_bytes: usize,
    /// Accounts one IP address (an IPv6 /64) may make by open sign-up in any hour.
    pub registrations_per_hour: u32,
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
    /// Largest BOSH request body and WebSocket message, in bytes. A WebSocket message is one
    /// stanza (RFC 7395), so it is also cut at `limits.max_stanza_bytes`: `<policy-violation/>`
    /// and close code 1009.
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
    /// than `bosh_max_wait` and `websocket_ping_interval`, which keep live ones busy. Also how
    /// long a WebSocket frame or fragmented message may take to arrive once begun.
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

fn listener<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(deserializer)?;
    if text == "off" {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        // The commonest slip, a port past 65535, gets its own words.
        let port = text
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u64>().ok());
        match port {
            Some(port) if port > u64::from(u16::MAX) => serde::de::Error::custom(format!(
                "`{text}`: port {port} is out of range (1 to 65535)"
            )),
            _ => serde::de::Error::custom(format!(
                "`{text}` is not an address like \"127.0.0.1:5222\" or \"[::]:5222\", nor \"off\""
            )),
        }
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
            s2s: None,
            s2s_direct_tls: None,
            component: None,
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
            stanza_timeout: 60,
            unauthenticated_bytes: 64 * 1024,
            registrations_per_hour: 3,
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
