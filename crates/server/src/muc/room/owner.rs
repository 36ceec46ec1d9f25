//! The owner's room: configuration form get and submit, instant and reserved rooms, and
//! destruction (XEP-0045 §10.1, §10.2, §10.9).

use super::{status, Departure, Room};
use crate::muc::config::{self as room_config, Affiliation, Role};
use crate::router::AddressedTemplate;
use crate::stanza::forms::{DataForm, FormType};
use crate::stanza::Bare;
use crate::stanza::{ns, Build, StanzaError};
use minidom::Element;

impl Room {
    pub(super) fn owner_get(&self, from: &jid::FullJid) -> Result<Option<Element>, StanzaError> {
        if self.affiliation(&from.bare()) != Affiliation::Owner {
            return Err(StanzaError::forbidden().with_text("only owners configure the room"));
        }
        let list = |wanted: Affiliation| -> Vec<String> {
            self.record
                .affiliations
                .iter()
                .filter(|(_, a)| **a == wanted)
                .map(|(j, _)| j.clone())
                .collect()
        };
        Ok(Some(
            Build::new("query", ns::MUC_OWNER)
                .child(room_config::form(
                    &self.record.config,
                    list(Affiliation::Owner),
                    list(Affiliation::Admin),
                ))
                .build(),
        ))
    }

    pub(super) async fn owner_set(
        &mut self,
        from: &jid::FullJid,
        query: &Element,
    ) -> Result<Option<Element>, StanzaError> {
        let real = from.bare();
        if self.affiliation(&real) != Affiliation::Owner {
            return Err(StanzaError::forbidden().with_text("only owners configure the room"));
        }
        if let Some(destroy) = query.get_child("destroy", ns::MUC_OWNER) {
            self.destroy(destroy).await;
            return Ok(None);
        }
        let Some(form) = query
            .get_child("x", ns::DATA_FORMS)
            .and_then(|x| DataForm::parse(x).ok())
        else {
            return Err(StanzaError::bad_request("expected a data form or destroy"));
        };
        match form.kind {
            Some(FormType::Cancel) => {
                if self.locked {
                    // §10.1.3: cancelling the initial configuration destroys the new room.
                    let destroy = Element::bare("destroy", ns::MUC_OWNER);
                    self.destroy(&destroy).await;
                }
                return Ok(None);
            }
            Some(FormType::Submit) => {}
            _ => return Err(StanzaError::bad_request("submit or cancel the form")),
        }
        let submitted = room_config::apply(
            &form,
            &self.record.config,
            self.service.settings.max_history,
        )?;
        if submitted.config.persistent
            && !self.record.config.persistent
            && self.context.is_anonymous_host(real.domain().as_str())
        {
            return Err(StanzaError::forbidden()
                .with_text("guests cannot make rooms persistent; an owner with an account can"));
        }
        let privacy_changed = submitted.config.whois_anyone != self.record.config.whois_anyone;
        let was_persistent = self.record.config.persistent;
        let was_members_only = self.record.config.members_only;
        self.record.config = submitted.config;
        for (list, affiliation) in [
            (submitted.owners, Affiliation::Owner),
            (submitted.admins, Affiliation::Admin),
        ] {
            let Some(list) = list else { continue };
            for entry in list {
                if let Ok(jid) = jid::BareJid::new(&entry) {
                    self.record
                        .affiliations
                        .insert(jid.to_string(), affiliation);
                }
            }
        }
        self.locked = false;
        if was_persistent && !self.record.config.persistent {
            if let Err(e) = self
                .context
                .room_store()
                .delete_room(self.jid.as_str())
                .await
            {
                tracing::error!(room = %self.jid, error = %e, "removing room record");
            }
        }
        self.save().await;
        // §10.2.1: becoming members-only removes everyone below member.
        if self.record.config.members_only && !was_members_only {
            let mut index = 0;
            while index < self.occupants.len() {
                if self.affiliation(&self.occupants[index].real) < Affiliation::Member {
                    self.remove_occupant(
                        index,
                        &[status::MEMBERS_ONLY],
                        Some("the room is now members-only"),
                        None,
                    );
                } else {
                    index += 1;
                }
            }
        }
        // A shorter history keeps the newest messages: the oldest go first, as when a message
        // arrives (XEP-0045 §7.2.15 history is the most recent messages).
        let keep = self
            .record
            .config
            .history_length
            .min(self.service.settings.max_history);
        while self.history.len() > keep {
            self.history.pop_front();
        }
        self.update_summary();
        let mut codes = vec![status::CONFIG_CHANGED];
        if privacy_changed {
            codes.push(if self.record.config.whois_anyone {
                "172"
            } else {
                "173"
            });
        }
        let notice = Build::new("message", ns::CLIENT)
            .attr("type", "groupchat")
            .attr("from", self.jid.to_string())
            .attr("id", format!("config-{:x}", rand::random::<u64>()))
            .child(
                Build::new("x", ns::MUC_USER)
                    .children(
                        codes
                            .into_iter()
                            .map(|c| Build::new("status", ns::MUC_USER).attr("code", c).build()),
                    )
                    .build(),
            )
            .build();
        let template = AddressedTemplate::new(&notice);
        for occupant in &self.occupants {
            self.deliver_template(occupant, &template);
        }
        Ok(None)
    }

    /// §10.9: everyone leaves with the destroy notice; the room and its record go.
    pub(super) async fn destroy(&mut self, destroy: &Element) {
        let mut notice = Build::new("destroy", ns::MUC_USER).attr_opt("jid", destroy.attr("jid"));
        if let Some(reason) = destroy.get_child("reason", ns::MUC_OWNER) {
            notice = notice.child(
                Build::new("reason", ns::MUC_USER)
                    .text(reason.text())
                    .build(),
            );
        }
        let notice = notice.build();
        for occupant in std::mem::take(&mut self.occupants) {
            // §10.9: the departing occupants are shown with no affiliation any more.
            let affiliation = Affiliation::None;
            let departure = Departure {
                role: Role::None,
                affiliation,
                codes: &[status::SELF],
                reason: None,
                actor: None,
            };
            let mut presence = self.unavailable_of(&occupant, false, &departure);
            if let Some(x) = presence.get_child_mut("x", ns::MUC_USER) {
                x.append_child(notice.clone());
            }
            self.deliver(&occupant, &presence);
        }
        self.record.config.persistent = false;
        if let Err(e) = self
            .context
            .room_store()
            .delete_room(self.jid.as_str())
            .await
        {
            tracing::error!(room = %self.jid, error = %e, "deleting room record");
        }
        // The room, now temporary and empty, ends; its archive goes with it (`Room::run`).
        self.update_summary();
        tracing::info!(room = %self.jid, "room destroyed");
    }
}
