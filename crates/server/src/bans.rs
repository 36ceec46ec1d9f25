//! Server-wide bans (`salon ban add|list|remove`): addresses, networks and accounts refused when
//! they open a stream and when they log in. The list is in storage, which the command line
//! writes while the server runs; with no channel from the command to the server, the server
//! reads the list again when its copy is older than [`REFRESH`] at the moment someone connects
//! or logs in. Sessions already logged in are not ended by a new ban.

use crate::stanza::Bare;
use crate::storage::{Ban, BanStore};
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// How long a ban added from the command line may take to reach connections and logins.
pub const REFRESH: Duration = Duration::from_secs(2);

/// What a ban applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BanTarget {
    /// Every address in the network `address/prefix`; an IPv6 address alone means its /64.
    Network { address: IpAddr, prefix: u8 },
    /// An account (`user@domain`), or every account of a domain (`domain`).
    Jid(jid::BareJid),
}

impl BanTarget {
    /// Reads what an operator typed: an IP address, a network in CIDR notation, or a bare JID.
    pub fn parse(text: &str) -> Result<BanTarget, String> {
        let text = text.trim();
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        if let Ok(address) = address.parse::<IpAddr>() {
            // An IPv4 address mapped into IPv6 is banned as itself.
            let address = match address {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
                v4 => v4,
            };
            let max = if address.is_ipv4() { 32 } else { 128 };
            let prefix = match prefix {
                Some(prefix) => prefix
                    .parse::<u8>()
                    .ok()
                    .filter(|p| *p <= max)
                    .ok_or_else(|| format!("`{text}`: the prefix length must be 0 to {max}"))?,
                // One IPv6 host or subscriber has a whole /64: ban that.
                None if address.is_ipv6() => 64,
                None => max,
            };
            return Ok(BanTarget::Network {
                address: mask(address, prefix),
                prefix,
            });
        }
        match jid::Jid::new(text) {
            Ok(jid) if jid.resource().is_none() => Ok(BanTarget::Jid(jid.bare())),
            Ok(_) => Err(format!("`{text}`: ban a bare JID, without a resource")),
            Err(_) => Err(format!(
                "`{text}` is neither an IP address, a network (address/length) nor a JID"
            )),
        }
    }

    /// The target as stored and listed, the same for every way of writing it.
    pub fn normalised(&self) -> String {
        match self {
            BanTarget::Network { address, prefix } => {
                let host = if address.is_ipv4() { 32 } else { 128 };
                if *prefix == host {
                    address.to_string()
                } else {
                    format!("{address}/{prefix}")
                }
            }
            BanTarget::Jid(jid) => jid.to_string(),
        }
    }

    fn covers_address(&self, ip: IpAddr) -> bool {
        let BanTarget::Network { address, prefix } = self else {
            return false;
        };
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        ip.is_ipv4() == address.is_ipv4() && mask(ip, *prefix) == *address
    }

    fn covers_account(&self, account: &jid::BareJid) -> bool {
        match self {
            BanTarget::Jid(jid) if jid.node().is_none() => jid.domain() == account.domain(),
            BanTarget::Jid(jid) => jid == account,
            BanTarget::Network { .. } => false,
        }
    }
}

fn mask(address: IpAddr, prefix: u8) -> IpAddr {
    match address {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let kept = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((bits & kept).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let kept = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((bits & kept).into())
        }
    }
}

/// The server's copy of the ban list, read again from storage when older than [`REFRESH`].
pub struct BanList {
    store: Arc<dyn BanStore>,
    copy: RwLock<Option<(Instant, Arc<Vec<BanTarget>>)>>,
    /// One reader at a time refreshes; the others wait for its result.
    refreshing: tokio::sync::Mutex<()>,
}

impl BanList {
    pub fn new(store: Arc<dyn BanStore>) -> BanList {
        BanList {
            store,
            copy: RwLock::new(None),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    fn fresh_copy(&self) -> Option<Arc<Vec<BanTarget>>> {
        let copy = self.copy.read().ok()?;
        let (read_at, targets) = copy.as_ref()?;
        (read_at.elapsed() < REFRESH).then(|| targets.clone())
    }

    /// The bans in force, from a copy at most [`REFRESH`] old. If storage fails, the last copy
    /// stays in force (logged).
    async fn targets(&self) -> Arc<Vec<BanTarget>> {
        if let Some(targets) = self.fresh_copy() {
            return targets;
        }
        let _refreshing = self.refreshing.lock().await;
        if let Some(targets) = self.fresh_copy() {
            return targets;
        }
        let now = chrono::Utc::now().timestamp();
        let targets = match self.store.bans(now).await {
            Ok(bans) => Arc::new(bans.iter().filter_map(read_stored).collect()),
            Err(e) => {
                tracing::error!(error = %e, "reading the ban list; keeping the last one");
                self.copy
                    .read()
                    .ok()
                    .and_then(|copy| copy.as_ref().map(|(_, t)| t.clone()))
                    .unwrap_or_default()
            }
        };
        if let Ok(mut copy) = self.copy.write() {
            *copy = Some((Instant::now(), targets.clone()));
        }
        targets
    }

    /// Whether connections and logins from `ip` are refused.
    pub async fn refuses_address(&self, ip: IpAddr) -> bool {
        let targets = self.targets().await;
        !targets.is_empty() && targets.iter().any(|t| t.covers_address(ip))
    }

    /// Whether `account` may not log in.
    pub async fn refuses_account(&self, account: &jid::BareJid) -> bool {
        self.targets()
            .await
            .iter()
            .any(|t| t.covers_account(account))
    }
}

fn read_stored(ban: &Ban) -> Option<BanTarget> {
    match BanTarget::parse(&ban.target) {
        Ok(target) => Some(target),
        Err(e) => {
            tracing::warn!(target = %ban.target, error = %e, "unreadable ban skipped");
            None
        }
    }
}

/// Parses a duration as the command line takes it: a number with a unit, `30s`, `15m`, `2h`,
/// `7d`, `1w`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 30s, 15m, 2h, 7d or 1w"))?;
    let unit = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(format!("`{text}`: the unit is one of s, m, h, d, w")),
    };
    Ok(Duration::from_secs(number.saturating_mul(unit)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::memory::MemoryStorage;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn targets_are_read_and_written_one_way() {
        let cases = [
            ("192.0.2.7", "192.0.2.7"),
            ("::ffff:192.0.2.7", "192.0.2.7"),
            ("192.0.2.7/24", "192.0.2.0/24"),
            ("2001:db8::1:2:3:4", "2001:db8::/64"),
            ("2001:db8:aa::1/48", "2001:db8:aa::/48"),
            ("Mallory@Example.org", "mallory@example.org"),
            ("example.org", "example.org"),
        ];
        for (typed, stored) in cases {
            let target = BanTarget::parse(typed).unwrap();
            assert_eq!(target.normalised(), stored, "{typed}");
            assert_eq!(BanTarget::parse(stored).unwrap(), target, "{stored}");
        }
        for bad in [
            "192.0.2.7/33",
            "2001:db8::/129",
            "a@b/resource",
            "not a jid@",
        ] {
            assert!(BanTarget::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_ipv6_address_bans_its_64() {
        let target = BanTarget::parse("2001:db8:1:2::99").unwrap();
        assert!(target.covers_address(ip("2001:db8:1:2:ffff::1")));
        assert!(!target.covers_address(ip("2001:db8:1:3::1")));
        let v4 = BanTarget::parse("192.0.2.0/24").unwrap();
        assert!(v4.covers_address(ip("192.0.2.200")));
        assert!(v4.covers_address(ip("::ffff:192.0.2.1")));
        assert!(!v4.covers_address(ip("192.0.3.1")));
        assert!(!v4.covers_address(ip("2001:db8::1")));
    }

    #[test]
    fn a_jid_bans_an_account_and_a_domain_all_of_its_accounts() {
        let account = jid::BareJid::new("mallory@example.org").unwrap();
        let other = jid::BareJid::new("alice@example.org").unwrap();
        let one = BanTarget::parse("mallory@example.org").unwrap();
        assert!(one.covers_account(&account) && !one.covers_account(&other));
        let all = BanTarget::parse("example.org").unwrap();
        assert!(all.covers_account(&account) && all.covers_account(&other));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        assert!(parse_duration("2 years").is_err());
        assert!(parse_duration("h").is_err());
    }

    #[tokio::test]
    async fn the_list_is_read_again_after_the_refresh_time() {
        let storage = Arc::new(MemoryStorage::new());
        let bans = BanList::new(storage.clone());
        assert!(!bans.refuses_address(ip("192.0.2.7")).await);
        let ban = Ban {
            target: "192.0.2.7".into(),
            created: 0,
            until: None,
        };
        storage.add_ban(&ban).await.unwrap();
        // Until the copy is stale, the old list holds.
        assert!(!bans.refuses_address(ip("192.0.2.7")).await);
        if let Ok(mut copy) = bans.copy.write() {
            *copy = None;
        }
        assert!(bans.refuses_address(ip("192.0.2.7")).await);
        assert!(!bans.refuses_address(ip("192.0.2.8")).await);
    }
}
