//! The bounds a client session keeps on what its peer can make the server hold or do: a write
//! that never completes, what a client leaves unacknowledged (XEP-0198), and what a peer sends
//! before it authenticates (see "Limits and attacks" in docs/configuration.md).

use super::{Session, Stop};
use crate::stanza::StreamCondition;
use std::time::Duration;

impl Session {
    /// Write what is buffered. A client that stops reading must not hold its session (and its
    /// rooms) for long: the write is abandoned after `limits.write_timeout`, or as soon as the
    /// session is kicked (its outbound queue overflowed meanwhile). `on_error` is how a failed
    /// write ends the session.
    pub(super) async fn write_out(&mut self, on_error: Stop) -> Result<(), Stop> {
        let timeout = Duration::from_secs(self.server.config.limits.write_timeout);
        let Session {
            transport, handle, ..
        } = self;
        let kicked = async {
            match handle.as_deref() {
                Some(handle) => std::future::poll_fn(|cx| handle.poll_kicked(cx)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            written = tokio::time::timeout(timeout, transport.flush()) => match written {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) => Err(on_error),
                Err(_) => {
                    tracing::info!(peer = %transport.peer_ip(), seconds = timeout.as_secs(), "closing stream: the client stopped reading");
                    Err(Stop::StreamError(
                        StreamCondition::PolicyViolation,
                        format!("nothing could be written for {} s", timeout.as_secs()),
                    ))
                }
            },
            kick = kicked => Err(Stop::StreamError(kick.condition, kick.text)),
        }
    }

    /// Before it has authenticated, a peer has little to say (headers, STARTTLS, a SASL
    /// exchange): one that keeps sending is made to stop at `limits.unauthenticated_bytes`
    /// rather than be parsed for as long as `c2s.auth_timeout` allows.
    pub(super) fn unauthenticated_overflow(&self) -> Option<Stop> {
        if self.authenticated.is_some() {
            return None;
        }
        let limit = self.server.config.limits.unauthenticated_bytes;
        let received = self.transport.received_bytes()?;
        if received <= limit as u64 {
            return None;
        }
        let peer = self.transport.peer_ip();
        tracing::info!(%peer, received, "closing stream: too much sent before authenticating");
        Some(Stop::StreamError(
            StreamCondition::PolicyViolation,
            format!("more than {limit} bytes before authentication"),
        ))
    }

    /// A stanza begun must end within `limits.stanza_timeout`: a client that trickles one a
    /// byte at a time would otherwise hold its connection, parser and buffers for ever, since
    /// the bytes keep coming. `<policy-violation/>` rather than `<connection-timeout/>`: RFC
    /// 6120 §4.9.3.4 means the latter for a peer believed to have lost the ability to
    /// communicate, while this one is sending, only too slowly for a limit the server sets, which
    /// §4.9.3.14 covers ("violated some local service policy"; the text names the policy).
    pub(super) fn stanza_timed_out(&self, limit: Duration) -> Stop {
        let peer = self.transport.peer_ip();
        let jid = self.handle.as_ref().map(|handle| handle.jid.to_string());
        tracing::info!(%peer, ?jid, seconds = limit.as_secs(), "closing stream: a stanza took too long to arrive (sent too slowly)");
        Stop::StreamError(
            StreamCondition::PolicyViolation,
            format!(
                "a stanza must arrive within {} s of its start",
                limit.as_secs()
            ),
        )
    }

    /// XEP-0198 gives a client the stanzas it has not acknowledged again; one that never
    /// acknowledges must not make the server keep them without bound.
    pub(super) fn unacked_overflow(&self) -> Option<Stop> {
        let limits = &self.server.config.limits;
        let sm = self.sm.as_ref()?;
        if !sm.exceeds(limits.unacked_stanzas, limits.unacked_bytes) {
            return None;
        }
        let peer = self.transport.peer_ip();
        tracing::info!(%peer, unacked = sm.pending(), "closing stream: too much left unacknowledged");
        Some(Stop::StreamError(
            StreamCondition::PolicyViolation,
            "too many stanzas left unacknowledged (XEP-0198)".into(),
        ))
    }
}
