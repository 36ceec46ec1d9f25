//! A session replaced by a new one that binds the same resource (RFC 6120 §7.7.2.2: the old
//! one is closed with `<conflict/>`), closed before the new one goes on.

use crate::session_handle::SessionHandle;
use crate::stanza::StreamCondition;
use std::time::Duration;

/// How long a new session waits for the one it replaces to end.
const WAIT: Duration = Duration::from_secs(2);
/// How often it looks: replacing a session is rare, and a waker slot on every handle for it
/// would cost every idle session memory.
const POLL: Duration = Duration::from_millis(5);

/// Close `old` with `<conflict/>` and wait (bounded) until it has ended and told the modules.
///
/// Both sessions have the same address, so whatever the old one says as it ends (its
/// unavailable presence to contacts and rooms) cannot be told from the new one's words. Said
/// after the new one has joined a room, that unavailable presence takes the new one out of
/// it: a client that reconnects after a network change and joins its rooms at once (or sends
/// its bind and joins in one write) would sit in no room without knowing it. So the bind is
/// answered, and the new session reads on, only once the old one's last words are out.
pub(super) async fn close(old: &SessionHandle) {
    old.kick(
        StreamCondition::Conflict,
        "replaced by a new session with the same resource",
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    while !old.has_ended() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
    }
    if !old.has_ended() {
        tracing::warn!(jid = %old.jid, "the replaced session did not end in time; going on");
    }
}
