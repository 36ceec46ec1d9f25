//! XEP-0198 Stream Management on a client stream: `<enable/>`, acknowledgement requests and
//! answers, and resumption (a new connection takes over a waiting session, which sends again
//! what the client missed). The counters and queue are in [`state`].

pub mod state;

use super::sasl::common::Authenticated;
use super::transport::NoTransport;
use super::{next_signal, Session, Stage, Stop};
use crate::durable::LatestCommit;
use crate::session_handle::{Outbound, Signal};
use crate::stanza::ns::SM as NS_SM;
use crate::stanza::{ns, StanzaCondition, StreamCondition};
use minidom::Element;
use state::{next_resume, ResumeRequest, ResumeSlot, StreamManagement};
use std::time::Duration;
use tokio::sync::mpsc;

/// How long `<resumed/>` waits for the writes it counts; a commit always completes (a failed
/// writer completes its commits as it drops them), so this only bounds a stuck disk.
const RESUMED_DURABLE_WAIT: Duration = Duration::from_secs(10);

/// A `<failed/>` answer to `<enable/>` or `<resume/>`, with its stanza error condition.
fn failed(condition: StanzaCondition) -> String {
    format!(
        "<failed xmlns='{NS_SM}'><{condition} xmlns='{}'/></failed>",
        ns::STANZAS_ERROR
    )
}

impl Session {
    /// XEP-0198 nonzas: enable, acknowledgement requests and answers, resumption.
    pub(super) async fn on_stream_management(&mut self, element: Element) -> Result<(), Stop> {
        match (element.name(), self.stage) {
            ("enable", Stage::Bound) if self.sm.is_none() => {
                let resume = matches!(element.attr("resume"), Some("true" | "1"));
                let max = self.server.config.resume_timeout_for(&self.host);
                let id = resume.then(|| format!("{:032x}", rand::random::<u128>()));
                if let (Some(id), Some(handle)) = (&id, &self.handle) {
                    let (sender, receiver) = mpsc::channel(1);
                    self.server.resumable.insert(
                        id.clone(),
                        ResumeSlot {
                            jid: handle.jid.clone(),
                            anonymous: handle.anonymous,
                            sender,
                        },
                    );
                    self.resume_requests = Some(receiver);
                }
                let answer = match &id {
                    Some(id) => {
                        format!("<enabled xmlns='{NS_SM}' id='{id}' resume='true' max='{max}'/>")
                    }
                    None => format!("<enabled xmlns='{NS_SM}'/>"),
                };
                self.sm = Some(StreamManagement::new(id));
                self.send_raw(&answer).await
            }
            ("enable", _) => {
                self.send_raw(&failed(StanzaCondition::UnexpectedRequest))
                    .await
            }
            ("r", _) => match &self.sm {
                Some(sm) => {
                    // Answered once what it counts is durable, without waiting here.
                    self.held_acks.hold(sm.inbound);
                    Ok(())
                }
                None => Err(Stop::StreamError(
                    StreamCondition::UnsupportedStanzaType,
                    "enable stream management first".into(),
                )),
            },
            ("a", _) => {
                let h = element.attr("h").and_then(|h| h.parse::<u32>().ok());
                match (self.sm.as_mut(), h) {
                    (Some(sm), Some(h)) => sm.acknowledge(h).map_err(|e| {
                        Stop::StreamError(
                            StreamCondition::UndefinedCondition,
                            format!("acknowledged {} stanzas but only {} were sent", e.h, e.sent),
                        )
                    }),
                    (None, _) => Err(Stop::StreamError(
                        StreamCondition::UnsupportedStanzaType,
                        "enable stream management first".into(),
                    )),
                    (_, None) => Err(Stop::StreamError(
                        StreamCondition::BadFormat,
                        "<a/> needs a number h".into(),
                    )),
                }
            }
            ("resume", Stage::Authenticated) => self.resume(&element).await,
            ("resume", _) => {
                self.send_raw(&failed(StanzaCondition::UnexpectedRequest))
                    .await
            }
            _ => Err(Stop::StreamError(
                StreamCondition::UnsupportedStanzaType,
                format!("<{}/> is not part of stream management", element.name()),
            )),
        }
    }

    /// Send the answers to `<r/>` whose stanzas are now durable (see [`state::HeldAcks`]).
    pub(super) async fn answer_acks(&mut self, answers: Vec<u32>) -> Result<(), Stop> {
        for h in answers {
            self.queue(format!("<a xmlns='{NS_SM}' h='{h}'/>").as_bytes());
        }
        self.write_out(Stop::Dropped).await
    }

    /// A new connection, authenticated, asks to continue an earlier session: hand it this
    /// connection if the session is waiting and belongs to the same user.
    async fn resume(&mut self, element: &Element) -> Result<(), Stop> {
        let previd = element.attr("previd").unwrap_or_default();
        let h = element.attr("h").and_then(|h| h.parse::<u32>().ok());
        let slot = self
            .server
            .resumable
            .get(previd)
            .map(|slot| (slot.jid.clone(), slot.anonymous, slot.sender.clone()));
        let same_owner = |jid: &jid::FullJid, anonymous: bool| {
            jid.domain().as_str() == self.host
                && match &self.authenticated {
                    Some(Authenticated::User(user)) => {
                        !anonymous && jid.node().is_some_and(|n| n.as_str() == user)
                    }
                    Some(Authenticated::Anonymous) => anonymous,
                    None => false,
                }
        };
        let (Some((jid, anonymous, sender)), Some(h)) = (slot, h) else {
            return self.send_raw(&failed(StanzaCondition::ItemNotFound)).await;
        };
        if !same_owner(&jid, anonymous) {
            return self.send_raw(&failed(StanzaCondition::NotAuthorized)).await;
        }
        let transport = std::mem::replace(
            &mut self.transport,
            Box::new(NoTransport { out: Vec::new() }),
        );
        match sender.try_send(ResumeRequest { transport, h }) {
            Ok(()) => {
                tracing::info!(jid = %jid, "session resumed on a new connection");
                Err(Stop::HandedOver)
            }
            Err(refused) => {
                // The old session ended meanwhile: keep the connection and say so.
                let request = match refused {
                    mpsc::error::TrySendError::Full(r) | mpsc::error::TrySendError::Closed(r) => r,
                };
                self.transport = request.transport;
                self.send_raw(&failed(StanzaCondition::ItemNotFound)).await
            }
        }
    }

    /// Take over the connection of a client that resumed (XEP-0198 §5): acknowledge what it
    /// has, tell it what we have, and send again what it missed.
    pub(super) async fn adopt(&mut self, request: ResumeRequest) {
        if let Some(handle) = &self.handle {
            handle.set_detached(false);
        }
        let mut old = std::mem::replace(&mut self.transport, request.transport);
        let _ = tokio::time::timeout(Duration::from_millis(500), old.close()).await;
        drop(old);
        // What a stream module held back goes with the rest the client missed.
        let held = self.server.modules.hooks.detached(&mut self.local);
        // `<resumed h/>` tells the client which of its stanzas it need not send again: like an
        // `<a/>` (see `state::HeldAcks`), it waits until what it counts is durable. (The
        // stanzas sent again below went out before and passed their own commits then.)
        self.inbound_durable().await;
        let Some(sm) = self.sm.as_mut() else {
            return;
        };
        for item in held {
            sm.sent(item);
        }
        if let Err(e) = sm.acknowledge(request.h) {
            tracing::info!(
                h = e.h,
                sent = e.sent,
                "resumption with an impossible count"
            );
        }
        let id = sm.id.clone().unwrap_or_default();
        let resumed = format!(
            "<resumed xmlns='{NS_SM}' previd='{id}' h='{}'/>",
            sm.inbound
        );
        let missed: Vec<Outbound> = sm.unacked().cloned().collect();
        self.queue(resumed.as_bytes());
        for item in missed {
            item.write_to(self.transport.out());
            self.transport.end_element();
        }
        let _ = self.transport.flush().await;
        if let Some(handle) = &self.handle {
            let hooks = &self.server.modules.hooks;
            hooks.session_resumed(&self.server, handle).await;
        }
    }

    /// Wait (bounded) until every stanza this session took in is written where a crash cannot
    /// lose it: none is still held by another task, and the server's latest commit is done.
    fn inbound_durable(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        // Owned, so that the wait does not hold on to the session (which is not `Sync`).
        let server = self.server.clone();
        let handle = self.handle.clone();
        let durable = async move {
            if let Some(handle) = &handle {
                std::future::poll_fn(|cx| handle.poll_none_in_flight(cx)).await;
            }
            let latest = server.extensions.get::<LatestCommit>();
            if let Some(commit) = latest.and_then(|l| l.get()) {
                commit.done().await;
            }
        };
        async move {
            if tokio::time::timeout(RESUMED_DURABLE_WAIT, durable)
                .await
                .is_err()
            {
                tracing::warn!("storage slow: resumption answered before its writes completed");
            }
        }
    }

    /// The connection is gone but the session may be resumed: keep collecting what arrives
    /// for it, within bounds, until the client comes back or the time is up.
    pub(super) async fn wait_detached(&mut self) -> Option<ResumeRequest> {
        if let Some(handle) = &self.handle {
            handle.set_detached(true);
        }
        // Held back by a stream module but never written: sent on resumption like the rest.
        let held = self.server.modules.hooks.detached(&mut self.local);
        if let Some(sm) = self.sm.as_mut() {
            for item in held {
                sm.sent(item);
            }
        }
        let timeout = Duration::from_secs(self.server.config.resume_timeout_for(&self.host));
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut shutdown = self.server.shutdown_signal();
        let limit = self.server.config.limits.outbound_queue;
        let max_bytes = self.server.config.limits.unacked_bytes;
        tracing::debug!(jid = ?self.handle.as_ref().map(|h| h.jid.to_string()), "connection lost; session kept for resumption");
        loop {
            tokio::select! {
                request = next_resume(self.resume_requests.as_mut()) => return request,
                signal = next_signal(self.handle.as_deref()) => {
                    let Signal::Queued(batch) = signal else {
                        return None;
                    };
                    let sm = self.sm.as_mut()?;
                    for item in batch {
                        sm.sent(item);
                    }
                    if sm.pending() > limit || sm.exceeds(limit, max_bytes) {
                        return None;
                    }
                }
                _ = &mut deadline => return None,
                _ = crate::server::shutdown_requested(&mut shutdown) => return None,
            }
        }
    }
}
