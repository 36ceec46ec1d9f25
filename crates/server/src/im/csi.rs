//! Client State Indication (XEP-0352): while a client says it is inactive (a phone in a
//! pocket), stanzas that can wait — presence updates, chat states, receipts — are held and go
//! out together with the next one that cannot, so the radio wakes up less often.

use crate::extensions::LocalExtensions;
use crate::hooks::{priority, StreamHook, StreamInfo};
use crate::registry::Registry;
use crate::router::Outbound;
use crate::server::Server;
use crate::stanza::ns;
use minidom::Element;
use std::collections::VecDeque;
use std::sync::Arc;

/// Most stanzas held for an inactive client; one more sends them all.
const MAX_HELD: usize = 128;

/// The stream feature, the `<active/>`/`<inactive/>` nonzas, and holding back what can wait;
/// the state lives in the connection's own slots.
pub fn register(registry: &mut Registry<Server>) {
    registry
        .hooks
        .on_stream(priority::OBSERVE, Arc::new(ClientStateIndication));
}

struct ClientStateIndication;

impl StreamHook<Server> for ClientStateIndication {
    fn features(&self, _server: &Server, stream: &StreamInfo<'_>) -> Vec<Element> {
        if stream.authenticated {
            vec![Element::bare("csi", ns::CSI)]
        } else {
            Vec::new()
        }
    }

    fn nonza(&self, local: &mut LocalExtensions, element: &Element) -> Option<Vec<Outbound>> {
        if element.ns() != ns::CSI {
            return None;
        }
        // XEP-0352 §5: `<active/>` releases what was held.
        let state = local.get_mut::<ClientState>();
        Some(state.set_inactive(element.name() == "inactive"))
    }

    fn outgoing(
        &self,
        local: &mut LocalExtensions,
        batch: VecDeque<Outbound>,
    ) -> VecDeque<Outbound> {
        match local.existing::<ClientState>() {
            Some(state) => state.release(batch),
            None => batch,
        }
    }

    fn writes_through(&self, local: &mut LocalExtensions) -> bool {
        local
            .existing::<ClientState>()
            .is_none_or(|state| !state.inactive && state.held.is_empty())
    }

    fn detached(&self, local: &mut LocalExtensions) -> Vec<Outbound> {
        local
            .existing::<ClientState>()
            .map(ClientState::take_held)
            .unwrap_or_default()
    }
}

#[derive(Default)]
pub struct ClientState {
    inactive: bool,
    /// In arrival order; written before anything that arrives after them.
    held: Vec<Outbound>,
}

impl ClientState {
    /// `<active/>` or `<inactive/>` from the client. Becoming active releases what was held.
    pub fn set_inactive(&mut self, inactive: bool) -> Vec<Outbound> {
        self.inactive = inactive;
        if inactive {
            Vec::new()
        } else {
            std::mem::take(&mut self.held)
        }
    }

    /// What to write now of `batch`: everything while active; while inactive, nothing until a
    /// stanza that cannot wait (or too many held), and then all held so far with it, in order.
    pub fn release(&mut self, batch: VecDeque<Outbound>) -> VecDeque<Outbound> {
        if !self.inactive {
            return batch;
        }
        let urgent = batch.iter().rposition(is_urgent);
        let mut batch = batch;
        let later = match urgent {
            Some(last) => batch.split_off(last + 1),
            None => std::mem::take(&mut batch),
        };
        let mut now: VecDeque<Outbound> = VecDeque::new();
        if !batch.is_empty() {
            now.extend(self.held.drain(..));
            now.extend(batch);
        }
        self.held.extend(later);
        if self.held.len() > MAX_HELD {
            now.extend(self.held.drain(..));
        }
        now
    }

    /// Everything held, for a connection that is gone (the stream management queue keeps it
    /// for a resumption); the next connection starts active.
    pub fn take_held(&mut self) -> Vec<Outbound> {
        self.inactive = false;
        std::mem::take(&mut self.held)
    }
}

/// Whether a stanza should reach an inactive client at once: IQs (someone waits for the
/// answer), messages a person reads (a body, an encrypted payload, a call), subscription
/// requests. Presence updates, chat states, receipts and markers wait.
fn is_urgent(item: &Outbound) -> bool {
    if item.starts_with(b"<presence") {
        return item.contains(b"type='subscribe'");
    }
    if item.starts_with(b"<message") {
        return item.contains(b"<body")
            || item.contains(b"<encrypted")
            || item.contains(b"urn:xmpp:jingle-message:0");
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn stanza(xml: &'static str) -> Outbound {
        Outbound::Stanza(Bytes::from_static(xml.as_bytes()))
    }

    fn texts(items: &VecDeque<Outbound>) -> Vec<String> {
        items
            .iter()
            .map(|item| {
                let mut out = Vec::new();
                item.write_to(&mut out);
                String::from_utf8(out).unwrap()
            })
            .collect()
    }

    const PRESENCE: &str = "<presence xmlns='jabber:client' from='a@x/r'/>";
    const STATE: &str = "<message xmlns='jabber:client' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>";
    const CHAT: &str = "<message xmlns='jabber:client' type='chat'><body>hi</body></message>";

    #[test]
    fn inactive_clients_get_what_waited_with_the_next_urgent_stanza_in_order() {
        let mut csi = ClientState::default();
        let batch = VecDeque::from([stanza(PRESENCE), stanza(CHAT)]);
        assert_eq!(
            texts(&csi.release(batch)),
            [PRESENCE, CHAT],
            "active: all at once"
        );

        assert!(csi.set_inactive(true).is_empty());
        let held = csi.release(VecDeque::from([stanza(PRESENCE), stanza(STATE)]));
        assert!(held.is_empty(), "presence and chat states wait");
        let now = csi.release(VecDeque::from([
            stanza(STATE),
            stanza(CHAT),
            stanza(PRESENCE),
        ]));
        assert_eq!(texts(&now), [PRESENCE, STATE, STATE, CHAT]);
        assert_eq!(texts(&csi.set_inactive(false).into()), [PRESENCE]);
    }

    #[test]
    fn too_many_held_stanzas_go_out_and_a_lost_connection_keeps_them() {
        let mut csi = ClientState::default();
        csi.set_inactive(true);
        for _ in 0..MAX_HELD {
            assert!(csi.release(VecDeque::from([stanza(PRESENCE)])).is_empty());
        }
        assert_eq!(
            csi.release(VecDeque::from([stanza(PRESENCE)])).len(),
            MAX_HELD + 1
        );
        csi.release(VecDeque::from([stanza(STATE)]));
        assert_eq!(csi.take_held().len(), 1);
        let after = csi.release(VecDeque::from([stanza(PRESENCE)]));
        assert_eq!(after.len(), 1, "a new connection starts active");
    }
}
