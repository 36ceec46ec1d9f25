//! Checking a configuration before it is used (every value in range, names that resolve, files
//! that exist) and describing it as `salon check` prints it.

use super::sections::is_type_pattern;
use super::*;
use std::net::SocketAddr;

impl Config {
    /// Checks that cannot be expressed in types. Returns the dotted key and the problem.
    pub(super) fn validate(&self) -> Result<(), (String, String)> {
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
        if let Some(s2s) = &self.s2s {
            s2s.validate()?;
        }
        for (domain, component) in &self.components {
            check_domain("components", domain)?;
            if hosts.iter().any(|(_, host)| host == domain) {
                return Err((
                    "components".into(),
                    format!("`{domain}` is already used by another host; each needs its own"),
                ));
            }
            if component.secret.len() < 8 {
                return Err((
                    "components".into(),
                    format!("the secret of `{domain}` is too short (8 characters at least)"),
                ));
            }
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
            ("limits.stanza_timeout", limits.stanza_timeout as usize, 1),
            (
                "limits.unauthenticated_bytes",
                limits.unauthenticated_bytes,
                4096,
            ),
            ("limits.connections_per_ip", limits.connections_per_ip, 1),
            (
                "limits.logins_per_minute",
                limits.logins_per_minute as usize,
                1,
            ),
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
                "limits.login_failures_per_account_per_minute",
                limits.login_failures_per_account_per_minute as usize,
                1,
            ),
            (
                "pep.max_publish_per_minute",
                self.pep.max_publish_per_minute as usize,
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
        self.validate_listeners_distinct()?;
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

    /// Two listeners on one port would fail at start (or, with an unspecified address beside
    /// a specific one, quietly split the traffic): caught here with both keys named.
    fn validate_listeners_distinct(&self) -> Result<(), (String, String)> {
        let listen = &self.listen;
        let all = [
            ("listen.c2s", listen.c2s),
            ("listen.c2s_direct_tls", listen.c2s_direct_tls),
            ("listen.http", listen.http),
            ("listen.https", listen.https),
            ("listen.metrics", listen.metrics),
        ];
        let set: Vec<(&str, SocketAddr)> = all
            .iter()
            .filter_map(|(key, addr)| addr.map(|a| (*key, a)))
            .collect();
        for (i, (key, addr)) in set.iter().enumerate() {
            // Port 0 asks the system for a free port: never a clash.
            if addr.port() == 0 {
                continue;
            }
            let clash = set[..i].iter().find(|(_, other)| {
                other.port() == addr.port()
                    && (other.ip() == addr.ip()
                        || other.ip().is_unspecified()
                        || addr.ip().is_unspecified())
            });
            if let Some((other_key, other)) = clash {
                return Err((
                    key.to_string(),
                    format!(
                        "{addr} is the same address as {other_key} ({other}); each listener needs its own port"
                    ),
                ));
            }
        }
        Ok(())
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

    /// A readable dump of the effective configuration, as `salon check` prints it.
    pub fn describe(&self) -> String {
        let opt = |a: &Option<SocketAddr>| a.map_or("off".to_string(), |a| a.to_string());
        let mut out = String::new();
        out.push_str(&format!("domain = {:?}\n", self.domain));
        out.push_str(&format!("data_dir = {:?}\n", self.data_dir.display()));
        out.push_str(&format!("admins = {:?}\n", self.admins));
        out.push_str(&format!(
            "registration = {:?}\n",
            self.registration.as_str()
        ));
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
                "muc.domain = {}\nmuc.create_rooms = \"{}\"\nmuc.max_history = {}\nmuc.archive_retention_days = {}\nmuc.max_occupants = {}\nmuc.rooms_per_hour = {}\nmuc.rooms_per_hour_per_address = {}\nmuc.max_archive_messages = {}\nmuc.max_archive_bytes = {}\nmuc.guest_room_archive_retention_hours = {}\nmuc.guest_slow_mode_seconds = {}\nmuc.ban_duration_seconds = {}\n",
                muc.domain,
                                muc.create_rooms.as_str(),
                muc.max_history,
                muc.archive_retention_days,
                muc.max_occupants,
                muc.rooms_per_hour,
                muc.rooms_per_hour_per_address,
                muc.max_archive_messages,
                muc.max_archive_bytes,
                muc.guest_room_archive_retention_hours,
                muc.guest_slow_mode_seconds,
                muc.ban_duration_seconds
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
            "limits.max_stanza_bytes = {}\nlimits.max_xml_depth = {}\nlimits.max_attributes = {}\nlimits.outbound_queue = {}\nlimits.login_failures_per_minute = {}\nlimits.login_failures_per_account_per_minute = {}\nlimits.connections_per_ip = {}\nlimits.logins_per_minute = {}\nlimits.offline_messages_per_user = {}\nlimits.stanzas_per_second = {}\nlimits.unacked_stanzas = {}\nlimits.unacked_bytes = {}\nlimits.write_timeout = {}\nlimits.stanza_timeout = {}\nlimits.unauthenticated_bytes = {}\nlimits.registrations_per_hour = {}\n",
            l.max_stanza_bytes, l.max_xml_depth, l.max_attributes, l.outbound_queue,
            l.login_failures_per_minute, l.login_failures_per_account_per_minute, l.connections_per_ip, l.logins_per_minute, l.offline_messages_per_user,
            l.stanzas_per_second, l.unacked_stanzas, l.unacked_bytes, l.write_timeout, l.stanza_timeout, l.unauthenticated_bytes,
            l.registrations_per_hour
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
        out.push_str(&format!(
            "pep.max_item_bytes = {}\npep.max_items_per_node = {}\npep.max_nodes_per_account = {}\n\
             pep.max_publish_per_minute = {}\n",
            self.pep.max_item_bytes,
            self.pep.max_items_per_node,
            self.pep.max_nodes_per_account,
            self.pep.max_publish_per_minute
        ));
        out.push_str(&format!(
            "listen.s2s = {}\nlisten.s2s_direct_tls = {}\nlisten.component = {}\n",
            opt(&self.listen.s2s),
            opt(&self.listen.s2s_direct_tls),
            opt(&self.listen.component)
        ));
        for domain in self.components.keys() {
            out.push_str(&format!("components.{domain:?} = (secret set)\n"));
        }
        match &self.s2s {
            None => out.push_str("s2s = off (no federation)\n"),
            Some(s2s) => out.push_str(&s2s.summary()),
        }
        out.push_str(&format!("push.include_body = {}\n", self.push.include_body));
        out.push_str(&format!(
            "push.per_service_per_minute = {}\n",
            self.push.per_service_per_minute
        ));
        out.push_str(&format!("log.level = {:?}\n", self.log.level));
        out
    }
}
