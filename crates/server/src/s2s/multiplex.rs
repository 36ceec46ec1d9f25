//! Sender multiplexing (XEP-0220 §8.1, "piggy-backing"): an outgoing stream already
//! authenticated for (local, remote) also carries another of our domains (rooms.local,
//! upload.local) to the same remote domain, after one more `<db:result/>` on it is answered
//! `valid`. Only on streams whose peer advertised dialback error handling (XEP-0220 §2.5,
//! `<dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>`), so that a refusal costs
//! one domain pair, not the stream. Whatever the peer says other than `valid`, or silence, sends
//! the domain pair back to a stream of its own.

use super::stream::DIALBACK;
use super::{Queued, S2s};
use minidom::Element;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Domain pairs waiting at once for the peer's answer on one stream: a bound on what a slow
/// peer makes us hold.
const MAX_PENDING: usize = 16;

/// Where stanzas of a domain pair multiplexed on another pair's stream go.
pub type Carried = mpsc::Sender<Queued>;

/// An outgoing stream that takes other local domains, as link tasks see it.
#[derive(Clone)]
pub(crate) struct Carrier {
    link: u64,
    local: String,
    attach: mpsc::Sender<Attach>,
}

/// A link task asks the carrier to authenticate its local domain on the carrier's stream.
pub struct Attach {
    local: String,
    answer: oneshot::Sender<Option<Carried>>,
}

/// What the carrier's link task does next for multiplexing.
pub enum Event {
    /// Send this `<db:result/>` for another local domain.
    Request(String),
    /// A stanza of a multiplexed domain pair, to write on the stream.
    Stanza(Queued),
}

/// The carrier side, owned by the link task of the stream that carries.
pub struct Multiplexer {
    s2s: Arc<S2s>,
    link: u64,
    remote: String,
    /// The id of the peer's stream header: dialback keys for every pair are bound to it.
    stream_id: String,
    attach: mpsc::Receiver<Attach>,
    traffic_tx: Carried,
    traffic: mpsc::Receiver<Queued>,
    pending: HashMap<String, oneshot::Sender<Option<Carried>>>,
}

/// Whether a peer's stream features promise dialback error handling (XEP-0220 §2.5).
pub fn peer_handles_errors(features: &Element) -> bool {
    features
        .get_child("dialback", "urn:xmpp:features:dialback")
        .is_some_and(|d| {
            d.get_child("errors", "urn:xmpp:features:dialback")
                .is_some()
        })
}

impl Multiplexer {
    /// Offer the stream of link `link` for (local, remote) to other local domains.
    pub fn offer(
        s2s: Arc<S2s>,
        link: u64,
        local: &str,
        remote: &str,
        stream_id: String,
    ) -> Multiplexer {
        let (attach_tx, attach) = mpsc::channel(MAX_PENDING);
        let (traffic_tx, traffic) = mpsc::channel(s2s.config.queue_stanzas);
        s2s.carriers.insert(
            remote.to_string(),
            Carrier {
                link,
                local: local.to_string(),
                attach: attach_tx,
            },
        );
        Multiplexer {
            s2s,
            link,
            remote: remote.to_string(),
            stream_id,
            attach,
            traffic_tx,
            traffic,
            pending: HashMap::new(),
        }
    }

    /// The next request or multiplexed stanza (pending forever when there is none).
    pub async fn next(&mut self) -> Event {
        loop {
            tokio::select! {
                Some(item) = self.traffic.recv() => return Event::Stanza(item),
                Some(request) = self.attach.recv() => {
                    if self.pending.len() >= MAX_PENDING || self.pending.contains_key(&request.local) {
                        let _ = request.answer.send(None);
                        continue;
                    }
                    let key = self.s2s.dialback_key(&self.remote, &request.local, &self.stream_id);
                    let result = format!(
                        "<db:result from='{}' to='{}'>{key}</db:result>",
                        salon_xml::escape(&request.local),
                        salon_xml::escape(&self.remote)
                    );
                    self.pending.insert(request.local, request.answer);
                    return Event::Request(result);
                }
                else => std::future::pending::<()>().await,
            }
        }
    }

    /// A `<db:result/>` answer read on the stream: tells the link task that waits for it.
    /// Answers nobody asked for on this stream are ignored (XEP-0220 §9.1).
    pub fn answered(&mut self, answer: &Element) {
        if !answer.is("result", DIALBACK) || answer.attr("from") != Some(self.remote.as_str()) {
            return;
        }
        let Some(local) = answer.attr("to") else {
            return;
        };
        let Some(waiter) = self.pending.remove(local) else {
            return;
        };
        let valid = answer.attr("type") == Some("valid");
        if valid {
            tracing::info!(%local, remote = %self.remote, method = "dialback", "s2s: outgoing stream authenticated (multiplexed on an existing stream)");
            self.s2s
                .count(|m| m.s2s_authenticated("outgoing", "dialback"));
        } else {
            let condition = answer
                .get_child("error", super::stream::SERVER)
                .and_then(|e| e.children().next())
                .map(|c| c.name().to_string());
            tracing::info!(%local, remote = %self.remote, answer = ?answer.attr("type"), ?condition, "s2s: multiplexing refused; the domain pair gets a stream of its own");
        }
        let _ = waiter.send(valid.then(|| self.traffic_tx.clone()));
    }

    /// The stream is going: no more pairs join it. Stanzas already handed over and not yet
    /// written are returned, to be bounced.
    pub fn close(mut self) -> Vec<Queued> {
        self.s2s
            .carriers
            .remove_if(&self.remote, |_, c| c.link == self.link);
        self.traffic.close();
        std::iter::from_fn(|| self.traffic.try_recv().ok()).collect()
    }
}

/// For the link task of (local, remote): a stream to `remote` that another of our domains
/// opened and that agreed to carry `local` too, if there is one.
pub async fn attach(s2s: &S2s, local: &str, remote: &str) -> Option<Carried> {
    let carrier = s2s.carriers.get(remote).map(|c| c.clone())?;
    if carrier.local == local {
        return None;
    }
    let (answer, answered) = oneshot::channel();
    let request = Attach {
        local: local.to_string(),
        answer,
    };
    carrier.attach.try_send(request).ok()?;
    let wait = Duration::from_secs(s2s.config.connect_timeout_seconds);
    match tokio::time::timeout(wait, answered).await {
        Ok(Ok(carried)) => carried,
        _ => {
            tracing::info!(%local, %remote, "s2s: no answer to multiplexing on an existing stream; opening one");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_peers_promising_dialback_errors_are_multiplexed() {
        let features = |xml: &str| -> Element {
            format!("<stream:features xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:server'>{xml}</stream:features>")
                .parse()
                .unwrap()
        };
        // ejabberd, Salon: XEP-0220 §2.5.
        assert!(peer_handles_errors(&features(
            "<dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>"
        )));
        // Prosody 0.12: dialback, but no promise about errors.
        assert!(!peer_handles_errors(&features(
            "<dialback xmlns='urn:xmpp:features:dialback'/>"
        )));
        assert!(!peer_handles_errors(&features("")));
    }
}
