//! IQs to the room and its occupants: dispatch by namespace, disco#info (XEP-0045 §6.4),
//! self-ping (XEP-0410) and IQs relayed between occupants (§18.1 IQ rule 3).

use super::{RelayedIq, Room, MAX_RELAYED_IQS, RELAYED_IQ_TIMEOUT};
use crate::archive;
use crate::muc::config::Affiliation;
use crate::muc::invite_links;
use crate::service::{self, ServiceInfo};
use crate::stanza::forms::{DataForm, Field, FieldType, FormType};
use crate::stanza::{ns, set_attr, Build, ErrorType, StanzaCondition, StanzaError};

/// The well-known node for discovering one's reserved nick (XEP-0045 §7.12).
const RESERVED_NICK_NODE: &str = "x-roomuser-item";
use crate::stanza::Bare;
use minidom::Element;

impl Room {
    pub(super) async fn on_iq(&mut self, stanza: Element) {
        let kind = stanza.attr("type").unwrap_or_default().to_string();
        if kind == "result" || kind == "error" {
            // Answers to relayed IQs may come from a bare JID (vCards).
            self.relay_answer(stanza).await;
            return;
        }
        if kind != "get" && kind != "set" {
            return;
        }
        let Some(Ok(from)) = stanza.attr("from").map(jid::Jid::new) else {
            return;
        };
        let from = match from.try_into_full() {
            Ok(from) => from,
            Err(_) => {
                let answer = self.answer_bare_sender(&stanza, &kind);
                self.context.answer_iq(&stanza, answer);
                return;
            }
        };
        let to_occupant = stanza
            .attr("to")
            .and_then(|t| jid::Jid::new(t).ok())
            .and_then(|t| t.resource().map(|r| r.as_str().to_string()));
        let result = if let Some(nick) = to_occupant {
            match self.iq_to_occupant(&stanza, &from, &nick) {
                Ok(Some(relayed)) => {
                    self.context.route(relayed).await;
                    return;
                }
                Ok(None) => Ok(None),
                Err(error) => Err(error),
            }
        } else {
            let payload = stanza.children().next().cloned();
            let common = payload.as_ref().and_then(|payload| {
                // The reserved-nick node (§7.12) tells the asker its registered nick; any
                // other node gets the room's own info (§6.4).
                let info = |node: Option<&str>| match node {
                    Some(RESERVED_NICK_NODE) => Ok(self.reserved_nick_info(&from)),
                    _ => Ok(self.disco_info()),
                };
                let items = |node: Option<&str>| match node {
                    Some(invite_links::NS_COMMANDS) => Ok(invite_links::command_items(
                        self.jid.as_str(),
                        self.affiliation(&from.bare()) == Affiliation::Owner,
                    )),
                    _ => Ok(service::no_items()),
                };
                service::answer_discovery_or_ping(&kind, payload, info, items)
            });
            if let Some(answer) = common {
                self.context.answer_iq(&stanza, answer);
                return;
            }
            let namespace = payload.as_ref().map(|p| p.ns()).unwrap_or_default();
            match (kind.as_str(), namespace.as_str(), payload) {
                ("get", ns::MUC_ADMIN, Some(query)) => self.admin_get(&from, &query),
                ("set", ns::MUC_ADMIN, Some(query)) => self.admin_set(&from, &query).await,
                ("get", ns::MUC_OWNER, _) => self.owner_get(&from),
                ("set", ns::MUC_OWNER, Some(query)) => self.owner_set(&from, &query).await,
                ("get", ns::REGISTER, _) => self.register_get(&from),
                ("set", ns::REGISTER, Some(query)) => self.register_set(&from, &query).await,
                ("set", ns::MAM, Some(query)) => self.archive_query(&from, &query).await,
                ("get", ns::MAM, _) => Ok(Some(archive::query_form())),
                ("set", ns::MODERATE, Some(query)) => self.moderate(&from, &query).await,
                ("get", ns::VCARD, _) => self.vcard_get(),
                ("set", ns::VCARD, Some(vcard)) => self.vcard_set(&from, &vcard).await,
                ("set", crate::muc::push::NS, Some(request)) => {
                    crate::muc::push::enable_or_disable(&self.context, &self.jid, &from, &request)
                        .await
                }
                ("set", invite_links::NS_COMMANDS, Some(command)) => {
                    let requester = from.bare();
                    let at = invite_links::CommandContext {
                        context: &self.context,
                        room: &self.jid,
                        is_owner: self.affiliation(&requester) == Affiliation::Owner,
                        requester: &requester,
                    };
                    invite_links::command(at, &command).await
                }
                _ => Err(StanzaError::service_unavailable()),
            }
        };
        self.context.answer_iq(&stanza, result);
    }

    /// An IQ from a bare JID or another server's domain (RFC 6120 §8.2.3: answered, never
    /// dropped). Such a sender is no occupant and has no session, so it learns what the room
    /// tells anyone (disco, ping, its vCard) and is refused the rest.
    fn answer_bare_sender(
        &self,
        stanza: &Element,
        kind: &str,
    ) -> Result<Option<Element>, StanzaError> {
        let to_occupant = stanza
            .attr("to")
            .and_then(|t| jid::Jid::new(t).ok())
            .is_some_and(|t| t.resource().is_some());
        if to_occupant {
            return Err(
                StanzaError::new(ErrorType::Modify, StanzaCondition::NotAcceptable)
                    .with_text("only occupants may address occupants"),
            );
        }
        let Some(payload) = stanza.children().next() else {
            return Err(StanzaError::bad_request("an IQ carries one payload"));
        };
        let info = |_node: Option<&str>| Ok(self.disco_info());
        let items = |_node: Option<&str>| Ok(service::no_items());
        if let Some(answer) = service::answer_discovery_or_ping(kind, payload, info, items) {
            return answer;
        }
        if kind == "get" && payload.is("vCard", ns::VCARD) {
            return self.vcard_get();
        }
        Err(StanzaError::forbidden().with_text("a session's full JID is needed"))
    }

    /// An IQ to an occupant JID. A client pinging its own occupant JID learns whether it is
    /// still joined (XEP-0410; answered here, `Ok(None)`). Any other goes to the occupant
    /// (§18.1 IQ rule 3), from the asker's occupant JID so that neither learns the other's
    /// real JID: the relayed stanza is returned for routing. vCard requests go to the
    /// occupant's bare JID, where the server keeps vCards (as XEP-0153 avatars need).
    /// Occupants who may not exchange private messages may not exchange IQs either.
    pub(super) fn iq_to_occupant(
        &mut self,
        stanza: &Element,
        from: &jid::FullJid,
        nick: &str,
    ) -> Result<Option<Element>, StanzaError> {
        let Some(me) = self.occupant_by_session(from) else {
            return Err(
                StanzaError::new(ErrorType::Modify, StanzaCondition::NotAcceptable)
                    .with_text("you are not in this room"),
            );
        };
        let target = self.occupant_by_nick(nick).ok_or_else(|| {
            StanzaError::item_not_found().with_text("no occupant with that nickname")
        })?;
        let payload = stanza.children().next();
        let is_ping = payload.is_some_and(|p| p.is("ping", ns::PING));
        if target == me && is_ping {
            return Ok(None);
        }
        if !self.may_address_privately(me, target) {
            return Err(StanzaError::not_allowed()
                .with_text("private messages and queries are not allowed in this room"));
        }
        let answerer: jid::Jid = if payload.is_some_and(|p| p.is("vCard", ns::VCARD)) {
            self.occupants[target].real.clone().into()
        } else {
            let Some(session) = self.occupants[target].sessions.first() else {
                return Err(StanzaError::item_not_found());
            };
            session.clone().into()
        };
        let now = std::time::Instant::now();
        self.relayed
            .retain(|_, waiting| now.duration_since(waiting.at) < RELAYED_IQ_TIMEOUT);
        if self.relayed.len() >= MAX_RELAYED_IQS {
            return Err(
                StanzaError::new(ErrorType::Wait, StanzaCondition::ResourceConstraint)
                    .with_text("too many queries waiting in this room"),
            );
        }
        let relay_id = format!("{:032x}", rand::random::<u128>());
        let mut relayed = stanza.clone();
        set_attr(&mut relayed, "id", relay_id.clone());
        set_attr(
            &mut relayed,
            "from",
            self.occupant_jid(&self.occupants[me].nick),
        );
        set_attr(&mut relayed, "to", answerer.to_string());
        self.relayed.insert(
            relay_id,
            RelayedIq {
                id: stanza.attr("id").unwrap_or_default().to_string(),
                asker: from.clone(),
                answerer,
                answerer_nick: self.occupants[target].nick.clone(),
                at: now,
            },
        );
        Ok(Some(relayed))
    }

    /// The answer to an IQ relayed by [`iq_to_occupant`](Self::iq_to_occupant) goes back to
    /// the asker, from the answerer's occupant JID and with the asker's id. Anything else is
    /// dropped: answers are never answered (RFC 6120 §8.2.3).
    pub(super) async fn relay_answer(&mut self, stanza: Element) {
        let Some(id) = stanza.attr("id") else {
            return;
        };
        let from = stanza.attr("from").and_then(|f| jid::Jid::new(f).ok());
        let from_answerer = |waiting: &RelayedIq| Some(&waiting.answerer) == from.as_ref();
        if !self.relayed.get(id).is_some_and(from_answerer) {
            return;
        }
        let Some(waiting) = self.relayed.remove(id) else {
            return;
        };
        let mut answer = stanza;
        set_attr(&mut answer, "id", waiting.id);
        set_attr(
            &mut answer,
            "from",
            self.occupant_jid(&waiting.answerer_nick),
        );
        set_attr(&mut answer, "to", waiting.asker.to_string());
        self.context.route(answer).await;
    }

    /// XEP-0045 §7.12: the asker's registered nick as an identity's name, or an empty query.
    pub(super) fn reserved_nick_info(&self, from: &jid::FullJid) -> Element {
        let registered = self.record.registered_nicks.get(from.bare().as_str());
        Build::new("query", ns::DISCO_INFO)
            .attr("node", RESERVED_NICK_NODE)
            .children(registered.map(|nick| {
                Build::new("identity", ns::DISCO_INFO)
                    .attr("category", "conference")
                    .attr("type", "text")
                    .attr("name", nick.clone())
                    .build()
            }))
            .build()
    }

    pub(super) fn disco_info(&self) -> Element {
        let config = &self.record.config;
        let features = [
            ns::MUC,
            ns::DISCO_INFO,
            if config.persistent {
                "muc_persistent"
            } else {
                "muc_temporary"
            },
            if config.public {
                "muc_public"
            } else {
                "muc_hidden"
            },
            if config.members_only {
                "muc_membersonly"
            } else {
                "muc_open"
            },
            if config.moderated {
                "muc_moderated"
            } else {
                "muc_unmoderated"
            },
            if config.password.is_empty() {
                "muc_unsecured"
            } else {
                "muc_passwordprotected"
            },
            if config.whois_anyone {
                "muc_nonanonymous"
            } else {
                "muc_semianonymous"
            },
            ns::SID,
            ns::OCCUPANT_ID,
            ns::MODERATE,
            ns::REGISTER,
            "urn:xmpp:mam:2",
            "http://jabber.org/protocol/muc#stable_id",
            "http://jabber.org/protocol/muc#self-ping-optimization",
            ns::VCARD,
        ];
        let field = |var: &str, value: String| Field::untyped(var).value(value);
        let form = DataForm::new(FormType::Result)
            .field(Field::form_type(ns::ROOMINFO))
            .field(field(
                "muc#roominfo_description",
                config.description.clone(),
            ))
            .field(field(
                "muc#roominfo_occupants",
                self.occupants.len().to_string(),
            ))
            .field(field("muc#roominfo_subject", self.record.subject.clone()))
            .field(field("muc#roomconfig_roomname", config.name.clone()))
            .fields(self.context.web_base_url().map(|base| {
                let room = self.jid.node().map(|n| n.as_str()).unwrap_or_default();
                field("muc#roominfo_webchat_url", format!("{base}/join/{room}"))
            }))
            .field(field(
                "muc#roominfo_slow_mode_duration",
                config.slow_mode_duration.to_string(),
            ))
            // XEP-0486, and the field Prosody's mod_vcard_muc used before it, which clients
            // such as Conversations still read.
            .fields(self.avatar_hash().into_iter().flat_map(|hash| {
                [
                    Field::new("muc#roominfo_avatarhash", FieldType::TextMulti).value(hash.clone()),
                    Field::untyped("{http://modules.prosody.im/mod_vcard_muc}avatar#sha1")
                        .value(hash),
                ]
            }))
            .field(field(
                "muc#roominfo_subjectmod",
                if config.change_subject { "1" } else { "0" }.into(),
            ))
            .to_element();
        let name = if config.name.is_empty() {
            self.jid
                .node()
                .map(|n| n.as_str().to_string())
                .unwrap_or_default()
        } else {
            config.name.clone()
        };
        ServiceInfo {
            category: "conference",
            kind: "text",
            name: &name,
            features: &features,
            forms: vec![form],
        }
        .to_query()
    }
}
