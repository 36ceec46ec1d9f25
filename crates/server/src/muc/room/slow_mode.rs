//! XEP-0500 slow mode: an occupant waits the room's `slow_mode_duration` between two messages
//! with a body, and a guest at least `muc.guest_slow_mode_seconds`; admins and owners are not
//! limited. A message sent too soon is refused with `<policy-violation/>` of type `wait`.

use super::Room;
use crate::muc::config::Affiliation;
use crate::stanza::{ErrorType, StanzaCondition, StanzaError};
use std::time::{Duration, Instant};

impl Room {
    /// The wait between two messages of occupant `index`.
    fn slow_mode_interval(&self, index: usize) -> Duration {
        let occupant = &self.occupants[index];
        if self.affiliation(&occupant.real) >= Affiliation::Admin {
            return Duration::ZERO;
        }
        let is_guest = self
            .context
            .is_anonymous_host(occupant.real.domain().as_str());
        let guest = match is_guest {
            true => self.service.settings.guest_slow_mode_seconds,
            false => 0,
        };
        Duration::from_secs(self.record.config.slow_mode_duration.max(guest))
    }

    /// Whether occupant `index` may send a message with a body now; if so, the clock starts
    /// again from now.
    pub(super) fn slow_mode_allows(&mut self, index: usize) -> Result<(), StanzaError> {
        let interval = self.slow_mode_interval(index);
        let now = Instant::now();
        let occupant = &mut self.occupants[index];
        // Kept even without a limit, so that slow mode turned on holds from the next message.
        if let Some(last) = occupant.last_message.filter(|_| !interval.is_zero()) {
            if now.duration_since(last) < interval {
                return Err(
                    StanzaError::new(ErrorType::Wait, StanzaCondition::PolicyViolation).with_text(
                        format!(
                            "You have exceeded the limit imposed by the slow mode in this room. \
                             You have to wait {} seconds between messages. Please try again later.",
                            interval.as_secs()
                        ),
                    ),
                );
            }
        }
        occupant.last_message = Some(now);
        Ok(())
    }
}
