//! A guest's place given back to the same browser (the hardening issue, item 5): a guest whose
//! page reloaded without resuming its session logs in again as a new guest JID. If its join
//! carries the browser secret (`muc::visitor`) of an occupant whose sessions ALL wait for
//! XEP-0198 resumption, and asks for that occupant's nick, it takes the occupant over: nick,
//! affiliation and occupant id. Anyone else asking for the nick (another browser, no secret,
//! the same IP) gets `<conflict/>` as before.

use super::{status, Departure, Room};
use crate::muc::nick;
use crate::stanza::Bare;
use minidom::Element;

impl Room {
    /// The occupant holding `requested` whose browser is `browser` and whose sessions all
    /// wait for resumption.
    pub(super) fn place_waiting_for(
        &self,
        browser: Option<&str>,
        requested: &str,
    ) -> Option<usize> {
        let browser = browser?;
        let index = self.occupant_by_nick(&nick::enforce(requested).ok()?)?;
        let occupant = &self.occupants[index];
        let all_waiting = !occupant.handles.is_empty()
            && occupant.handles.len() == occupant.sessions.len()
            && occupant.handles.iter().all(|h| h.is_detached());
        (occupant.browser.as_deref() == Some(browser) && all_waiting).then_some(index)
    }

    /// `from` takes over the occupant at `index` (see [`place_waiting_for`]).
    pub(super) async fn take_place_back(
        &mut self,
        index: usize,
        stanza: &Element,
        from: jid::FullJid,
        muc: Option<&Element>,
    ) {
        let real = from.bare();
        let previous = self.occupants[index].real.clone();
        tracing::info!(room = %self.jid, %previous, guest = %real, "same browser takes its place back");
        // The waiting sessions learn, should they resume after all, that they are out.
        let occupant = &self.occupants[index];
        let affiliation = self.affiliation(&occupant.real);
        let farewell = self.unavailable_of(
            occupant,
            true,
            &Departure {
                role: super::Role::None,
                affiliation,
                codes: &[status::SELF],
                reason: Some("this browser joined again from a new session"),
                actor: None,
            },
        );
        self.deliver(occupant, &farewell);
        if previous != real {
            if let Some(affiliation) = self.record.affiliations.remove(previous.as_str()) {
                self.record
                    .affiliations
                    .insert(real.to_string(), affiliation);
                self.save().await;
            }
        }
        let occupant = &mut self.occupants[index];
        occupant.real = real;
        occupant.sessions = vec![from.clone()];
        occupant.payload = Self::presence_payload(stanza);
        self.sessions_changed(index);
        // The others see the same occupant (nick, occupant id) with its new address.
        let occupant = &self.occupants[index];
        self.deliver_by_audience(
            &self.presence_of(occupant, true, &[], None),
            &self.presence_of(occupant, false, &[], None),
            Some(index),
        );
        self.send_room_state(index, &from, muc, &[], None);
    }
}
