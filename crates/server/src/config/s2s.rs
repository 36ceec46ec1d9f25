//! The `[s2s]` section: federation with other XMPP servers (RFC 6120 server-to-server, XEP-0178
//! certificates, XEP-0220 dialback). Absent means federation is off.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// How a remote domain must prove who it is.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum S2sPolicy {
    /// A certificate that chains to a trusted root and names the domain (XEP-0178), both
    /// ways: SASL EXTERNAL, or dialback over a TLS session whose certificate checks out.
    RequireValidCertificate,
    /// As above when the certificate checks out; otherwise Server Dialback (XEP-0220) over
    /// encrypted but unverified TLS.
    AllowDialback,
    /// No streams with this domain in either direction.
    Refuse,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S2sConfig {
    /// The policy for domains not listed in `domain_policy`.
    pub default_policy: S2sPolicy,
    /// Policy per remote domain.
    pub domain_policy: BTreeMap<String, S2sPolicy>,
    /// Extra trust anchors (PEM) besides Mozilla's roots, for a private CA.
    pub ca_file: Option<PathBuf>,
    /// Domains refused in both directions, whatever their policy.
    pub blocked_domains: Vec<String>,
    /// Seconds to wait for SRV answers before falling back to the system resolver (port 5269).
    pub dns_timeout_seconds: u64,
    /// Seconds to connect, negotiate TLS and authenticate a stream before giving up.
    pub connect_timeout_seconds: u64,
    /// Seconds without traffic after which a stream is closed (reopened on demand).
    pub idle_timeout_seconds: u64,
    /// Seconds an outgoing stream may be quiet before Salon pings the peer on it (XEP-0199 §4.3).
    pub ping_after_idle_seconds: u64,
    /// Seconds a ping waits for its answer before the stream is closed as dead.
    pub ping_timeout_seconds: u64,
    /// Seconds without anything written on an authenticated incoming stream before a
    /// whitespace keepalive (RFC 6120 §4.6.4); also how long written bytes may stay
    /// unacknowledged by the peer's TCP, twice over, before the connection counts as dead.
    pub keepalive_seconds: u64,
    /// Stanzas held per remote domain while its stream is being set up.
    pub queue_stanzas: usize,
    /// Largest stanza accepted from a remote server, in bytes.
    pub max_stanza_bytes: usize,
    /// Stanzas per second accepted from one remote domain (summed over its streams).
    pub stanzas_per_second: u32,
    /// Incoming streams at once from one remote domain.
    pub max_incoming_per_domain: usize,
    /// Incoming streams at once in all (authenticated or not).
    pub max_incoming: usize,
    /// Domain pairs (remote sender, local target) one incoming stream may authenticate
    /// (XEP-0220 §8 multiplexing); more are refused with a `<resource-constraint/>` dialback
    /// error, so that one connection cannot make the server hold pairs without bound.
    pub max_domain_pairs_per_stream: usize,
    /// Outgoing streams (open or being set up) at once in all, one per domain pair.
    pub max_outgoing: usize,
    /// Where some domains live, overriding DNS: `"domain" = "host:port"`, for private
    /// deployments and tests.
    pub hosts: BTreeMap<String, String>,
    /// The DNS server for SRV lookups (`"ip:port"`), instead of the system's configuration.
    pub nameserver: Option<std::net::SocketAddr>,
}

impl Default for S2sConfig {
    fn default() -> Self {
        S2sConfig {
            default_policy: S2sPolicy::RequireValidCertificate,
            domain_policy: BTreeMap::new(),
            ca_file: None,
            blocked_domains: Vec::new(),
            dns_timeout_seconds: 2,
            connect_timeout_seconds: 15,
            idle_timeout_seconds: 600,
            ping_after_idle_seconds: 120,
            ping_timeout_seconds: 30,
            keepalive_seconds: 60,
            queue_stanzas: 256,
            max_stanza_bytes: 256 * 1024,
            stanzas_per_second: 1000,
            max_incoming_per_domain: 8,
            max_incoming: 512,
            max_domain_pairs_per_stream: 100,
            max_outgoing: 1024,
            hosts: BTreeMap::new(),
            nameserver: None,
        }
    }
}

impl S2sConfig {
    /// The policy for `domain`: refused when blocked, else its own or the default.
    pub fn policy_for(&self, domain: &str) -> S2sPolicy {
        if self.blocked_domains.iter().any(|d| d == domain) {
            return S2sPolicy::Refuse;
        }
        self.domain_policy
            .get(domain)
            .copied()
            .unwrap_or(self.default_policy)
    }

    /// The effective settings, one `key = value` a line, for `salon check`.
    pub(super) fn summary(&self) -> String {
        let policy = |p: S2sPolicy| match p {
            S2sPolicy::RequireValidCertificate => "require_valid_certificate",
            S2sPolicy::AllowDialback => "allow_dialback",
            S2sPolicy::Refuse => "refuse",
        };
        let mut out = format!(
            "s2s.default_policy = {:?}\ns2s.ca_file = {}\ns2s.blocked_domains = {:?}\n",
            policy(self.default_policy),
            self.ca_file
                .as_ref()
                .map(|p| format!("{:?}", p.display()))
                .unwrap_or_else(|| "none (system roots only)".into()),
            self.blocked_domains
        );
        for (domain, p) in &self.domain_policy {
            out.push_str(&format!(
                "s2s.domain_policy.{domain:?} = {:?}\n",
                policy(*p)
            ));
        }
        if let Some(nameserver) = self.nameserver {
            out.push_str(&format!("s2s.nameserver = {nameserver}\n"));
        }
        for (domain, host) in &self.hosts {
            out.push_str(&format!("s2s.hosts.{domain:?} = {host:?}\n"));
        }
        out.push_str(&format!(
            "s2s.dns_timeout_seconds = {}\ns2s.connect_timeout_seconds = {}\ns2s.idle_timeout_seconds = {}\ns2s.ping_after_idle_seconds = {}\ns2s.ping_timeout_seconds = {}\ns2s.keepalive_seconds = {}\ns2s.queue_stanzas = {}\ns2s.max_stanza_bytes = {}\ns2s.stanzas_per_second = {}\ns2s.max_incoming_per_domain = {}\ns2s.max_incoming = {}\ns2s.max_domain_pairs_per_stream = {}\ns2s.max_outgoing = {}\n",
            self.dns_timeout_seconds,
            self.connect_timeout_seconds,
            self.idle_timeout_seconds,
            self.ping_after_idle_seconds,
            self.ping_timeout_seconds,
            self.keepalive_seconds,
            self.queue_stanzas,
            self.max_stanza_bytes,
            self.stanzas_per_second,
            self.max_incoming_per_domain,
            self.max_incoming,
            self.max_domain_pairs_per_stream,
            self.max_outgoing
        ));
        out
    }

    pub(super) fn normalise(&mut self) {
        for domain in &mut self.blocked_domains {
            *domain = domain.to_lowercase();
        }
        self.domain_policy = std::mem::take(&mut self.domain_policy)
            .into_iter()
            .map(|(d, p)| (d.to_lowercase(), p))
            .collect();
        self.hosts = std::mem::take(&mut self.hosts)
            .into_iter()
            .map(|(d, h)| (d.to_lowercase(), h))
            .collect();
    }

    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        let is_domain = |d: &str| jid::BareJid::new(d).is_ok_and(|j| j.node().is_none());
        for domain in &self.blocked_domains {
            if !is_domain(domain) {
                return Err((
                    "s2s.blocked_domains".into(),
                    format!("`{domain}` is not a valid domain name"),
                ));
            }
        }
        for domain in self.domain_policy.keys() {
            if !is_domain(domain) {
                return Err((
                    "s2s.domain_policy".into(),
                    format!("`{domain}` is not a valid domain name"),
                ));
            }
        }
        for (domain, host) in &self.hosts {
            if !is_domain(domain) || !host.contains(':') {
                return Err((
                    "s2s.hosts".into(),
                    format!("`{domain}` = `{host}`: want a domain and a \"host:port\""),
                ));
            }
        }
        if let Some(ca) = &self.ca_file {
            if !ca.is_file() {
                return Err((
                    "s2s.ca_file".into(),
                    format!("{} is not a readable file", ca.display()),
                ));
            }
        }
        for (key, value, min, max) in [
            (
                "s2s.dns_timeout_seconds",
                self.dns_timeout_seconds as usize,
                1,
                60,
            ),
            (
                "s2s.connect_timeout_seconds",
                self.connect_timeout_seconds as usize,
                2,
                300,
            ),
            (
                "s2s.idle_timeout_seconds",
                self.idle_timeout_seconds as usize,
                10,
                86_400,
            ),
            (
                "s2s.ping_after_idle_seconds",
                self.ping_after_idle_seconds as usize,
                1,
                86_400,
            ),
            (
                "s2s.ping_timeout_seconds",
                self.ping_timeout_seconds as usize,
                1,
                3_600,
            ),
            (
                "s2s.keepalive_seconds",
                self.keepalive_seconds as usize,
                1,
                3_600,
            ),
            ("s2s.queue_stanzas", self.queue_stanzas, 1, 100_000),
            (
                "s2s.max_stanza_bytes",
                self.max_stanza_bytes,
                10_000,
                16 << 20,
            ),
            (
                "s2s.stanzas_per_second",
                self.stanzas_per_second as usize,
                1,
                1_000_000,
            ),
            (
                "s2s.max_incoming_per_domain",
                self.max_incoming_per_domain,
                1,
                1000,
            ),
            ("s2s.max_incoming", self.max_incoming, 1, 100_000),
            (
                "s2s.max_domain_pairs_per_stream",
                self.max_domain_pairs_per_stream,
                1,
                10_000,
            ),
            ("s2s.max_outgoing", self.max_outgoing, 1, 100_000),
        ] {
            if value < min || value > max {
                return Err((key.into(), format!("must be between {min} and {max}")));
            }
        }
        Ok(())
    }
}

/// One external component (XEP-0114): a gateway or bot that connects to `listen.component` and
/// serves its own domain.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentConfig {
    /// The shared secret of the handshake.
    pub secret: String,
}
