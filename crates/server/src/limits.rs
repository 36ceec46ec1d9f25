//! What per-address limits count by, and a counter of events in a sliding window, shared by
//! the limits on logins, connections, room creation and upload slots.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

/// The address a per-address limit counts under: an IPv4 address as it is, an IPv6 address as
/// the /64 it belongs to. One subscriber line or host gets a whole /64 (RFC 6177), so counting
/// exact IPv6 addresses would let one attacker be 2^64 clients. An IPv4 address mapped into
/// IPv6 counts as itself.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let network = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(network))
            }
        },
    }
}

/// At most `limit` events per key in any `window`. Keys whose events are all older than the
/// window are forgotten, so the table stays as small as the set of recent actors.
pub struct RateWindow<K> {
    limit: usize,
    window: Duration,
    events: dashmap::DashMap<K, VecDeque<Instant>>,
}

impl<K: std::hash::Hash + Eq + Clone> RateWindow<K> {
    /// `limit` 0 means no limit.
    pub fn new(limit: usize, window: Duration) -> RateWindow<K> {
        RateWindow {
            limit,
            window,
            events: dashmap::DashMap::new(),
        }
    }

    /// Counts one event for `key` if it is within the limit; false (and nothing counted) if
    /// `key` had `limit` events in the last window already.
    pub fn try_take(&self, key: &K) -> bool {
        if self.limit == 0 {
            return true;
        }
        let now = Instant::now();
        if self.events.len() > 4096 {
            let window = self.window;
            self.events.retain(|_, recent| {
                recent
                    .back()
                    .is_some_and(|t| now.duration_since(*t) <= window)
            });
        }
        let mut recent = self.events.entry(key.clone()).or_default();
        while recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.window)
        {
            recent.pop_front();
        }
        if recent.len() >= self.limit {
            return false;
        }
        recent.push_back(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_addresses_of_one_64_count_as_one() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:1:2:3".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_eq!(address_key(a), "2001:db8:1:2::".parse::<IpAddr>().unwrap());
        assert_ne!(address_key(a), address_key(other));
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(address_key(v4), v4);
        assert_eq!(address_key("::ffff:192.0.2.7".parse().unwrap()), v4);
    }

    #[test]
    fn a_window_admits_its_limit_per_key() {
        let window = RateWindow::new(3, Duration::from_secs(60));
        let attacker = address_key("2001:db8::1".parse().unwrap());
        for _ in 0..3 {
            assert!(window.try_take(&attacker));
        }
        assert!(!window.try_take(&address_key("2001:db8::2".parse().unwrap())));
        assert!(window.try_take(&address_key("2001:db8:0:1::1".parse().unwrap())));
        let unlimited = RateWindow::new(0, Duration::from_secs(60));
        assert!((0..100).all(|_| unlimited.try_take(&1)));
    }

    #[test]
    fn events_older_than_the_window_no_longer_count() {
        let window = RateWindow::new(1, Duration::from_millis(20));
        assert!(window.try_take(&"k"));
        assert!(!window.try_take(&"k"));
        std::thread::sleep(Duration::from_millis(30));
        assert!(window.try_take(&"k"));
    }
}
