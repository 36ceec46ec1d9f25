//! The limit on notifications to one app server (`push.per_service_per_minute`): a token
//! bucket per push service JID, with bursts of a tenth of the minute's allowance. What is over
//! the limit is not dropped but coalesced: the latest notification of each (sender, node) waits
//! and replaces the one before it, so a phone hears once, with the latest message count,
//! instead of once per message; a task sends what waits as the rate allows. An away user in a
//! busy room cannot make Salon flood a push service.

use minidom::Element;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How a notification held back is sent later (the account side routes through the server,
/// a room through its service context).
pub type Route = Arc<dyn Fn(Element) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Notifications one push service may have waiting (one per registration, in practice);
/// beyond it the newest is dropped, with a log line.
const MAX_WAITING: usize = 4096;
/// Push services tracked before idle ones are forgotten.
const MAX_SERVICES: usize = 10_000;

enum Decision {
    Now(Element),
    /// Waits; a task already sends what waits.
    Held,
    /// Waits; the first to, so a task must start.
    HeldFirst,
}

/// In the server-wide extension slots; installed when the server starts.
pub struct Throttle {
    per_minute: u32,
    services: Mutex<HashMap<String, Service>>,
}

struct Service {
    tokens: f64,
    refilled: Instant,
    /// Held back, by arrival; `keys` finds the entry of a (sender, node).
    waiting: BTreeMap<u64, (String, Element)>,
    keys: HashMap<String, u64>,
    next: u64,
    /// A task is sending what waits.
    flushing: bool,
    /// Notifications folded into a later one since the limit was reached.
    coalesced: u64,
}

impl Throttle {
    /// `per_minute` 0: no limit.
    pub fn new(per_minute: u32) -> Throttle {
        Throttle {
            per_minute,
            services: Mutex::new(HashMap::new()),
        }
    }

    fn burst(&self) -> f64 {
        f64::from((self.per_minute / 10).max(1))
    }

    fn per_second(&self) -> f64 {
        f64::from(self.per_minute) / 60.0
    }

    fn refill(&self, service: &mut Service, now: Instant) {
        let elapsed = now
            .saturating_duration_since(service.refilled)
            .as_secs_f64();
        service.tokens = (service.tokens + elapsed * self.per_second()).min(self.burst());
        service.refilled = now;
    }

    /// Send `notification` to the push service `service` now if its rate allows, else keep
    /// it as the latest for `key` (a sender and node) and send it when the rate allows.
    /// `route` is asked for only when something has to wait.
    pub async fn send(
        self: &Arc<Self>,
        service: &str,
        key: String,
        notification: Element,
        route: impl FnOnce() -> Route,
    ) {
        if self.per_minute == 0 {
            return route()(notification).await;
        }
        let now = Instant::now();
        let decision = {
            let mut services = self.services.lock().unwrap_or_else(PoisonError::into_inner);
            if services.len() >= MAX_SERVICES && !services.contains_key(service) {
                services.retain(|_, s| s.flushing || now.duration_since(s.refilled).as_secs() < 60);
            }
            let state = services
                .entry(service.to_string())
                .or_insert_with(|| Service {
                    tokens: self.burst(),
                    refilled: now,
                    waiting: BTreeMap::new(),
                    keys: HashMap::new(),
                    next: 0,
                    flushing: false,
                    coalesced: 0,
                });
            self.refill(state, now);
            if state.waiting.is_empty() && state.tokens >= 1.0 {
                state.tokens -= 1.0;
                Decision::Now(notification)
            } else {
                if let Some(seq) = state.keys.get(&key) {
                    // The later notification says all the earlier one did, and more.
                    if let Some(entry) = state.waiting.get_mut(seq) {
                        entry.1 = notification;
                    }
                    state.coalesced += 1;
                } else if state.waiting.len() >= MAX_WAITING {
                    tracing::warn!(service, "push notifications dropped: too many waiting");
                } else {
                    let seq = state.next;
                    state.next += 1;
                    state.keys.insert(key.clone(), seq);
                    state.waiting.insert(seq, (key, notification));
                }
                if state.flushing {
                    Decision::Held
                } else {
                    state.flushing = true;
                    tracing::info!(
                        service,
                        per_minute = self.per_minute,
                        "push service at its rate limit: notifications are coalesced"
                    );
                    Decision::HeldFirst
                }
            }
        };
        // Sent or spawned outside the lock.
        match decision {
            Decision::Now(notification) => route()(notification).await,
            Decision::Held => {}
            Decision::HeldFirst => {
                tokio::spawn(self.clone().flush(service.to_string(), route()));
            }
        }
    }

    /// Sends what waits for `service` as its rate allows, until nothing waits.
    async fn flush(self: Arc<Self>, service: String, route: Route) {
        loop {
            let pause = Duration::from_secs_f64(1.0 / self.per_second());
            tokio::time::sleep(pause.min(Duration::from_secs(60))).await;
            let (batch, done) = {
                let mut services = self.services.lock().unwrap_or_else(PoisonError::into_inner);
                let Some(state) = services.get_mut(&service) else {
                    return;
                };
                self.refill(state, Instant::now());
                let mut batch = Vec::new();
                while state.tokens >= 1.0 {
                    let Some((_, (key, notification))) = state.waiting.pop_first() else {
                        break;
                    };
                    state.keys.remove(&key);
                    state.tokens -= 1.0;
                    batch.push(notification);
                }
                let done = state.waiting.is_empty();
                if done {
                    state.flushing = false;
                    tracing::info!(
                        service,
                        coalesced = state.coalesced,
                        "push service below its rate limit again"
                    );
                    state.coalesced = 0;
                }
                (batch, done)
            };
            for notification in batch {
                route(notification).await;
            }
            if done {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbered(n: usize) -> Element {
        crate::stanza::Build::new("iq", "jabber:client")
            .attr("id", n.to_string())
            .build()
    }

    /// Past the burst, each key's notifications fold into its latest, sent as the rate allows.
    #[tokio::test]
    async fn the_excess_is_coalesced_per_key_and_sent_later() {
        let sent: Arc<Mutex<Vec<String>>> = Arc::default();
        let route = {
            let sent = sent.clone();
            move || -> Route {
                let sent = sent.clone();
                Arc::new(move |e: Element| {
                    let sent = sent.clone();
                    Box::pin(async move {
                        let id = e.attr("id").unwrap_or_default().to_string();
                        sent.lock().unwrap_or_else(PoisonError::into_inner).push(id);
                    })
                })
            }
        };
        // 120 a minute: bursts of 12, then one every 500 ms.
        let throttle = Arc::new(Throttle::new(120));
        for n in 0..20 {
            let key = if n % 2 == 0 { "even" } else { "odd" };
            throttle
                .send("push.example", key.to_string(), numbered(n), route.clone())
                .await;
        }
        // Another service has its own allowance.
        throttle
            .send("other.example", "k".into(), numbered(1000), route.clone())
            .await;
        let now = sent.lock().unwrap_or_else(PoisonError::into_inner).len();
        assert_eq!(now, 13, "the burst and the other service's one");
        tokio::time::sleep(Duration::from_millis(1300)).await;
        let sent = sent.lock().unwrap_or_else(PoisonError::into_inner).clone();
        assert_eq!(sent.len(), 15, "{sent:?}");
        // The held back ones are each key's latest, oldest key first.
        assert_eq!(&sent[13..], ["18", "19"]);
    }

    #[tokio::test]
    async fn zero_is_no_limit() {
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let throttle = Arc::new(Throttle::new(0));
        for n in 0..500 {
            let count = count.clone();
            throttle
                .send("push.example", "k".into(), numbered(n), move || -> Route {
                    Arc::new(move |_| {
                        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        Box::pin(async {})
                    })
                })
                .await;
        }
        assert_eq!(count.load(std::sync::atomic::Ordering::Relaxed), 500);
    }
}
