//! What occupants say (XEP-0045 §7.4 groupchat, §7.5 private messages, §7.8 invitations, §8.1
//! subject, §7.2.15 history), the room archive (XEP-0313) and moderated retraction (XEP-0425).

use super::{HistoryEntry, Room};
use crate::archive;
use crate::muc::config::{Affiliation, AllowPm, Role};
use crate::router::AddressedTemplate;
use crate::stanza::Bare;
use crate::stanza::{self, ns, set_attr, Build, ErrorType, StanzaCondition, StanzaError};
use minidom::Element;

impl Room {
    /// §7.2.15: the last messages, limited as the client asks.
    pub(super) fn send_history(&self, session: &jid::FullJid, request: Option<&Element>) {
        let limit = |name: &str| {
            request
                .and_then(|h| h.attr(name))
                .and_then(|v| v.parse::<i64>().ok())
        };
        let max_stanzas = limit("maxstanzas").map(|n| n.max(0) as usize);
        let max_chars = limit("maxchars").map(|n| n.max(0) as usize);
        let seconds = limit("seconds");
        let since = request
            .and_then(|h| h.attr("since"))
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .map(|d| d.timestamp());
        let now = stanza::now_unix();
        let room_limit = self.record.config.history_length;
        let mut selected: Vec<&HistoryEntry> = Vec::new();
        let mut chars = 0usize;
        for entry in self.history.iter().rev() {
            if selected.len() >= room_limit || max_stanzas.is_some_and(|m| selected.len() >= m) {
                break;
            }
            if seconds.is_some_and(|s| now - entry.at > s) || since.is_some_and(|s| entry.at < s) {
                break;
            }
            if max_chars.is_some_and(|m| chars + entry.chars > m) {
                break;
            }
            chars += entry.chars;
            selected.push(entry);
        }
        for entry in selected.into_iter().rev() {
            let delay = Build::new("delay", ns::DELAY)
                .attr("from", self.jid.to_string())
                .attr("stamp", stanza::xep82_datetime(entry.at))
                .build();
            let delayed = entry
                .template
                .with_last_child(&salon_xml::serialize(&delay))
                .unwrap_or_else(|| entry.template.clone());
            self.deliver_to_session_after(session, &delayed, entry.commit.as_ref());
        }
    }

    pub(super) async fn on_message(&mut self, stanza: Element) {
        let Some(Ok(from)) = stanza.attr("from").map(crate::jid_memo::parse_full) else {
            return;
        };
        let Some(Ok(to)) = stanza.attr("to").map(crate::jid_memo::parse) else {
            return;
        };
        let sender = self.occupant_by_session(&from);
        if stanza::is_error(&stanza) {
            // A bounced groupchat message means the occupant's session is gone (§7.2.x ghosts).
            if let Some(index) = sender {
                let occupant = &mut self.occupants[index];
                occupant.sessions.retain(|s| s != &from);
                if occupant.sessions.is_empty() {
                    self.remove_occupant(index, &[], Some("the connection was lost"), None);
                } else {
                    self.sessions_changed(index);
                }
            }
            return;
        }
        if let Some(nick) = to.resource() {
            self.private_message(stanza.clone(), sender, nick.as_str());
            return;
        }
        let invite = stanza
            .get_child("x", ns::MUC_USER)
            .and_then(|x| x.get_child("invite", ns::MUC_USER))
            .is_some();
        if invite {
            self.mediated_invitation(&stanza, &from, sender).await;
            return;
        }
        if stanza.attr("type") != Some("groupchat") {
            self.context.bounce(
                &stanza,
                StanzaError::bad_request("messages to the room are of type groupchat"),
            );
            return;
        }
        let Some(index) = sender else {
            self.context.bounce(
                &stanza,
                StanzaError::new(ErrorType::Modify, StanzaCondition::NotAcceptable)
                    .with_text("join the room before sending to it"),
            );
            return;
        };
        let occupant = &self.occupants[index];
        if occupant.role < Role::Participant {
            self.context.bounce(
                &stanza,
                StanzaError::forbidden().with_text("you have no voice in this room"),
            );
            return;
        }
        let has_body = stanza.get_child("body", ns::CLIENT).is_some();
        if let Some(subject) = stanza
            .get_child("subject", ns::CLIENT)
            .filter(|_| !has_body)
        {
            if occupant.role < Role::Moderator && !self.record.config.change_subject {
                self.context.bounce(
                    &stanza,
                    StanzaError::forbidden().with_text("only moderators may change the subject"),
                );
                return;
            }
            self.record.subject = subject.text();
            self.record.subject_by = occupant.nick.clone();
            self.save().await;
        }
        if has_body {
            if let Err(error) = self.slow_mode_allows(index) {
                self.context.bounce(&stanza, error);
                return;
            }
        }
        let sender = self.occupant_jid(&self.occupants[index].nick);
        let archived = self.broadcast_groupchat(index, stanza).await;
        self.archived_one(archived).await;
        if has_body {
            crate::muc::push::room_message(&self.context, &self.jid, &sender).await;
        }
    }

    /// Returns the bytes archived (0: none), for the archive's size bound.
    pub(super) async fn broadcast_groupchat(&mut self, index: usize, mut stanza: Element) -> usize {
        let mut archived = 0;
        let occupant = &self.occupants[index];
        // The sender's children move over (no copy); its text between them was never kept.
        let foreign: Vec<Element> = stanza
            .take_nodes()
            .into_iter()
            .filter_map(minidom::Node::into_element)
            .filter(|c| !self.is_forged(c))
            .collect();
        let from = self.occupant_jid(&occupant.nick);
        let mut message = Build::new("message", ns::CLIENT)
            .attr("type", "groupchat")
            .attr("from", from.clone())
            .attr_opt("id", stanza.attr("id"))
            .children(foreign)
            .build();
        message.append_child(
            Build::new("occupant-id", ns::OCCUPANT_ID)
                .attr("id", occupant.occupant_id.clone())
                .build(),
        );
        // Only messages with a body are kept (history on join, archive). A stanza-id names a
        // kept message (XEP-0359, XEP-0313), so chat states and other transient
        // messages, such as those marked <no-store/>, get none.
        let stanza_id = message
            .get_child("body", ns::CLIENT)
            .is_some()
            .then(archive::new_stanza_id);
        if let Some(id) = &stanza_id {
            message.append_child(
                Build::new("stanza-id", ns::SID)
                    .attr("id", id.clone())
                    .attr("by", self.jid.to_string())
                    .build(),
            );
        }
        let template = AddressedTemplate::new(&message);
        let mut held_for = None;
        if let Some(stanza_id) = stanza_id {
            // The broadcast was serialised once already; reuse it rather than serialise again.
            let serialised = template
                .without_recipient()
                .unwrap_or_else(|| salon_xml::serialize(&message));
            let chars = serialised.len();
            if self.record.config.archive {
                archived = chars;
                // Durable before anyone sees it: an echoed message is never lost to a crash.
                // The room goes on at once; the copies wait for the commit in each
                // occupant's queue (with whatever the room sends them after it).
                let commit = self
                    .archive
                    .append(
                        self.jid.as_str(),
                        crate::storage::ArchivedMessage {
                            id: stanza_id.clone(),
                            timestamp: chrono::Utc::now().timestamp_micros(),
                            with: from,
                            stanza: String::from_utf8(serialised).unwrap_or_else(|e| {
                                String::from_utf8_lossy(e.as_bytes()).into_owned()
                            }),
                        },
                    )
                    .await;
                held_for = Some(commit);
            }
            let now = stanza::now_unix();
            self.history.push_back(HistoryEntry {
                chars,
                template: template.clone(),
                stanza_id: stanza_id.clone(),
                at: now,
                commit: held_for.clone(),
            });
            let keep = self
                .record
                .config
                .history_length
                .min(self.service.settings.max_history);
            while self.history.len() > keep {
                self.history.pop_front();
            }
        }
        for other in &self.occupants {
            self.deliver_template_after(other, &template, held_for.as_ref());
        }
        archived
    }

    pub(super) fn private_message(
        &self,
        stanza: Element,
        sender: Option<usize>,
        target_nick: &str,
    ) {
        let Some(sender) = sender else {
            self.context.bounce(
                &stanza,
                StanzaError::new(ErrorType::Modify, StanzaCondition::NotAcceptable)
                    .with_text("join the room before sending private messages"),
            );
            return;
        };
        if stanza.attr("type") == Some("groupchat") {
            self.context.bounce(
                &stanza,
                StanzaError::bad_request("groupchat messages go to the room, not to an occupant"),
            );
            return;
        }
        let Some(target) = self.occupant_by_nick(target_nick) else {
            self.context.bounce(
                &stanza,
                StanzaError::item_not_found().with_text("no occupant with that nickname"),
            );
            return;
        };
        let from = &self.occupants[sender];
        if !self.may_address_privately(sender, target) {
            self.context.bounce(
                &stanza,
                StanzaError::not_allowed()
                    .with_text("private messages are not allowed in this room"),
            );
            return;
        }
        let mut message = stanza.clone();
        set_attr(&mut message, "from", self.occupant_jid(&from.nick));
        for node in message.take_nodes() {
            if !node.as_element().is_some_and(|c| self.is_forged(c)) {
                message.append_node(node);
            }
        }
        if message.get_child("x", ns::MUC_USER).is_none() {
            message.append_child(Element::bare("x", ns::MUC_USER));
        }
        // XEP-0421 §4: every message the room sends for an occupant carries its occupant id.
        message.append_child(
            Build::new("occupant-id", ns::OCCUPANT_ID)
                .attr("id", from.occupant_id.clone())
                .build(),
        );
        self.deliver(&self.occupants[target], &message);
    }

    /// An id only the room may give, which a client put in its own stanza (XEP-0359 §3.3,
    /// XEP-0421 §4): dropped before the room adds the real one.
    pub(super) fn is_forged(&self, child: &Element) -> bool {
        (child.is("stanza-id", ns::SID) && child.attr("by") == Some(self.jid.as_str()))
            || child.is("occupant-id", ns::OCCUPANT_ID)
    }

    /// Whether occupant `sender` may send private messages (and IQs) to occupant `target`:
    /// the room's `allow_pm` setting, and between two anonymous guests only where the room
    /// allows that too.
    pub(super) fn may_address_privately(&self, sender: usize, target: usize) -> bool {
        let from = &self.occupants[sender];
        let is_guest = |jid: &jid::BareJid| self.context.is_anonymous_host(jid.domain().as_str());
        let between_guests = is_guest(&from.real) && is_guest(&self.occupants[target].real);
        match self.record.config.allow_pm {
            _ if between_guests && !self.record.config.guest_pm => false,
            AllowPm::Anyone => true,
            AllowPm::Participants => from.role >= Role::Participant,
            AllowPm::Moderators => from.role >= Role::Moderator,
            AllowPm::None => false,
        }
    }

    /// §7.8.2: the room forwards an invitation, and in a members-only room makes the invitee
    /// a member when the inviter may do so.
    pub(super) async fn mediated_invitation(
        &mut self,
        stanza: &Element,
        from: &jid::FullJid,
        sender: Option<usize>,
    ) {
        let Some(sender) = sender else {
            self.context.bounce(
                stanza,
                StanzaError::new(ErrorType::Modify, StanzaCondition::NotAcceptable)
                    .with_text("join the room before inviting"),
            );
            return;
        };
        let Some(invite) = stanza
            .get_child("x", ns::MUC_USER)
            .and_then(|x| x.get_child("invite", ns::MUC_USER))
        else {
            return;
        };
        let Some(Ok(invitee)) = invite.attr("to").map(jid::Jid::new) else {
            self.context.bounce(stanza, StanzaError::jid_malformed());
            return;
        };
        let inviter_affiliation = self.affiliation(&self.occupants[sender].real);
        if self.record.config.members_only {
            let may_invite = inviter_affiliation >= Affiliation::Admin
                || (self.record.config.allow_invites && inviter_affiliation >= Affiliation::Member);
            if !may_invite {
                self.context.bounce(
                    stanza,
                    StanzaError::forbidden()
                        .with_text("only admins may invite to this members-only room"),
                );
                return;
            }
            let bare = invitee.bare();
            if self.affiliation(&bare) < Affiliation::Member {
                self.record
                    .affiliations
                    .insert(bare.to_string(), Affiliation::Member);
                self.save().await;
            }
        }
        let reason = invite.get_child("reason", ns::MUC_USER).map(|r| r.text());
        let mut x = Build::new("x", ns::MUC_USER).child(
            Build::new("invite", ns::MUC_USER)
                .attr("from", from.bare().to_string())
                .children(reason.map(|r| Build::new("reason", ns::MUC_USER).text(r).build()))
                .build(),
        );
        if !self.record.config.password.is_empty() {
            x = x.child(
                Build::new("password", ns::MUC_USER)
                    .text(self.record.config.password.clone())
                    .build(),
            );
        }
        let message = Build::new("message", ns::CLIENT)
            .attr("from", self.jid.to_string())
            .attr("to", invitee.to_string())
            .attr_opt("id", stanza.attr("id"))
            .child(x.build())
            // XEP-0249 form too, for clients that only understand direct invitations.
            .child(
                Build::new("x", ns::CONFERENCE)
                    .attr("jid", self.jid.to_string())
                    .build(),
            )
            .build();
        self.context.route(message).await;
    }

    pub(super) async fn archive_query(
        &mut self,
        from: &jid::FullJid,
        query: &Element,
    ) -> Result<Option<Element>, StanzaError> {
        let joined = self.occupant_by_session(from).is_some();
        let affiliation = self.affiliation(&from.bare());
        // Members-only rooms share their archive with members; open rooms with anyone who
        // could join and read it anyway.
        let allowed = if self.record.config.members_only {
            affiliation >= Affiliation::Member
        } else {
            affiliation != Affiliation::Outcast
        };
        if !allowed && !joined {
            return Err(StanzaError::forbidden());
        }
        self.archive.flush().await;
        archive::answer_query(
            &self.context,
            self.jid.as_str(),
            from,
            query,
            archive::WithKind::Full,
        )
        .await
    }

    /// XEP-0425: a moderator retracts a message; everyone is told and the archive keeps a
    /// tombstone.
    pub(super) async fn moderate(
        &mut self,
        from: &jid::FullJid,
        query: &Element,
    ) -> Result<Option<Element>, StanzaError> {
        let Some(me) = self.occupant_by_session(from) else {
            return Err(StanzaError::forbidden()
                .with_text("only moderators present in the room may moderate"));
        };
        if self.occupants[me].role < Role::Moderator {
            return Err(
                StanzaError::forbidden().with_text("only moderators may retract others' messages")
            );
        }
        if query.get_child("retract", ns::RETRACT).is_none() {
            return Err(StanzaError::bad_request("only retraction is supported"));
        }
        let id = query
            .attr("id")
            .ok_or_else(|| StanzaError::bad_request("missing id"))?
            .to_string();
        let reason = query.get_child("reason", ns::MODERATE).map(|r| r.text());
        self.archive.flush().await;
        let original = self
            .context
            .archive_store()
            .archive_get(self.jid.as_str(), &id)
            .await
            .map_err(|e| {
                StanzaError::storage(&format!("reading message {id} of {}", self.jid), &e)
            })?;
        let in_history = self.history.iter().position(|h| h.stanza_id == id);
        if original.is_none() && in_history.is_none() {
            return Err(StanzaError::item_not_found().with_text("no message with that stanza-id"));
        }
        let moderator = &self.occupants[me];
        let moderator_jid = self.occupant_jid(&moderator.nick);
        let moderator_id = moderator.occupant_id.clone();
        let moderated = |tag: &str| {
            let mut element = Build::new(tag, ns::RETRACT)
                .child(
                    Build::new("moderated", ns::MODERATE)
                        .attr("by", moderator_jid.clone())
                        .child(
                            Build::new("occupant-id", ns::OCCUPANT_ID)
                                .attr("id", moderator_id.clone())
                                .build(),
                        )
                        .build(),
                )
                .children(
                    reason
                        .clone()
                        .map(|r| Build::new("reason", ns::RETRACT).text(r).build()),
                );
            if tag == "retract" {
                element = element.attr("id", id.clone());
            } else {
                element = element.attr("stamp", stanza::xep82_datetime(stanza::now_unix()));
            }
            element.build()
        };
        let announcement = Build::new("message", ns::CLIENT)
            .attr("type", "groupchat")
            .attr("from", self.jid.to_string())
            .attr("id", format!("retract-{:x}", rand::random::<u64>()))
            .child(moderated("retract"))
            .build();
        let retracted = moderated("retracted");
        let template = AddressedTemplate::new(&announcement);
        for occupant in &self.occupants {
            self.deliver_template(occupant, &template);
        }
        // History on join no longer shows the message.
        if let Some(index) = in_history {
            self.history.remove(index);
        }
        if let Some(original) = original {
            if let Some(tombstone) = tombstone(&original.stanza, retracted) {
                if let Err(e) = self
                    .context
                    .archive_store()
                    .archive_replace(self.jid.as_str(), &id, &tombstone)
                    .await
                {
                    tracing::error!(room = %self.jid, error = %e, "storing retraction tombstone");
                }
            }
        }
        Ok(None)
    }
}

/// XEP-0425 §5: keep the envelope and the sender's occupant id, replace the content with a
/// `<retracted/>` element.
pub(super) fn tombstone(stored: &str, retracted: Element) -> Option<String> {
    let original = salon_xml::parse_stored(stored, ns::CLIENT)?;
    let mut kept = Element::bare(original.name(), ns::CLIENT);
    for name in ["type", "from", "id"] {
        if let Some(value) = original.attr(name) {
            crate::stanza::set_attr(&mut kept, name, value.to_string());
        }
    }
    for child in original.children() {
        if child.is("occupant-id", ns::OCCUPANT_ID) || child.is("stanza-id", ns::SID) {
            kept.append_child(child.clone());
        }
    }
    kept.append_child(retracted);
    Some(salon_xml::serialize_to_string(&kept))
}
