//! The publish rate limit (`[pep] max_publish_per_minute`): how many items one account's
//! clients may publish or retract per minute, counted in fixed one-minute windows per account.

use crate::server::Server;
use crate::stanza::StanzaError;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);
/// Accounts tracked at once; past this, windows that ended are dropped.
const MAX_TRACKED: usize = 100_000;

/// Server-wide: per account, when its current window opened and how many it published in it.
#[derive(Default)]
struct Windows(dashmap::DashMap<String, (Instant, u32)>);

/// Count one publish or retraction by `owner`'s clients, or refuse it when the window is full.
pub fn allow(server: &Server, owner: &jid::BareJid) -> Result<(), StanzaError> {
    let limit = server.config.pep.max_publish_per_minute;
    let windows = server.extensions.get_or_default::<Windows>();
    let now = Instant::now();
    if windows.0.len() >= MAX_TRACKED {
        windows
            .0
            .retain(|_, (opened, _)| now.duration_since(*opened) < WINDOW);
    }
    let mut entry = windows.0.entry(owner.to_string()).or_insert((now, 0));
    let (opened, count) = entry.value_mut();
    if now.duration_since(*opened) >= WINDOW {
        *opened = now;
        *count = 0;
    }
    if *count >= limit {
        tracing::info!(account = %owner, limit, "PEP publish rate limit reached");
        return Err(StanzaError::resource_constraint()
            .with_text(format!("at most {limit} publications per minute")));
    }
    *count += 1;
    Ok(())
}
