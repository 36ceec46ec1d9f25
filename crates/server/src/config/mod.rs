//! The TOML configuration: every key Salon understands, its default, and errors that name the
//! file, line and key. The reference for operators is `docs/configuration.md`; keep them in step.

mod check;
mod s2s;
mod sections;
#[cfg(test)]
mod tests;

pub use s2s::{ComponentConfig, S2sConfig, S2sPolicy};
use sections::default_guest_resume_timeout;
pub use sections::*;

use serde::Deserialize;
use std::fmt;
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
    /// Who may make an account from a client (XEP-0077 before login).
    pub registration: Registration,
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
    /// Personal eventing (XEP-0163) limits.
    pub pep: PepConfig,
    /// Push notifications (XEP-0357).
    pub push: PushConfig,
    pub log: LogConfig,
    /// Federation (RFC 6120 server-to-server); absent: off, stanzas to other domains bounce.
    pub s2s: Option<S2sConfig>,
    /// External components (XEP-0114) by domain: `[components."irc.example.org"]`.
    pub components: std::collections::BTreeMap<String, ComponentConfig>,
}
impl Default for Config {
    fn default() -> Self {
        Config {
            domain: "localhost".into(),
            data_dir: PathBuf::from("./salon-data"),
            admins: Vec::new(),
            registration: Registration::default(),
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
            pep: PepConfig::default(),
            push: PushConfig::default(),
            log: LogConfig::default(),
            s2s: None,
            components: Default::default(),
        }
    }
}

/// A listener address, or `"off"`: TOML has no null, and leaving the key out means the default./// A configuration error, precise enough to fix without reading code.
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
        if let Some(s2s) = &mut self.s2s {
            s2s.normalise();
        }
        self.components = std::mem::take(&mut self.components)
            .into_iter()
            .map(|(d, c)| (d.to_lowercase(), c))
            .collect();
    }

    /// Every domain this server answers for, each of which authenticates its own federation
    /// links: accounts, guests, rooms, uploads.
    pub fn hosted_domains(&self) -> Vec<&str> {
        let mut domains = vec![self.domain.as_str()];
        domains.extend(self.anonymous_domain());
        domains.extend(self.muc.as_ref().map(|m| m.domain.as_str()));
        domains.extend(self.upload.as_ref().map(|u| u.domain.as_str()));
        domains
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
