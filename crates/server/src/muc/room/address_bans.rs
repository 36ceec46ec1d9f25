//! Bans that stick (XEP-0045 §9.1 with the hardening issue's rule): banning a guest bans its
//! address in the room too (the IPv4 address, or the IPv6 /64), since a guest gets a new JID
//! with every login. The ban is listed under the guest's JID in the outcast list and lifted
//! with it. Only guests are held by an address ban: accounts behind the same NAT are not.

use super::Room;
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

impl Room {
    fn is_guest(&self, jid: &jid::BareJid) -> bool {
        self.context.is_anonymous_host(jid.domain().as_str())
    }

    /// `jid` is banned: if it is a guest present in the room, its address is banned too.
    pub(super) fn ban_guest_address(&mut self, jid: &jid::BareJid) {
        if !self.is_guest(jid) {
            return;
        }
        let address = self
            .occupants
            .iter()
            .filter(|o| &o.real == jid)
            .flat_map(|o| o.handles.iter())
            .map(|h| banned_prefix(h.peer_ip))
            .next();
        if let Some(address) = address {
            tracing::info!(room = %self.jid, guest = %jid, %address, "guest's address banned");
            self.record
                .banned_addresses
                .insert(jid.to_string(), address);
        }
    }

    /// `jid` is no longer banned: neither is the address banned with it.
    pub(super) fn lift_address_ban(&mut self, jid: &jid::BareJid) {
        self.record.banned_addresses.remove(jid.as_str());
    }

    /// Whether a guest joining from `session` comes from a banned address.
    pub(super) fn joins_from_banned_address(&self, session: &jid::FullJid) -> bool {
        if !self.is_guest(&session.to_bare()) || self.record.banned_addresses.is_empty() {
            return false;
        }
        let Some(handle) = self.context.local_session(session) else {
            return false;
        };
        let prefix = banned_prefix(handle.peer_ip);
        self.record.banned_addresses.values().any(|b| *b == prefix)
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
