//! Where a remote domain's server is (RFC 6120 §3.2, RFC 2782, XEP-0368): SRV records for
//! `_xmpps-server._tcp` (direct TLS) and `_xmpp-server._tcp` (STARTTLS), ordered by priority and
//! weighted at random within one priority; without SRV records, the domain itself on port 5269
//! through the system resolver, so that `/etc/hosts` counts as for every other program. SRV
//! queries wait at most `s2s.dns_timeout_seconds`: an unreachable name server must not hold up
//! the fallback.

use hickory_resolver::TokioResolver;
use rand::Rng;
use std::net::SocketAddr;
use std::time::Duration;

/// One place to try, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    /// XEP-0368: TLS from the first byte rather than STARTTLS.
    pub direct_tls: bool,
}

/// One SRV answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SrvRecord {
    pub priority: u16,
    pub weight: u16,
    pub target: String,
    pub port: u16,
    pub direct_tls: bool,
}

/// The targets for `domain`: the configured override, the SRV records, or the domain on 5269.
/// An SRV answer of `.` alone says the service is not offered (RFC 2782): no targets.
pub async fn targets(
    domain: &str,
    overrides: &std::collections::BTreeMap<String, String>,
    resolver: Option<&TokioResolver>,
    timeout: Duration,
) -> Vec<Target> {
    if let Some(host) = overrides.get(domain) {
        if let Some((host, port)) = host.rsplit_once(':') {
            if let Ok(port) = port.parse() {
                return vec![Target {
                    host: host.trim_matches(['[', ']']).to_string(),
                    port,
                    direct_tls: false,
                }];
            }
        }
    }
    let records = match resolver {
        Some(resolver) => srv_records(resolver, domain, timeout).await,
        None => Vec::new(),
    };
    if records.is_empty() {
        return vec![Target {
            host: domain.to_string(),
            port: 5269,
            direct_tls: false,
        }];
    }
    order(records, &mut rand::thread_rng())
        .into_iter()
        .filter(|r| r.target != ".")
        .map(|r| Target {
            host: r.target,
            port: r.port,
            direct_tls: r.direct_tls,
        })
        .collect()
}

/// The resolver for SRV lookups: the system's configuration (`/etc/resolv.conf`), or one name
/// server (`s2s.nameserver`). `None` when the system has no usable configuration.
pub fn resolver(nameserver: Option<SocketAddr>) -> Option<TokioResolver> {
    use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig};
    use hickory_resolver::name_server::TokioConnectionProvider;
    let mut builder = match nameserver {
        Some(address) => TokioResolver::builder_with_config(
            ResolverConfig::from_parts(
                None,
                Vec::new(),
                NameServerConfigGroup::from_ips_clear(&[address.ip()], address.port(), true),
            ),
            TokioConnectionProvider::default(),
        ),
        None => match TokioResolver::builder_tokio() {
            Ok(builder) => builder,
            Err(e) => {
                tracing::warn!(error = %e, "s2s: no system DNS configuration; SRV lookups off");
                return None;
            }
        },
    };
    builder.options_mut().attempts = 1;
    Some(builder.build())
}

/// Both SRV services, asked at once, within `timeout`. Failures and timeouts give nothing.
async fn srv_records(resolver: &TokioResolver, domain: &str, timeout: Duration) -> Vec<SrvRecord> {
    let lookup = |service: &'static str, direct_tls: bool| {
        let name = format!("{service}._tcp.{domain}.");
        async move {
            match tokio::time::timeout(timeout, resolver.srv_lookup(name.as_str())).await {
                Ok(Ok(answer)) => answer
                    .iter()
                    .map(|srv| SrvRecord {
                        priority: srv.priority(),
                        weight: srv.weight(),
                        target: srv.target().to_utf8().trim_end_matches('.').to_string()
                            + if srv.target().is_root() { "." } else { "" },
                        port: srv.port(),
                        direct_tls,
                    })
                    .collect(),
                Ok(Err(e)) => {
                    tracing::debug!(%name, error = %e, "s2s: no SRV records");
                    Vec::new()
                }
                Err(_) => {
                    tracing::debug!(%name, "s2s: SRV lookup timed out");
                    Vec::new()
                }
            }
        }
    };
    let (direct, starttls) =
        tokio::join!(lookup("_xmpps-server", true), lookup("_xmpp-server", false));
    direct.into_iter().chain(starttls).collect()
}

/// RFC 2782 ordering: lowest priority first; within a priority, a weighted random draw
/// (weight 0 rarely first), repeated until none are left. At equal priority direct TLS
/// records come first (XEP-0368 §2.1 leaves the order to the client; it saves a round trip).
pub fn order(mut records: Vec<SrvRecord>, rng: &mut impl Rng) -> Vec<SrvRecord> {
    records.sort_by_key(|r| (r.priority, !r.direct_tls));
    let mut ordered = Vec::with_capacity(records.len());
    while !records.is_empty() {
        let priority = records[0].priority;
        let same = records
            .iter()
            .take_while(|r| r.priority == priority)
            .count();
        let mut group: Vec<SrvRecord> = records.drain(..same).collect();
        // Zero-weight records first so that they get a small chance (RFC 2782).
        group.sort_by_key(|r| r.weight != 0);
        while !group.is_empty() {
            let total: u32 = group.iter().map(|r| u32::from(r.weight)).sum();
            let pick = if total == 0 {
                0
            } else {
                let draw = rng.gen_range(0..=total);
                let mut running = 0u32;
                group
                    .iter()
                    .position(|r| {
                        running += u32::from(r.weight);
                        running >= draw
                    })
                    .unwrap_or(0)
            };
            ordered.push(group.remove(pick));
        }
    }
    ordered
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn record(priority: u16, weight: u16, target: &str) -> SrvRecord {
        SrvRecord {
            priority,
            weight,
            target: target.into(),
            port: 5269,
            direct_tls: false,
        }
    }

    #[test]
    fn lower_priority_always_comes_first() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..50 {
            let ordered = order(
                vec![
                    record(20, 100, "c"),
                    record(10, 1, "a"),
                    record(10, 1, "b"),
                    record(30, 0, "d"),
                ],
                &mut rng,
            );
            let names: Vec<_> = ordered.iter().map(|r| r.target.as_str()).collect();
            assert!(names[..2].contains(&"a") && names[..2].contains(&"b"));
            assert_eq!(names[2..], ["c", "d"]);
        }
    }

    #[test]
    fn weight_decides_how_often_a_target_is_first() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut heavy_first = 0;
        for _ in 0..1000 {
            let ordered = order(
                vec![record(5, 90, "heavy"), record(5, 10, "light")],
                &mut rng,
            );
            if ordered[0].target == "heavy" {
                heavy_first += 1;
            }
        }
        assert!((800..=980).contains(&heavy_first), "{heavy_first}");
    }

    #[tokio::test]
    async fn overrides_win_and_no_srv_falls_back_to_port_5269() {
        let mut overrides = std::collections::BTreeMap::new();
        overrides.insert("pinned.test".to_string(), "127.0.0.9:5999".to_string());
        let pinned = targets("pinned.test", &overrides, None, Duration::from_secs(1)).await;
        assert_eq!(pinned[0].port, 5999);
        assert_eq!(pinned[0].host, "127.0.0.9");
        let started = std::time::Instant::now();
        let resolver = resolver(None);
        let fallback = targets(
            "nothing.invalid",
            &overrides,
            resolver.as_ref(),
            Duration::from_secs(1),
        )
        .await;
        assert_eq!(
            fallback,
            vec![Target {
                host: "nothing.invalid".into(),
                port: 5269,
                direct_tls: false
            }]
        );
        assert!(started.elapsed() < Duration::from_secs(3));
    }
}
