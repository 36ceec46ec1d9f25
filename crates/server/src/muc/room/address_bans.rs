//! Bans that stick (XEP-0045 §9.1 with the hardening issue's rule): banning a guest bans its
//! address in the room too (the IPv4 address, or the IPv6 /64) and its browser id (the
//! `urn:salon:visitor:0` secret of the built-in client, `visitor.rs`), since a guest gets a new
//! JID with every login. Both are listed under the guest's JID in the outcast list (§9.5) and
//! lifted with it. Only guests are held by an address or browser ban: accounts behind the same
//! NAT are not.
//!
//! A ban lasts for the duration the moderator names in the request (`<ban xmlns=
//! 'urn:salon:ban:0' duration='SECONDS'/>` inside the `<item/>`), else the room's
//! `salon#roomconfig_banduration`, else `muc.ban_duration_seconds` (0: until lifted). An
//! ended ban no longer counts wherever the room looks at affiliations, and the hourly sweep
//! forgets it.

use super::Room;
use crate::muc::config::Affiliation;
use crate::stanza::Bare;
use crate::stanza::{ns, Build, StanzaError};
use minidom::Element;
use std::net::IpAddr;

/// The part of an address a ban covers: the whole IPv4 address, or the IPv6 /64.
fn banned_prefix(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The duration a moderator asked for in one `<item/>` of a ban, if any.
pub(super) fn requested_duration(item: &Element) -> Result<Option<u64>, StanzaError> {
    let Some(ban) = item.get_child("ban", ns::SALON_BAN) else {
        return Ok(None);
    };
    match ban.attr("duration") {
        None => Ok(None),
        Some(text) => text.trim().parse::<u64>().map(Some).map_err(|_| {
            StanzaError::bad_request("the ban duration is a number of seconds (0: until lifted)")
        }),
    }
}

impl Room {
    fn is_guest(&self, jid: &jid::BareJid) -> bool {
        self.context.is_anonymous_host(jid.domain().as_str())
    }

    /// Whether the ban of `jid` (a bare JID as stored) has ended.
    pub(super) fn ban_ended(&self, jid: &str) -> bool {
        self.record
            .ban_expires
            .get(jid)
            .is_some_and(|&until| until <= now())
    }

    /// `jid` is banned: if it is a guest present in the room, its address and its browser id
    /// are banned too.
    pub(super) fn ban_guest_address(&mut self, jid: &jid::BareJid) {
        if !self.is_guest(jid) {
            return;
        }
        let Some(occupant) = self.occupants.iter().find(|o| &o.real == jid) else {
            return;
        };
        let address = occupant
            .handles
            .iter()
            .map(|h| banned_prefix(h.peer_ip))
            .next();
        let browser = occupant.browser.clone();
        if let Some(address) = address {
            tracing::info!(room = %self.jid, guest = %jid, %address, "guest's address banned");
            self.record
                .banned_addresses
                .insert(jid.to_string(), address);
        }
        if let Some(browser) = browser {
            tracing::info!(room = %self.jid, guest = %jid, "guest's browser banned");
            self.record.banned_browsers.insert(jid.to_string(), browser);
        }
    }

    /// The ban of `jid` just given lasts `requested` seconds, else the room's default, else
    /// the service's (0: until lifted).
    pub(super) fn set_ban_duration(&mut self, jid: &jid::BareJid, requested: Option<u64>) {
        let seconds = requested
            .or(self.record.config.ban_duration)
            .unwrap_or(self.service.settings.ban_duration_seconds);
        if seconds == 0 {
            self.record.ban_expires.remove(jid.as_str());
        } else {
            let until = now().saturating_add(i64::try_from(seconds).unwrap_or(i64::MAX));
            self.record.ban_expires.insert(jid.to_string(), until);
        }
    }

    /// `jid` is no longer banned: neither are the address and browser banned with it.
    pub(super) fn lift_address_ban(&mut self, jid: &jid::BareJid) {
        self.record.banned_addresses.remove(jid.as_str());
        self.record.banned_browsers.remove(jid.as_str());
        self.record.ban_expires.remove(jid.as_str());
    }

    /// Forget the bans that have ended; true if there were any (the record is to be saved).
    pub(super) fn forget_ended_bans(&mut self) -> bool {
        let ended: Vec<String> = self
            .record
            .ban_expires
            .keys()
            .filter(|jid| self.ban_ended(jid))
            .cloned()
            .collect();
        for jid in &ended {
            tracing::info!(room = %self.jid, %jid, "ban ended");
            if self.record.affiliations.get(jid) == Some(&Affiliation::Outcast) {
                self.record.affiliations.remove(jid);
            }
            self.record.banned_addresses.remove(jid);
            self.record.banned_browsers.remove(jid);
            self.record.ban_expires.remove(jid);
        }
        !ended.is_empty()
    }

    /// Whether a guest joining from `session` comes from a banned address.
    pub(super) fn joins_from_banned_address(&self, session: &jid::FullJid) -> bool {
        if !self.is_guest(&session.bare()) || self.record.banned_addresses.is_empty() {
            return false;
        }
        let Some(handle) = self.context.local_session(session) else {
            return false;
        };
        let prefix = banned_prefix(handle.peer_ip);
        self.record
            .banned_addresses
            .iter()
            .any(|(jid, banned)| *banned == prefix && !self.ban_ended(jid))
    }

    /// Whether a guest joining with the browser id `browser` comes from a banned browser.
    pub(super) fn joins_from_banned_browser(
        &self,
        session: &jid::FullJid,
        browser: Option<&str>,
    ) -> bool {
        let Some(browser) = browser else { return false };
        self.is_guest(&session.bare())
            && self
                .record
                .banned_browsers
                .iter()
                .any(|(jid, banned)| banned == browser && !self.ban_ended(jid))
    }

    /// What the outcast list shows of a ban besides the JID: when it ends and whether an
    /// address and a browser are banned with it. The address itself stays with the server
    /// (room admins are not the server's admins, and a guest's IP is not theirs to see).
    pub(super) fn ban_details(&self, jid: &str) -> Option<Element> {
        let expires = self.record.ban_expires.get(jid);
        let address = self.record.banned_addresses.contains_key(jid);
        let browser = self.record.banned_browsers.contains_key(jid);
        if expires.is_none() && !address && !browser {
            return None;
        }
        let mut ban = Build::new("ban", ns::SALON_BAN);
        if let Some(until) = expires.and_then(|&t| chrono::DateTime::from_timestamp(t, 0)) {
            ban = ban.attr(
                "expires",
                until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            );
        }
        if address {
            ban = ban.attr("address", "true");
        }
        if browser {
            ban = ban.attr("browser", "true");
        }
        Some(ban.build())
    }
}

#[cfg(test)]
mod tests {
    use super::banned_prefix;

    #[test]
    fn a_ban_covers_an_ipv4_address_or_an_ipv6_64() {
        assert_eq!(banned_prefix([192, 0, 2, 7].into()), "192.0.2.7");
        let v6: std::net::IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        assert_eq!(banned_prefix(v6), "2001:db8:1:2::/64");
        let mapped: std::net::IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(banned_prefix(mapped), "192.0.2.7");
    }
}
