//! Who is in the room (XEP-0045 §7.2 entering, §7.6 nick change, §7.7 presence updates, §7.14
//! leaving): joins with their checks, multi-session occupants, and the state a newcomer
//! receives.

use super::{status, Departure, Occupant, Room};
use crate::muc::config::{Affiliation, Role};
use crate::muc::nick::{self, NickError};
use crate::muc::visitor;
use crate::router::AddressedTemplate;
use crate::stanza::Bare;
use crate::stanza::{ns, set_attr, Build, ErrorType, StanzaCondition, StanzaError};
use minidom::Element;

impl Room {
    /// Remove an occupant and tell everyone, the occupant included (with 110 for them).
    pub(super) fn remove_occupant(
        &mut self,
        index: usize,
        codes: &[&str],
        reason: Option<&str>,
        actor: Option<&str>,
    ) {
        let occupant = self.occupants.remove(index);
        let affiliation = self.affiliation(&occupant.real);
        let mut self_codes: Vec<&str> = codes.to_vec();
        self_codes.push(status::SELF);
        let departure = Departure {
            role: Role::None,
            affiliation,
            codes,
            reason,
            actor,
        };
        let own = self.unavailable_of(
            &occupant,
            true,
            &Departure {
                codes: &self_codes,
                ..departure
            },
        );
        self.deliver(&occupant, &own);
        self.deliver_by_audience(
            &self.unavailable_of(&occupant, true, &departure),
            &self.unavailable_of(&occupant, false, &departure),
            None,
        );
        self.update_summary();
    }

    pub(super) async fn on_presence(&mut self, stanza: Element) {
        let Some(Ok(from)) = stanza.attr("from").map(jid::FullJid::new) else {
            return;
        };
        let Some(Ok(to)) = stanza.attr("to").map(jid::Jid::new) else {
            return;
        };
        let requested_nick = to.resource().map(|r| r.as_str().to_string());
        let current = self.occupant_by_session(&from);
        match (stanza.attr("type"), current) {
            (Some("unavailable"), Some(index)) => {
                let occupant = &mut self.occupants[index];
                if occupant.sessions.len() > 1 {
                    occupant.sessions.retain(|s| s != &from);
                    self.sessions_changed(index);
                    return;
                }
                self.remove_occupant(index, &[], None, None);
            }
            (Some("error"), Some(index)) => {
                // The occupant's client or server bounced our presence: it is gone (a ghost).
                let occupant = &mut self.occupants[index];
                occupant.sessions.retain(|s| s != &from);
                if occupant.sessions.is_empty() {
                    self.remove_occupant(index, &[], Some("the connection was lost"), None);
                } else {
                    self.sessions_changed(index);
                }
            }
            (None, Some(index)) => {
                let Some(requested) = requested_nick else {
                    self.context.bounce(&stanza, StanzaError::jid_malformed());
                    return;
                };
                if nick::comparison_key(&requested) == self.occupants[index].key
                    && requested == self.occupants[index].nick
                {
                    self.update_presence(index, &stanza);
                } else {
                    self.change_nick(index, &stanza, &requested).await;
                }
            }
            (None, None) => {
                let Some(requested) = requested_nick else {
                    self.context.bounce(
                        &stanza,
                        StanzaError::jid_malformed().with_text("join with room@service/nick"),
                    );
                    return;
                };
                self.join(&stanza, from, &requested).await;
            }
            _ => {}
        }
    }

    pub(super) fn presence_payload(stanza: &Element) -> Vec<Element> {
        stanza
            .children()
            .filter(|c| {
                // What the room adds is the room's, and a guest's secret is for the room only.
                !(c.ns() == ns::MUC
                    || c.ns() == ns::MUC_USER
                    || c.ns() == ns::OCCUPANT_ID
                    || c.ns() == ns::SALON_VISITOR)
            })
            .cloned()
            .collect()
    }

    pub(super) fn update_presence(&mut self, index: usize, stanza: &Element) {
        self.sessions_changed(index);
        self.occupants[index].payload = Self::presence_payload(stanza);
        let occupant = &self.occupants[index];
        self.broadcast_presence(occupant, &[], None);
    }

    /// The error for a nick that cannot be used, or the enforced nick.
    pub(super) fn check_nick(
        &self,
        requested: &str,
        real: &jid::BareJid,
        own_index: Option<usize>,
    ) -> Result<String, StanzaError> {
        let enforced = nick::enforce(requested).map_err(|e| match e {
            NickError::Empty => {
                StanzaError::jid_malformed().with_text("the nickname is empty or invisible")
            }
            NickError::NotAcceptable(why) => {
                StanzaError::new(ErrorType::Cancel, StanzaCondition::NotAcceptable).with_text(why)
            }
        })?;
        let key = nick::comparison_key(&enforced);
        if let Some(other) = self.occupants.iter().position(|o| o.key == key) {
            if Some(other) != own_index && self.occupants[other].real != *real {
                return Err(
                    StanzaError::new(ErrorType::Cancel, StanzaCondition::Conflict)
                        .with_text("that nickname (or one that looks the same) is in use"),
                );
            }
        }
        let reserved = self
            .record
            .registered_nicks
            .iter()
            .find(|(owner, registered)| {
                nick::comparison_key(registered) == key && owner.as_str() != real.as_str()
            });
        if reserved.is_some() {
            return Err(
                StanzaError::new(ErrorType::Cancel, StanzaCondition::Conflict)
                    .with_text("that nickname is registered by someone else"),
            );
        }
        Ok(enforced)
    }

    pub(super) async fn join(&mut self, stanza: &Element, from: jid::FullJid, requested: &str) {
        let real = from.bare();
        let muc = stanza.get_child("x", ns::MUC);
        let affiliation = self.affiliation(&real);
        let is_owner = affiliation == Affiliation::Owner;
        // A newly created room belongs to its creator (§10.1.1).
        let creating =
            self.locked && self.occupants.is_empty() && self.record.affiliations.is_empty();
        if self.locked && !creating && !is_owner {
            self.context.bounce(
                stanza,
                StanzaError::item_not_found()
                    .with_text("the room is being set up; try again shortly"),
            );
            return;
        }
        // A guest's browser id (visitor.rs): proof that a new guest login is the same browser.
        let guest = self.context.is_anonymous_host(real.domain().as_str());
        let browser = match visitor::offered(stanza) {
            Some(secret) if guest => {
                let id = self.service.visitors.verify(secret);
                if id.is_none() {
                    tracing::debug!(room = %self.jid, guest = %from, "invalid visitor secret ignored");
                }
                id
            }
            _ => None,
        };
        // A nick held by another address stays theirs, even while all of its sessions wait
        // for XEP-0198 resumption: resumption keeps the same session (it needs no take-over),
        // the same account shares the occupant below, and anyone else gets a conflict. An
        // address (IP) is no proof: NAT and proxies share it. The one exception is a proof:
        // the same browser's secret (returning.rs).
        if let Some(index) = self.place_waiting_for(browser.as_deref(), requested) {
            if !self.joins_from_banned_address(&from) {
                self.take_place_back(index, stanza, from, muc).await;
                return;
            }
        }
        let nick = match self.check_nick(requested, &real, None) {
            Ok(nick) => nick,
            Err(error) => {
                self.context.bounce(stanza, error);
                return;
            }
        };
        // Another session of someone already present joins under the same nick (§7.2.x
        // multi-session): share the occupant.
        if let Some(index) = self.occupant_by_nick(&nick) {
            if self.occupants[index].real == real {
                self.occupants[index].sessions.push(from.clone());
                self.sessions_changed(index);
                let secret = match (&browser, &self.occupants[index].browser) {
                    (None, Some(id)) => Some(self.service.visitors.secret_for(id)),
                    _ => None,
                };
                self.send_room_state(index, &from, muc, &[], secret);
                return;
            }
        }
        if !creating {
            let banned_address = affiliation < Affiliation::Admin
                && (self.joins_from_banned_address(&from)
                    || self.joins_from_banned_browser(&from, browser.as_deref()));
            if affiliation == Affiliation::Outcast || banned_address {
                self.context.bounce(
                    stanza,
                    StanzaError::forbidden().with_text("you are banned from this room"),
                );
                return;
            }
            if self.record.config.members_only
                && affiliation < Affiliation::Member
                && !self.admitted_by_link(stanza, &real, guest).await
            {
                self.context.bounce(
                    stanza,
                    StanzaError::new(ErrorType::Auth, StanzaCondition::RegistrationRequired)
                        .with_text("this room is for members only"),
                );
                return;
            }
            let password = muc
                .and_then(|x| x.get_child("password", ns::MUC))
                .map(|p| p.text());
            if !self.record.config.password.is_empty()
                && affiliation < Affiliation::Admin
                && password.as_deref() != Some(self.record.config.password.as_str())
            {
                self.context.bounce(
                    stanza,
                    StanzaError::new(ErrorType::Auth, StanzaCondition::NotAuthorized)
                        .with_text("a password is required"),
                );
                return;
            }
            let limit = match self.record.config.max_occupants {
                0 => self.service.settings.max_occupants,
                n => n.min(self.service.settings.max_occupants),
            };
            if self.occupants.len() >= limit && affiliation < Affiliation::Admin {
                self.context.bounce(
                    stanza,
                    StanzaError::new(ErrorType::Wait, StanzaCondition::ServiceUnavailable)
                        .with_text("the room is full"),
                );
                return;
            }
        }
        let mut codes = Vec::new();
        if creating {
            self.record
                .affiliations
                .insert(real.to_string(), Affiliation::Owner);
            let creator_is_guest = self.context.is_anonymous_host(real.domain().as_str());
            self.record.created_by_guest = creator_is_guest;
            tracing::info!(room = %self.jid, creator = %real, guest = creator_is_guest, "room created");
            codes.push(status::CREATED);
        }
        if nick != requested {
            codes.push(status::NICK_ASSIGNED);
        }
        let affiliation = self.affiliation(&real);
        // A guest without a valid secret gets a browser id (the one its session already got in
        // another room, else a new one), and its secret with its self-presence.
        let session = self.context.local_session(&from).filter(|_| guest);
        let (browser, secret) = match browser {
            Some(id) => (Some(id), None),
            None if guest => {
                let given = session
                    .as_ref()
                    .and_then(|h| h.extensions.get::<visitor::SessionBrowser>())
                    .map(|b| b.0.clone());
                let id = given.unwrap_or_else(|| self.service.visitors.issue().0);
                let secret = self.service.visitors.secret_for(&id);
                (Some(id), Some(secret))
            }
            None => (None, None),
        };
        if let (Some(id), Some(session)) = (&browser, &session) {
            session
                .extensions
                .insert(visitor::SessionBrowser(id.clone()));
        }
        let occupant = Occupant {
            key: nick::comparison_key(&nick),
            nick,
            occupant_id: self.occupant_id(&real),
            real,
            sessions: vec![from.clone()],
            handles: self.context.local_session(&from).into_iter().collect(),
            role: self.default_role(affiliation),
            payload: Self::presence_payload(stanza),
            last_message: None,
            browser,
        };
        // Everyone else learns of the newcomer; the newcomer gets the room's state.
        self.deliver_by_audience(
            &self.presence_of(&occupant, true, &[], None),
            &self.presence_of(&occupant, false, &[], None),
            None,
        );
        self.occupants.push(occupant);
        let index = self.occupants.len() - 1;
        self.update_summary();
        self.send_room_state(index, &from, muc, &codes, secret);
    }

    /// What a joining session receives (§7.2.3–§7.2.16): occupants, its own presence with
    /// status codes (and a guest's new browser secret), history, then the subject.
    pub(super) fn send_room_state(
        &self,
        index: usize,
        session: &jid::FullJid,
        muc: Option<&Element>,
        extra_codes: &[&str],
        visitor_secret: Option<String>,
    ) {
        // One write for all of it, not one per stanza.
        let _burst = self
            .context
            .local_session(session)
            .map(|handle| handle.burst());
        let me = &self.occupants[index];
        let sees_jids = self.may_see_real_jids(me);
        for (i, other) in self.occupants.iter().enumerate() {
            if i != index {
                let presence =
                    AddressedTemplate::new(&self.presence_of(other, sees_jids, &[], None));
                self.deliver_to_session(session, &presence);
            }
        }
        let mut codes: Vec<&str> = vec![status::SELF];
        if self.record.config.whois_anyone {
            codes.push(status::NON_ANONYMOUS);
        }
        if self.record.config.archive {
            codes.push(status::LOGGED);
        }
        codes.extend_from_slice(extra_codes);
        let mut own = self.presence_of(me, true, &codes, None);
        if let Some(secret) = visitor_secret {
            own.append_child(visitor::element(secret));
        }
        let own = AddressedTemplate::new(&own);
        self.deliver_to_session(session, &own);
        self.send_history(session, muc.and_then(|x| x.get_child("history", ns::MUC)));
        let subject = Build::new("message", ns::CLIENT)
            .attr("type", "groupchat")
            .attr("id", format!("subject-{:x}", rand::random::<u64>()))
            .attr(
                "from",
                if self.record.subject_by.is_empty() {
                    self.jid.to_string()
                } else {
                    self.occupant_jid(&self.record.subject_by)
                },
            )
            .child(
                Build::new("subject", ns::CLIENT)
                    .text(self.record.subject.clone())
                    .build(),
            )
            .build();
        self.deliver_to_session(session, &AddressedTemplate::new(&subject));
    }

    pub(super) async fn change_nick(&mut self, index: usize, stanza: &Element, requested: &str) {
        let real = self.occupants[index].real.clone();
        let nick = match self.check_nick(requested, &real, Some(index)) {
            Ok(nick) => nick,
            Err(error) => {
                self.context.bounce(stanza, error);
                return;
            }
        };
        // §7.6: unavailable with 303 and the new nick, then available under the new nick.
        let old = &self.occupants[index];
        let affiliation = self.affiliation(&old.real);
        let new_nick_item = |with_jid: bool| {
            let departure = Departure {
                role: old.role,
                affiliation,
                codes: &[status::NICK_CHANGED],
                reason: None,
                actor: None,
            };
            let mut presence = self.unavailable_of(old, with_jid, &departure);
            if let Some(item) = presence
                .get_child_mut("x", ns::MUC_USER)
                .and_then(|x| x.get_child_mut("item", ns::MUC_USER))
            {
                set_attr(item, "nick", nick.clone());
            }
            presence
        };
        let leave_with_jid = new_nick_item(true);
        let leave_without_jid = new_nick_item(false);
        let mut own_leave = new_nick_item(true);
        if let Some(x) = own_leave.get_child_mut("x", ns::MUC_USER) {
            x.append_child(
                Build::new("status", ns::MUC_USER)
                    .attr("code", status::SELF)
                    .build(),
            );
        }
        self.deliver(&self.occupants[index], &own_leave);
        self.deliver_by_audience(&leave_with_jid, &leave_without_jid, Some(index));
        let occupant = &mut self.occupants[index];
        occupant.key = nick::comparison_key(&nick);
        occupant.nick = nick;
        occupant.payload = Self::presence_payload(stanza);
        let occupant = &self.occupants[index];
        let own = self.presence_of(occupant, true, &[status::SELF], None);
        self.deliver(occupant, &own);
        self.deliver_by_audience(
            &self.presence_of(occupant, true, &[], None),
            &self.presence_of(occupant, false, &[], None),
            Some(index),
        );
    }
}
