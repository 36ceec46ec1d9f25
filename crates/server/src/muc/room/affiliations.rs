//! Roles and affiliations (XEP-0045 §8 moderator use cases, §9 admin use cases, §10.3–§10.7):
//! the muc#admin lists, and changes checked all together before any is applied.

use super::{status, Room};
use crate::muc::config::{Affiliation, Role};
use crate::stanza::Bare;
use crate::stanza::{ns, Build, ErrorType, StanzaCondition, StanzaError};
use minidom::Element;

impl Room {
    /// The requester's affiliation, and its role if present.
    pub(super) fn standing(&self, from: &jid::FullJid) -> (Affiliation, Role) {
        let affiliation = self.affiliation(&from.bare());
        let role = self
            .occupant_by_session(from)
            .map(|i| self.occupants[i].role)
            .unwrap_or(Role::None);
        (affiliation, role)
    }

    /// §9.5, §9.8, §8.5: lists by affiliation (admins, owners) or role (moderators).
    pub(super) fn admin_get(
        &self,
        from: &jid::FullJid,
        query: &Element,
    ) -> Result<Option<Element>, StanzaError> {
        let (affiliation, role) = self.standing(from);
        let item = query
            .get_child("item", ns::MUC_ADMIN)
            .ok_or_else(|| StanzaError::bad_request("missing item"))?;
        let mut items = Vec::new();
        if let Some(wanted) = item.attr("affiliation") {
            let wanted = Affiliation::parse(wanted)
                .ok_or_else(|| StanzaError::bad_request("unknown affiliation"))?;
            if affiliation < Affiliation::Admin
                && !(wanted == Affiliation::Member && role == Role::Moderator)
            {
                return Err(StanzaError::forbidden());
            }
            for (jid, a) in &self.record.affiliations {
                if *a == wanted && !(wanted == Affiliation::Outcast && self.ban_ended(jid)) {
                    let mut item = Build::new("item", ns::MUC_ADMIN)
                        .attr("affiliation", a.as_str())
                        .attr("jid", jid.clone());
                    if let Some(nick) = self.record.registered_nicks.get(jid) {
                        item = item.attr("nick", nick.clone());
                    }
                    if wanted == Affiliation::Outcast {
                        item = item.children(self.ban_details(jid));
                    }
                    items.push(item.build());
                }
            }
        } else if let Some(wanted) = item.attr("role") {
            let wanted =
                Role::parse(wanted).ok_or_else(|| StanzaError::bad_request("unknown role"))?;
            if role < Role::Moderator {
                return Err(StanzaError::forbidden());
            }
            for occupant in self.occupants.iter().filter(|o| o.role == wanted) {
                items.push(
                    Build::new("item", ns::MUC_ADMIN)
                        .attr("role", occupant.role.as_str())
                        .attr("nick", occupant.nick.clone())
                        .attr("affiliation", self.affiliation(&occupant.real).as_str())
                        .attr("jid", occupant.real.to_string())
                        .build(),
                );
            }
        } else {
            return Err(StanzaError::bad_request("ask for an affiliation or a role"));
        }
        Ok(Some(
            Build::new("query", ns::MUC_ADMIN).children(items).build(),
        ))
    }

    /// §8.2–§8.6, §9.1–§9.8, §10.3–§10.7: role and affiliation changes, checked all together
    /// before any is applied.
    pub(super) async fn admin_set(
        &mut self,
        from: &jid::FullJid,
        query: &Element,
    ) -> Result<Option<Element>, StanzaError> {
        let (actor_affiliation, actor_role) = self.standing(from);
        let actor_nick = self
            .occupant_by_session(from)
            .map(|i| self.occupants[i].nick.clone());
        enum Change {
            // By occupant key, since earlier changes in the same request may remove occupants.
            Role(String, Role, Option<String>),
            // With the ban's duration, if the moderator named one (urn:salon:ban:0).
            Affiliation(jid::BareJid, Affiliation, Option<String>, Option<u64>),
        }
        let mut changes = Vec::new();
        for item in query.children().filter(|c| c.is("item", ns::MUC_ADMIN)) {
            let reason = item.get_child("reason", ns::MUC_ADMIN).map(|r| r.text());
            if let Some(role) = item.attr("role") {
                let role =
                    Role::parse(role).ok_or_else(|| StanzaError::bad_request("unknown role"))?;
                let nick = item.attr("nick").ok_or_else(|| {
                    StanzaError::bad_request("role changes name an occupant by nick")
                })?;
                let target = self.occupant_by_nick(nick).ok_or_else(|| {
                    StanzaError::item_not_found().with_text("no occupant with that nickname")
                })?;
                let target_affiliation = self.affiliation(&self.occupants[target].real);
                if actor_role < Role::Moderator {
                    return Err(StanzaError::forbidden().with_text("only moderators change roles"));
                }
                // §8.2: moderators cannot kick or silence anyone of higher affiliation.
                if target_affiliation > actor_affiliation
                    || (target_affiliation >= Affiliation::Admin
                        && actor_affiliation < Affiliation::Owner
                        && target_affiliation == actor_affiliation
                        && role < Role::Moderator)
                {
                    return Err(StanzaError::not_allowed()
                        .with_text("you cannot change the role of someone with that affiliation"));
                }
                if (role == Role::Moderator || self.occupants[target].role == Role::Moderator)
                    && actor_affiliation < Affiliation::Admin
                    && target_affiliation < Affiliation::Admin
                {
                    return Err(StanzaError::not_allowed()
                        .with_text("only admins grant or revoke moderation"));
                }
                changes.push(Change::Role(
                    self.occupants[target].key.clone(),
                    role,
                    reason,
                ));
            } else if let Some(affiliation) = item.attr("affiliation") {
                let affiliation = Affiliation::parse(affiliation)
                    .ok_or_else(|| StanzaError::bad_request("unknown affiliation"))?;
                let jid = item
                    .attr("jid")
                    .and_then(|j| jid::Jid::new(j).ok())
                    .map(|j| j.bare())
                    .or_else(|| {
                        item.attr("nick")
                            .and_then(|n| self.occupant_by_nick(n))
                            .map(|i| self.occupants[i].real.clone())
                    })
                    .ok_or_else(|| StanzaError::bad_request("affiliation changes name a JID"))?;
                let current = self.affiliation(&jid);
                let allowed = match actor_affiliation {
                    Affiliation::Owner => true,
                    Affiliation::Admin => {
                        current < Affiliation::Admin && affiliation < Affiliation::Admin
                    }
                    _ => false,
                };
                if !allowed {
                    return Err(StanzaError::forbidden()
                        .with_text("you may not make that affiliation change"));
                }
                if current == Affiliation::Owner && affiliation != Affiliation::Owner {
                    let owners = self
                        .record
                        .affiliations
                        .values()
                        .filter(|a| **a == Affiliation::Owner)
                        .count();
                    if owners <= 1 {
                        return Err(
                            StanzaError::new(ErrorType::Cancel, StanzaCondition::Conflict)
                                .with_text("a room needs at least one owner"),
                        );
                    }
                }
                let duration = super::address_bans::requested_duration(item)?;
                changes.push(Change::Affiliation(jid, affiliation, reason, duration));
            } else {
                return Err(StanzaError::bad_request(
                    "each item changes a role or an affiliation",
                ));
            }
        }
        if changes.is_empty() {
            return Err(StanzaError::bad_request("no item"));
        }
        let actor = actor_nick.as_deref();
        let mut affiliations_changed = false;
        for change in changes {
            match change {
                Change::Role(key, role, reason) => {
                    let Some(index) = self.occupants.iter().position(|o| o.key == key) else {
                        continue;
                    };
                    if role == Role::None {
                        self.remove_occupant(index, &[status::KICKED], reason.as_deref(), actor);
                    } else {
                        self.occupants[index].role = role;
                        let occupant = &self.occupants[index];
                        let reason =
                            reason.map(|r| Build::new("reason", ns::MUC_USER).text(r).build());
                        self.broadcast_presence(occupant, &[], reason);
                    }
                }
                Change::Affiliation(jid, affiliation, reason, duration) => {
                    affiliations_changed = true;
                    self.apply_affiliation(&jid, affiliation, reason.as_deref(), actor);
                    if affiliation == Affiliation::Outcast {
                        self.set_ban_duration(&jid, duration);
                    }
                }
            }
        }
        if affiliations_changed {
            self.save().await;
        }
        Ok(None)
    }

    pub(super) fn apply_affiliation(
        &mut self,
        jid: &jid::BareJid,
        affiliation: Affiliation,
        reason: Option<&str>,
        actor: Option<&str>,
    ) {
        if affiliation == Affiliation::Outcast {
            self.ban_guest_address(jid);
        } else {
            self.lift_address_ban(jid);
        }
        if affiliation == Affiliation::None {
            self.record.affiliations.remove(jid.as_str());
        } else {
            self.record
                .affiliations
                .insert(jid.to_string(), affiliation);
        }
        let present = self.occupants.iter().position(|o| &o.real == jid);
        let Some(index) = present else { return };
        match affiliation {
            Affiliation::Outcast => self.remove_occupant(index, &[status::BANNED], reason, actor),
            _ if self.record.config.members_only && affiliation < Affiliation::Member => self
                .remove_occupant(
                    index,
                    &[status::AFFILIATION_CHANGED, status::MEMBERS_ONLY],
                    reason,
                    actor,
                ),
            _ => {
                let role = self.default_role(affiliation);
                let occupant = &mut self.occupants[index];
                // Keep voice granted by hand unless the new affiliation brings more.
                occupant.role = occupant
                    .role
                    .max(role)
                    .min(if affiliation >= Affiliation::Admin {
                        Role::Moderator
                    } else {
                        role.max(Role::Participant)
                    });
                let occupant = &self.occupants[index];
                self.broadcast_presence(occupant, &[], None);
            }
        }
    }
}
