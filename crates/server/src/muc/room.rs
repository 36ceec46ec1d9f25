//! One multi-user chat room (XEP-0045 §7–§10): occupants, roles and affiliations, presence and
//! message fan-out, subject, configuration, moderation, invitations, nick registration,
//! history on join (with XEP-0203 delays), XEP-0359 stanza ids, XEP-0421 occupant ids,
//! XEP-0410 self-ping, IQs relayed between occupants (§18.1) and XEP-0425 moderated
//! retraction. The room runs as one task that owns
//! all of this state; stanzas reach it through a bounded queue.

use super::config::{self as room_config, Affiliation, AllowPm, Role, RoomRecord};
use super::nick::{self, NickError};
use super::{MucService, RoomHandle, NS_MUC, NS_MUC_ADMIN, NS_MUC_OWNER, NS_MUC_USER, NS_ROOMINFO};
use crate::archive::{self, ArchiveWriter};
use crate::router::AddressedTemplate;
use crate::server::Server;
use crate::stanza::{self, ns, remove_attr, set_attr, Build, ErrorType, StanzaError};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use minidom::Element;
use sha2::Sha256;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use tokio::sync::mpsc;

pub const NS_OCCUPANT_ID: &str = "urn:xmpp:occupant-id:0";
pub const NS_SID: &str = "urn:xmpp:sid:0";
pub const NS_MODERATE: &str = "urn:xmpp:message-moderate:1";
pub const NS_RETRACT: &str = "urn:xmpp:message-retract:1";
pub const NS_REGISTER: &str = "jabber:iq:register";
const NS_CONFERENCE: &str = "jabber:x:conference";

/// One person in the room: one nick, one real bare JID, one or more sessions.
struct Occupant {
    nick: String,
    /// `nick::comparison_key(nick)`, to find look-alikes.
    key: String,
    real: jid::BareJid,
    sessions: Vec<jid::FullJid>,
    /// The router's handles of `sessions`, looked up when they change rather than for every
    /// delivery (fan-out is the hot path).
    handles: Vec<Arc<crate::router::SessionHandle>>,
    role: Role,
    /// The presence payload (show, status, priority, caps…) last sent by the occupant.
    payload: Vec<Element>,
    occupant_id: String,
}

/// How an occupant leaves or changes, for its unavailable presence (XEP-0045 §7.14, §8.2).
#[derive(Clone, Copy)]
struct Departure<'a> {
    role: Role,
    affiliation: Affiliation,
    codes: &'a [&'a str],
    reason: Option<&'a str>,
    actor: Option<&'a str>,
}

/// A message kept for history on join.
struct HistoryEntry {
    /// The groupchat message as broadcast (without `to`).
    stanza: Element,
    /// Unix seconds at which the room received it.
    at: i64,
    /// Characters of the serialised message, for `maxchars`.
    chars: usize,
}

pub struct Room {
    server: Arc<Server>,
    service: Arc<MucService>,
    handle: Arc<RoomHandle>,
    jid: jid::BareJid,
    record: RoomRecord,
    /// A new room stays locked until its owner configures it or asks for an instant room
    /// (XEP-0045 §10.1).
    locked: bool,
    occupants: Vec<Occupant>,
    history: VecDeque<HistoryEntry>,
    archive: ArchiveWriter,
    /// IQs relayed between occupants (§18.1 IQ rule 3), by the id the room gave them.
    relayed: HashMap<String, RelayedIq>,
}

/// An IQ the room passed from one occupant to another, waiting for its answer.
struct RelayedIq {
    /// The id the asker chose.
    id: String,
    asker: jid::FullJid,
    /// Where the request went; only an answer from there is passed back.
    answerer: jid::Jid,
    /// The answerer's nickname at the time, which the answer comes from.
    answerer_nick: String,
    at: std::time::Instant,
}

/// Relayed IQs a room keeps waiting for answers, and for how long.
const MAX_RELAYED_IQS: usize = 256;
const RELAYED_IQ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The status codes of XEP-0045 §15.6 that this room sends.
mod status {
    pub const SELF: &str = "110";
    pub const NON_ANONYMOUS: &str = "100";
    pub const LOGGED: &str = "170";
    pub const CREATED: &str = "201";
    pub const NICK_ASSIGNED: &str = "210";
    pub const BANNED: &str = "301";
    pub const NICK_CHANGED: &str = "303";
    pub const KICKED: &str = "307";
    pub const AFFILIATION_CHANGED: &str = "321";
    pub const MEMBERS_ONLY: &str = "322";
    pub const CONFIG_CHANGED: &str = "104";
}

impl Room {
    pub fn new(
        server: Arc<Server>,
        service: Arc<MucService>,
        handle: Arc<RoomHandle>,
        jid: jid::BareJid,
        mut record: RoomRecord,
        created_now: bool,
    ) -> Room {
        if record.occupant_id_secret.is_empty() {
            record.occupant_id_secret = format!("{:032x}", rand::random::<u128>());
        }
        let archive = crate::archive::writer(&server);
        let room = Room {
            server,
            service,
            handle,
            jid,
            record,
            locked: created_now,
            occupants: Vec::new(),
            history: VecDeque::new(),
            archive,
            relayed: HashMap::new(),
        };
        room.update_summary();
        room
    }

    pub async fn run(mut self, mut inbox: mpsc::Receiver<Element>) {
        while let Some(stanza) = inbox.recv().await {
            let name = stanza.name().to_string();
            match name.as_str() {
                "presence" => self.on_presence(stanza).await,
                "message" => self.on_message(stanza).await,
                "iq" => self.on_iq(stanza).await,
                _ => {}
            }
            if self.should_close() {
                break;
            }
        }
        self.service.room_closed(self.jid.as_str(), &self.handle);
        // Stanzas that raced with the room's end are answered as for a room that is gone.
        inbox.close();
        while let Ok(stanza) = inbox.try_recv() {
            if stanza.name() != "presence" || stanza.attr("type").is_none() {
                self.server.bounce(&stanza, StanzaError::item_not_found());
            }
        }
        tracing::debug!(room = %self.jid, "room closed");
    }

    fn should_close(&self) -> bool {
        self.occupants.is_empty() && !self.record.config.persistent
    }

    fn update_summary(&self) {
        if let Ok(mut summary) = self.handle.summary.lock() {
            summary.name = self.record.config.name.clone();
            summary.public = self.record.config.public && !self.locked;
            summary.occupants = self.occupants.len();
        }
    }

    async fn save(&self) {
        if !self.record.config.persistent {
            return;
        }
        match serde_json::to_string(&self.record) {
            Ok(text) => {
                if let Err(e) = self
                    .server
                    .storage
                    .save_room(self.jid.as_str(), &text)
                    .await
                {
                    tracing::error!(room = %self.jid, error = %e, "saving room");
                }
            }
            Err(e) => tracing::error!(room = %self.jid, error = %e, "serialising room"),
        }
    }

    // ----- Lookups -----

    fn affiliation(&self, real: &jid::BareJid) -> Affiliation {
        self.record
            .affiliations
            .get(real.as_str())
            .copied()
            .unwrap_or(Affiliation::None)
    }

    fn occupant_by_session(&self, full: &jid::FullJid) -> Option<usize> {
        self.occupants
            .iter()
            .position(|o| o.sessions.contains(full))
    }

    fn occupant_by_nick(&self, nick: &str) -> Option<usize> {
        let key = nick::comparison_key(nick);
        self.occupants.iter().position(|o| o.key == key)
    }

    fn occupant_jid(&self, nick: &str) -> String {
        format!("{}/{}", self.jid, nick)
    }

    fn default_role(&self, affiliation: Affiliation) -> Role {
        match affiliation {
            Affiliation::Owner | Affiliation::Admin => Role::Moderator,
            Affiliation::Member => Role::Participant,
            Affiliation::None if self.record.config.moderated => Role::Visitor,
            Affiliation::None => Role::Participant,
            Affiliation::Outcast => Role::None,
        }
    }

    /// XEP-0421: the same real bare JID gets the same id in this room, and nobody can work
    /// the JID back out of it.
    fn occupant_id(&self, real: &jid::BareJid) -> String {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(self.record.occupant_id_secret.as_bytes())
                .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(real.as_str().as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..18])
    }

    fn may_see_real_jids(&self, viewer: &Occupant) -> bool {
        self.record.config.whois_anyone || viewer.role == Role::Moderator
    }

    // ----- Delivery -----

    /// Send one stanza to every session of an occupant.
    fn deliver(&self, occupant: &Occupant, stanza: &Element) {
        let template = AddressedTemplate::new(stanza);
        self.deliver_template(occupant, &template);
    }

    fn deliver_template(&self, occupant: &Occupant, template: &Arc<AddressedTemplate>) {
        for handle in &occupant.handles {
            handle.send_addressed(template);
        }
    }

    /// Look the handles of an occupant's sessions up again after its sessions changed (or a
    /// session reconnected under the same address).
    fn sessions_changed(&mut self, index: usize) {
        let handles = self.occupants[index]
            .sessions
            .iter()
            .filter_map(|session| self.server.router.session(session))
            .collect();
        self.occupants[index].handles = handles;
    }

    fn deliver_to_session(&self, session: &jid::FullJid, template: &Arc<AddressedTemplate>) {
        if let Some(handle) = self.server.router.session(session) {
            handle.send_addressed(template);
        }
    }

    /// Serialise once per audience (with and without real JIDs) and queue to everyone.
    fn broadcast_presence(&self, subject: &Occupant, codes: &[&str], extra: Option<Element>) {
        let with_jid = self.presence_of(subject, true, codes, extra.clone());
        let without_jid = self.presence_of(subject, false, codes, extra);
        self.deliver_by_audience(&with_jid, &without_jid, None);
    }

    /// Queue one of two versions of a stanza to every occupant but `skip`: the one showing
    /// real JIDs to those allowed to see them (§7.2.3–§7.2.4), the other to the rest. Each
    /// version is serialised once.
    fn deliver_by_audience(&self, with_jid: &Element, without_jid: &Element, skip: Option<usize>) {
        let with_jid = AddressedTemplate::new(with_jid);
        let without_jid = AddressedTemplate::new(without_jid);
        for (i, occupant) in self.occupants.iter().enumerate() {
            if Some(i) == skip {
                continue;
            }
            let template = if self.may_see_real_jids(occupant) {
                &with_jid
            } else {
                &without_jid
            };
            self.deliver_template(occupant, template);
        }
    }

    /// An occupant's presence as the room shows it (XEP-0045 §7.2.3).
    fn presence_of(
        &self,
        occupant: &Occupant,
        with_jid: bool,
        codes: &[&str],
        item_detail: Option<Element>,
    ) -> Element {
        let mut presence = Build::new("presence", ns::CLIENT)
            .attr("from", self.occupant_jid(&occupant.nick))
            .children(occupant.payload.iter().cloned())
            .build();
        let affiliation = self.affiliation(&occupant.real);
        let mut item = Build::new("item", NS_MUC_USER)
            .attr("affiliation", affiliation.as_str())
            .attr("role", occupant.role.as_str());
        if with_jid {
            if let Some(first) = occupant.sessions.first() {
                item = item.attr("jid", first.to_string());
            }
        }
        // A role change's reason and actor go inside the item (§8.4).
        if let Some(detail) = item_detail {
            item = item.child(detail);
        }
        let mut x = Build::new("x", NS_MUC_USER).child(item.build());
        for code in codes {
            x = x.child(
                Build::new("status", NS_MUC_USER)
                    .attr("code", *code)
                    .build(),
            );
        }
        presence.append_child(x.build());
        presence.append_child(
            Build::new("occupant-id", NS_OCCUPANT_ID)
                .attr("id", occupant.occupant_id.clone())
                .build(),
        );
        presence
    }

    /// The unavailable presence announcing that `occupant` left, was kicked or banned.
    fn unavailable_of(
        &self,
        occupant: &Occupant,
        with_jid: bool,
        departure: &Departure,
    ) -> Element {
        let Departure {
            role,
            affiliation,
            codes,
            reason,
            actor,
        } = *departure;
        let mut item = Build::new("item", NS_MUC_USER)
            .attr("affiliation", affiliation.as_str())
            .attr("role", role.as_str());
        if with_jid {
            if let Some(first) = occupant.sessions.first() {
                item = item.attr("jid", first.to_string());
            }
        }
        if let Some(actor) = actor {
            item = item.child(
                Build::new("actor", NS_MUC_USER)
                    .attr("nick", actor.to_string())
                    .build(),
            );
        }
        if let Some(reason) = reason {
            item = item.child(
                Build::new("reason", NS_MUC_USER)
                    .text(reason.to_string())
                    .build(),
            );
        }
        let mut x = Build::new("x", NS_MUC_USER).child(item.build());
        for code in codes {
            x = x.child(
                Build::new("status", NS_MUC_USER)
                    .attr("code", *code)
                    .build(),
            );
        }
        Build::new("presence", ns::CLIENT)
            .attr("type", "unavailable")
            .attr("from", self.occupant_jid(&occupant.nick))
            .child(x.build())
            .child(
                Build::new("occupant-id", NS_OCCUPANT_ID)
                    .attr("id", occupant.occupant_id.clone())
                    .build(),
            )
            .build()
    }

    /// Remove an occupant and tell everyone, the occupant included (with 110 for them).
    fn remove_occupant(
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

    // ----- Presence: join, leave, nick change, status (§7.2, §7.6, §7.7) -----

    async fn on_presence(&mut self, stanza: Element) {
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
                    self.server.bounce(&stanza, StanzaError::jid_malformed());
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
                    self.server.bounce(
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

    fn presence_payload(stanza: &Element) -> Vec<Element> {
        stanza
            .children()
            .filter(|c| !(c.ns() == NS_MUC || c.ns() == NS_MUC_USER || c.ns() == NS_OCCUPANT_ID))
            .cloned()
            .collect()
    }

    fn update_presence(&mut self, index: usize, stanza: &Element) {
        self.sessions_changed(index);
        self.occupants[index].payload = Self::presence_payload(stanza);
        let occupant = &self.occupants[index];
        self.broadcast_presence(occupant, &[], None);
    }

    /// The error for a nick that cannot be used, or the enforced nick.
    fn check_nick(
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
                StanzaError::new(ErrorType::Cancel, "not-acceptable").with_text(why)
            }
        })?;
        let key = nick::comparison_key(&enforced);
        if let Some(other) = self.occupants.iter().position(|o| o.key == key) {
            if Some(other) != own_index && self.occupants[other].real != *real {
                return Err(StanzaError::new(ErrorType::Cancel, "conflict")
                    .with_text("that nickname (or one that looks the same) is in use"));
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
            return Err(StanzaError::new(ErrorType::Cancel, "conflict")
                .with_text("that nickname is registered by someone else"));
        }
        Ok(enforced)
    }

    async fn join(&mut self, stanza: &Element, from: jid::FullJid, requested: &str) {
        let real = from.to_bare();
        let muc = stanza.get_child("x", NS_MUC);
        let affiliation = self.affiliation(&real);
        let is_owner = affiliation == Affiliation::Owner;
        // A newly created room belongs to its creator (§10.1.1).
        let creating =
            self.locked && self.occupants.is_empty() && self.record.affiliations.is_empty();
        if self.locked && !creating && !is_owner {
            self.server.bounce(
                stanza,
                StanzaError::item_not_found()
                    .with_text("the room is being set up; try again shortly"),
            );
            return;
        }
        if let Some(index) = self.occupant_by_nick(requested) {
            if self.occupants[index].real != real && self.is_returning_visitor(index, &from) {
                self.take_over(index, from, muc);
                return;
            }
        }
        let nick = match self.check_nick(requested, &real, None) {
            Ok(nick) => nick,
            Err(error) => {
                self.server.bounce(stanza, error);
                return;
            }
        };
        // Another session of someone already present joins under the same nick (§7.2.x
        // multi-session): share the occupant.
        if let Some(index) = self.occupant_by_nick(&nick) {
            if self.occupants[index].real == real {
                self.occupants[index].sessions.push(from.clone());
                self.sessions_changed(index);
                self.send_room_state(index, &from, muc, &[]);
                return;
            }
        }
        if !creating {
            if affiliation == Affiliation::Outcast {
                self.server.bounce(
                    stanza,
                    StanzaError::forbidden().with_text("you are banned from this room"),
                );
                return;
            }
            if self.record.config.members_only && affiliation < Affiliation::Member {
                self.server.bounce(
                    stanza,
                    StanzaError::new(ErrorType::Auth, "registration-required")
                        .with_text("this room is for members only"),
                );
                return;
            }
            let password = muc
                .and_then(|x| x.get_child("password", NS_MUC))
                .map(|p| p.text());
            if !self.record.config.password.is_empty()
                && affiliation < Affiliation::Admin
                && password.as_deref() != Some(self.record.config.password.as_str())
            {
                self.server.bounce(
                    stanza,
                    StanzaError::new(ErrorType::Auth, "not-authorized")
                        .with_text("a password is required"),
                );
                return;
            }
            let limit = match self.record.config.max_occupants {
                0 => self.service.settings.max_occupants,
                n => n.min(self.service.settings.max_occupants),
            };
            if self.occupants.len() >= limit && affiliation < Affiliation::Admin {
                self.server.bounce(
                    stanza,
                    StanzaError::new(ErrorType::Wait, "service-unavailable")
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
            let creator_is_guest = self.server.is_anonymous_host(real.domain().as_str());
            tracing::info!(room = %self.jid, creator = %real, guest = creator_is_guest, "room created");
            codes.push(status::CREATED);
        }
        if nick != requested {
            codes.push(status::NICK_ASSIGNED);
        }
        let affiliation = self.affiliation(&real);
        let occupant = Occupant {
            key: nick::comparison_key(&nick),
            nick,
            occupant_id: self.occupant_id(&real),
            real,
            sessions: vec![from.clone()],
            handles: self.server.router.session(&from).into_iter().collect(),
            role: self.default_role(affiliation),
            payload: Self::presence_payload(stanza),
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
        self.send_room_state(index, &from, muc, &codes);
    }

    /// A visitor whose connection dropped comes back on a new session (a reloaded page that
    /// did not resume): every session of the occupant is gone or waiting for resumption, and
    /// the newcomer connects from the same address.
    fn is_returning_visitor(&self, index: usize, newcomer: &jid::FullJid) -> bool {
        let Some(new_ip) = self.server.router.session(newcomer).map(|h| h.peer_ip) else {
            return false;
        };
        let mut same_address = false;
        for session in &self.occupants[index].sessions {
            match self.server.router.session(session) {
                Some(handle) if !handle.is_detached() => return false,
                Some(handle) => same_address |= handle.peer_ip == new_ip,
                None => same_address = true,
            }
        }
        same_address
    }

    /// Give the occupant to its returning visitor without a leave or join for anyone else;
    /// the old, detached session is closed.
    fn take_over(&mut self, index: usize, from: jid::FullJid, muc: Option<&Element>) {
        let old_real = self.occupants[index].real.clone();
        let new_real = from.to_bare();
        if let Some(affiliation) = self.record.affiliations.remove(old_real.as_str()) {
            if affiliation != Affiliation::Outcast {
                self.record
                    .affiliations
                    .entry(new_real.to_string())
                    .or_insert(affiliation);
            }
        }
        let old_sessions =
            std::mem::replace(&mut self.occupants[index].sessions, vec![from.clone()]);
        self.occupants[index].real = new_real;
        self.sessions_changed(index);
        for session in old_sessions {
            if let Some(handle) = self.server.router.session(&session) {
                handle.kick("conflict", "a new session took over this one");
            }
        }
        tracing::info!(room = %self.jid, nick = %self.occupants[index].nick, "returning visitor took over its occupant");
        self.send_room_state(index, &from, muc, &[]);
    }

    /// What a joining session receives (§7.2.3–§7.2.16): occupants, its own presence with
    /// status codes, history, then the subject.
    fn send_room_state(
        &self,
        index: usize,
        session: &jid::FullJid,
        muc: Option<&Element>,
        extra_codes: &[&str],
    ) {
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
        let own = AddressedTemplate::new(&self.presence_of(me, true, &codes, None));
        self.deliver_to_session(session, &own);
        self.send_history(session, muc.and_then(|x| x.get_child("history", NS_MUC)));
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

    /// §7.2.15: the last messages, limited as the client asks.
    fn send_history(&self, session: &jid::FullJid, request: Option<&Element>) {
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
            let mut message = entry.stanza.clone();
            message.append_child(
                Build::new("delay", ns::DELAY)
                    .attr("from", self.jid.to_string())
                    .attr("stamp", stanza::xep82_datetime(entry.at))
                    .build(),
            );
            self.deliver_to_session(session, &AddressedTemplate::new(&message));
        }
    }

    async fn change_nick(&mut self, index: usize, stanza: &Element, requested: &str) {
        let real = self.occupants[index].real.clone();
        let nick = match self.check_nick(requested, &real, Some(index)) {
            Ok(nick) => nick,
            Err(error) => {
                self.server.bounce(stanza, error);
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
                .get_child_mut("x", NS_MUC_USER)
                .and_then(|x| x.get_child_mut("item", NS_MUC_USER))
            {
                set_attr(item, "nick", nick.clone());
            }
            presence
        };
        let leave_with_jid = new_nick_item(true);
        let leave_without_jid = new_nick_item(false);
        let mut own_leave = new_nick_item(true);
        if let Some(x) = own_leave.get_child_mut("x", NS_MUC_USER) {
            x.append_child(
                Build::new("status", NS_MUC_USER)
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

    // ----- Messages (§7.4, §7.5, §7.8, §8.1) -----

    async fn on_message(&mut self, stanza: Element) {
        let Some(Ok(from)) = stanza.attr("from").map(jid::FullJid::new) else {
            return;
        };
        let Some(Ok(to)) = stanza.attr("to").map(jid::Jid::new) else {
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
            .get_child("x", NS_MUC_USER)
            .and_then(|x| x.get_child("invite", NS_MUC_USER))
            .is_some();
        if invite {
            self.mediated_invitation(&stanza, &from, sender).await;
            return;
        }
        if stanza.attr("type") != Some("groupchat") {
            self.server.bounce(
                &stanza,
                StanzaError::bad_request("messages to the room are of type groupchat"),
            );
            return;
        }
        let Some(index) = sender else {
            self.server.bounce(
                &stanza,
                StanzaError::new(ErrorType::Modify, "not-acceptable")
                    .with_text("join the room before sending to it"),
            );
            return;
        };
        let occupant = &self.occupants[index];
        if occupant.role < Role::Participant {
            self.server.bounce(
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
                self.server.bounce(
                    &stanza,
                    StanzaError::forbidden().with_text("only moderators may change the subject"),
                );
                return;
            }
            self.record.subject = subject.text();
            self.record.subject_by = occupant.nick.clone();
            self.save().await;
        }
        self.broadcast_groupchat(index, stanza).await;
    }

    async fn broadcast_groupchat(&mut self, index: usize, mut stanza: Element) {
        let occupant = &self.occupants[index];
        let stanza_id = archive::new_stanza_id();
        let foreign: Vec<Element> = stanza
            .children()
            .filter(|c| !self.is_forged(c))
            .cloned()
            .collect();
        let mut message = Build::new("message", ns::CLIENT)
            .attr("type", "groupchat")
            .attr("from", self.occupant_jid(&occupant.nick))
            .attr_opt("id", stanza.attr("id"))
            .children(foreign)
            .build();
        message.append_child(
            Build::new("occupant-id", NS_OCCUPANT_ID)
                .attr("id", occupant.occupant_id.clone())
                .build(),
        );
        message.append_child(
            Build::new("stanza-id", NS_SID)
                .attr("id", stanza_id.clone())
                .attr("by", self.jid.to_string())
                .build(),
        );
        remove_attr(&mut stanza, "to");
        let template = AddressedTemplate::new(&message);
        for other in &self.occupants {
            self.deliver_template(other, &template);
        }
        let is_content = message.get_child("body", ns::CLIENT).is_some()
            || message.get_child("subject", ns::CLIENT).is_none();
        if message.get_child("body", ns::CLIENT).is_some() && is_content {
            // The broadcast was serialised once already; reuse it rather than serialise again.
            let serialised = template
                .without_recipient()
                .unwrap_or_else(|| salon_xml::serialize(&message));
            let now = stanza::now_unix();
            self.history.push_back(HistoryEntry {
                chars: serialised.len(),
                stanza: message.clone(),
                at: now,
            });
            let keep = self
                .record
                .config
                .history_length
                .min(self.service.settings.max_history);
            while self.history.len() > keep {
                self.history.pop_front();
            }
            if self.record.config.archive {
                self.archive
                    .append(
                        self.jid.as_str(),
                        crate::storage::ArchivedMessage {
                            id: stanza_id,
                            timestamp: chrono::Utc::now().timestamp_micros(),
                            with: self.occupant_jid(&occupant.nick),
                            stanza: String::from_utf8_lossy(&serialised).into_owned(),
                        },
                    )
                    .await;
            }
        }
    }

    fn private_message(&self, stanza: Element, sender: Option<usize>, target_nick: &str) {
        let Some(sender) = sender else {
            self.server.bounce(
                &stanza,
                StanzaError::new(ErrorType::Modify, "not-acceptable")
                    .with_text("join the room before sending private messages"),
            );
            return;
        };
        if stanza.attr("type") == Some("groupchat") {
            self.server.bounce(
                &stanza,
                StanzaError::bad_request("groupchat messages go to the room, not to an occupant"),
            );
            return;
        }
        let Some(target) = self.occupant_by_nick(target_nick) else {
            self.server.bounce(
                &stanza,
                StanzaError::item_not_found().with_text("no occupant with that nickname"),
            );
            return;
        };
        let from = &self.occupants[sender];
        if !self.may_address_privately(sender, target) {
            self.server.bounce(
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
        if message.get_child("x", NS_MUC_USER).is_none() {
            message.append_child(Element::bare("x", NS_MUC_USER));
        }
        // XEP-0421 §4: every message the room sends for an occupant carries its occupant id.
        message.append_child(
            Build::new("occupant-id", NS_OCCUPANT_ID)
                .attr("id", from.occupant_id.clone())
                .build(),
        );
        self.deliver(&self.occupants[target], &message);
    }

    /// An id only the room may give, which a client put in its own stanza (XEP-0359 §3.3,
    /// XEP-0421 §4): dropped before the room adds the real one.
    fn is_forged(&self, child: &Element) -> bool {
        (child.is("stanza-id", NS_SID) && child.attr("by") == Some(self.jid.as_str()))
            || child.is("occupant-id", NS_OCCUPANT_ID)
    }

    /// Whether occupant `sender` may send private messages (and IQs) to occupant `target`:
    /// the room's `allow_pm` setting, and between two anonymous guests only where the room
    /// allows that too.
    fn may_address_privately(&self, sender: usize, target: usize) -> bool {
        let from = &self.occupants[sender];
        let is_guest = |jid: &jid::BareJid| self.server.is_anonymous_host(jid.domain().as_str());
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
    async fn mediated_invitation(
        &mut self,
        stanza: &Element,
        from: &jid::FullJid,
        sender: Option<usize>,
    ) {
        let Some(sender) = sender else {
            self.server.bounce(
                stanza,
                StanzaError::new(ErrorType::Modify, "not-acceptable")
                    .with_text("join the room before inviting"),
            );
            return;
        };
        let Some(invite) = stanza
            .get_child("x", NS_MUC_USER)
            .and_then(|x| x.get_child("invite", NS_MUC_USER))
        else {
            return;
        };
        let Some(Ok(invitee)) = invite.attr("to").map(jid::Jid::new) else {
            self.server.bounce(stanza, StanzaError::jid_malformed());
            return;
        };
        let inviter_affiliation = self.affiliation(&self.occupants[sender].real);
        if self.record.config.members_only {
            let may_invite = inviter_affiliation >= Affiliation::Admin
                || (self.record.config.allow_invites && inviter_affiliation >= Affiliation::Member);
            if !may_invite {
                self.server.bounce(
                    stanza,
                    StanzaError::forbidden()
                        .with_text("only admins may invite to this members-only room"),
                );
                return;
            }
            let bare = invitee.to_bare();
            if self.affiliation(&bare) < Affiliation::Member {
                self.record
                    .affiliations
                    .insert(bare.to_string(), Affiliation::Member);
                self.save().await;
            }
        }
        let reason = invite.get_child("reason", NS_MUC_USER).map(|r| r.text());
        let mut x = Build::new("x", NS_MUC_USER).child(
            Build::new("invite", NS_MUC_USER)
                .attr("from", from.to_bare().to_string())
                .children(reason.map(|r| Build::new("reason", NS_MUC_USER).text(r).build()))
                .build(),
        );
        if !self.record.config.password.is_empty() {
            x = x.child(
                Build::new("password", NS_MUC_USER)
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
                Build::new("x", NS_CONFERENCE)
                    .attr("jid", self.jid.to_string())
                    .build(),
            )
            .build();
        self.server.route(message).await;
    }

    // ----- IQ (§9, §10, disco, registration, MAM, moderation, self-ping) -----

    async fn on_iq(&mut self, stanza: Element) {
        let kind = stanza.attr("type").unwrap_or_default().to_string();
        if kind == "result" || kind == "error" {
            // Answers to relayed IQs may come from a bare JID (vCards).
            self.relay_answer(stanza).await;
            return;
        }
        let Some(Ok(from)) = stanza.attr("from").map(jid::FullJid::new) else {
            return;
        };
        if kind != "get" && kind != "set" {
            return;
        }
        let to_occupant = stanza
            .attr("to")
            .and_then(|t| jid::Jid::new(t).ok())
            .and_then(|t| t.resource().map(|r| r.as_str().to_string()));
        let result = if let Some(nick) = to_occupant {
            match self.iq_to_occupant(&stanza, &from, &nick) {
                Ok(Some(relayed)) => {
                    self.server.route(relayed).await;
                    return;
                }
                Ok(None) => Ok(None),
                Err(error) => Err(error),
            }
        } else {
            let payload = stanza.children().next().cloned();
            let namespace = payload.as_ref().map(|p| p.ns()).unwrap_or_default();
            match (kind.as_str(), namespace.as_str(), payload) {
                ("get", ns::DISCO_INFO, _) => Ok(Some(self.disco_info())),
                ("get", ns::DISCO_ITEMS, _) => Ok(Some(Element::bare("query", ns::DISCO_ITEMS))),
                ("get", NS_MUC_ADMIN, Some(query)) => self.admin_get(&from, &query),
                ("set", NS_MUC_ADMIN, Some(query)) => self.admin_set(&from, &query).await,
                ("get", NS_MUC_OWNER, _) => self.owner_get(&from),
                ("set", NS_MUC_OWNER, Some(query)) => self.owner_set(&from, &query).await,
                ("get", NS_REGISTER, _) => self.register_get(&from),
                ("set", NS_REGISTER, Some(query)) => self.register_set(&from, &query).await,
                ("set", archive::NS_MAM, Some(query)) => self.archive_query(&from, &query).await,
                ("get", archive::NS_MAM, _) => Ok(Some(archive::query_form())),
                ("set", NS_MODERATE, Some(query)) => self.moderate(&from, &query).await,
                ("get", ns::PING, _) => Ok(None),
                _ => Err(StanzaError::service_unavailable()),
            }
        };
        self.server.answer_iq(&stanza, result);
    }

    /// An IQ to an occupant JID. A client pinging its own occupant JID learns whether it is
    /// still joined (XEP-0410; answered here, `Ok(None)`). Any other goes to the occupant
    /// (§18.1 IQ rule 3), from the asker's occupant JID so that neither learns the other's
    /// real JID: the relayed stanza is returned for routing. vCard requests go to the
    /// occupant's bare JID, where the server keeps vCards (as XEP-0153 avatars need).
    /// Occupants who may not exchange private messages may not exchange IQs either.
    fn iq_to_occupant(
        &mut self,
        stanza: &Element,
        from: &jid::FullJid,
        nick: &str,
    ) -> Result<Option<Element>, StanzaError> {
        let Some(me) = self.occupant_by_session(from) else {
            return Err(StanzaError::new(ErrorType::Modify, "not-acceptable")
                .with_text("you are not in this room"));
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
            return Err(StanzaError::new(ErrorType::Wait, "resource-constraint")
                .with_text("too many queries waiting in this room"));
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
    async fn relay_answer(&mut self, stanza: Element) {
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
        self.server.route(answer).await;
    }

    fn disco_info(&self) -> Element {
        let config = &self.record.config;
        let features = [
            NS_MUC,
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
            NS_SID,
            NS_OCCUPANT_ID,
            NS_MODERATE,
            NS_REGISTER,
            "urn:xmpp:mam:2",
            "http://jabber.org/protocol/muc#stable_id",
            "http://jabber.org/protocol/muc#self-ping-optimization",
        ];
        let field = |var: &'static str, value: String| {
            Build::new("field", ns::DATA_FORMS)
                .attr("var", var)
                .child(Build::new("value", ns::DATA_FORMS).text(value).build())
                .build()
        };
        let form = Build::new("x", ns::DATA_FORMS)
            .attr("type", "result")
            .child(
                Build::new("field", ns::DATA_FORMS)
                    .attr("var", "FORM_TYPE")
                    .attr("type", "hidden")
                    .child(
                        Build::new("value", ns::DATA_FORMS)
                            .text(NS_ROOMINFO)
                            .build(),
                    )
                    .build(),
            )
            .child(field(
                "muc#roominfo_description",
                config.description.clone(),
            ))
            .child(field(
                "muc#roominfo_occupants",
                self.occupants.len().to_string(),
            ))
            .child(field("muc#roominfo_subject", self.record.subject.clone()))
            .child(field("muc#roomconfig_roomname", config.name.clone()))
            .children(self.server.config.web_base_url().map(|base| {
                let room = self.jid.node().map(|n| n.as_str()).unwrap_or_default();
                field("muc#roominfo_webchat_url", format!("{base}/join/{room}"))
            }))
            .child(field(
                "muc#roominfo_subjectmod",
                if config.change_subject { "1" } else { "0" }.into(),
            ))
            .build();
        let name = if config.name.is_empty() {
            self.jid
                .node()
                .map(|n| n.as_str().to_string())
                .unwrap_or_default()
        } else {
            config.name.clone()
        };
        Build::new("query", ns::DISCO_INFO)
            .child(
                Build::new("identity", ns::DISCO_INFO)
                    .attr("category", "conference")
                    .attr("type", "text")
                    .attr("name", name)
                    .build(),
            )
            .children(
                features
                    .into_iter()
                    .map(|f| Build::new("feature", ns::DISCO_INFO).attr("var", f).build()),
            )
            .child(form)
            .build()
    }

    /// The requester's affiliation, and its role if present.
    fn standing(&self, from: &jid::FullJid) -> (Affiliation, Role) {
        let affiliation = self.affiliation(&from.to_bare());
        let role = self
            .occupant_by_session(from)
            .map(|i| self.occupants[i].role)
            .unwrap_or(Role::None);
        (affiliation, role)
    }

    /// §9.5, §9.8, §8.5: lists by affiliation (admins, owners) or role (moderators).
    fn admin_get(
        &self,
        from: &jid::FullJid,
        query: &Element,
    ) -> Result<Option<Element>, StanzaError> {
        let (affiliation, role) = self.standing(from);
        let item = query
            .get_child("item", NS_MUC_ADMIN)
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
                if *a == wanted {
                    let mut item = Build::new("item", NS_MUC_ADMIN)
                        .attr("affiliation", a.as_str())
                        .attr("jid", jid.clone());
                    if let Some(nick) = self.record.registered_nicks.get(jid) {
                        item = item.attr("nick", nick.clone());
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
                    Build::new("item", NS_MUC_ADMIN)
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
            Build::new("query", NS_MUC_ADMIN).children(items).build(),
        ))
    }

    /// §8.2–§8.6, §9.1–§9.8, §10.3–§10.7: role and affiliation changes, checked all together
    /// before any is applied.
    async fn admin_set(
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
            Affiliation(jid::BareJid, Affiliation, Option<String>),
        }
        let mut changes = Vec::new();
        for item in query.children().filter(|c| c.is("item", NS_MUC_ADMIN)) {
            let reason = item.get_child("reason", NS_MUC_ADMIN).map(|r| r.text());
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
                    .map(|j| j.to_bare())
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
                        return Err(StanzaError::new(ErrorType::Cancel, "conflict")
                            .with_text("a room needs at least one owner"));
                    }
                }
                changes.push(Change::Affiliation(jid, affiliation, reason));
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
                            reason.map(|r| Build::new("reason", NS_MUC_USER).text(r).build());
                        self.broadcast_presence(occupant, &[], reason);
                    }
                }
                Change::Affiliation(jid, affiliation, reason) => {
                    affiliations_changed = true;
                    self.apply_affiliation(&jid, affiliation, reason.as_deref(), actor);
                }
            }
        }
        if affiliations_changed {
            self.save().await;
        }
        Ok(None)
    }

    fn apply_affiliation(
        &mut self,
        jid: &jid::BareJid,
        affiliation: Affiliation,
        reason: Option<&str>,
        actor: Option<&str>,
    ) {
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

    fn owner_get(&self, from: &jid::FullJid) -> Result<Option<Element>, StanzaError> {
        if self.affiliation(&from.to_bare()) != Affiliation::Owner {
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
            Build::new("query", NS_MUC_OWNER)
                .child(room_config::form(
                    &self.record.config,
                    list(Affiliation::Owner),
                    list(Affiliation::Admin),
                ))
                .build(),
        ))
    }

    async fn owner_set(
        &mut self,
        from: &jid::FullJid,
        query: &Element,
    ) -> Result<Option<Element>, StanzaError> {
        let real = from.to_bare();
        if self.affiliation(&real) != Affiliation::Owner {
            return Err(StanzaError::forbidden().with_text("only owners configure the room"));
        }
        if let Some(destroy) = query.get_child("destroy", NS_MUC_OWNER) {
            self.destroy(destroy).await;
            return Ok(None);
        }
        let Some(form) = query.get_child("x", ns::DATA_FORMS) else {
            return Err(StanzaError::bad_request("expected a data form or destroy"));
        };
        match form.attr("type") {
            Some("cancel") => {
                if self.locked {
                    // §10.1.3: cancelling the initial configuration destroys the new room.
                    let destroy = Element::bare("destroy", NS_MUC_OWNER);
                    self.destroy(&destroy).await;
                }
                return Ok(None);
            }
            Some("submit") => {}
            _ => return Err(StanzaError::bad_request("submit or cancel the form")),
        }
        let submitted =
            room_config::apply(form, &self.record.config, self.service.settings.max_history)?;
        if submitted.config.persistent
            && !self.record.config.persistent
            && self.server.is_anonymous_host(real.domain().as_str())
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
            if let Err(e) = self.server.storage.delete_room(self.jid.as_str()).await {
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
        self.history
            .truncate(self.record.config.history_length.min(self.history.len()));
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
                Build::new("x", NS_MUC_USER)
                    .children(
                        codes
                            .into_iter()
                            .map(|c| Build::new("status", NS_MUC_USER).attr("code", c).build()),
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
    async fn destroy(&mut self, destroy: &Element) {
        let mut notice = Build::new("destroy", NS_MUC_USER).attr_opt("jid", destroy.attr("jid"));
        if let Some(reason) = destroy.get_child("reason", NS_MUC_OWNER) {
            notice = notice.child(
                Build::new("reason", NS_MUC_USER)
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
            if let Some(x) = presence.get_child_mut("x", NS_MUC_USER) {
                x.append_child(notice.clone());
            }
            self.deliver(&occupant, &presence);
        }
        self.record.config.persistent = false;
        if let Err(e) = self.server.storage.delete_room(self.jid.as_str()).await {
            tracing::error!(room = %self.jid, error = %e, "deleting room record");
        }
        // A later room of the same name starts with an empty archive.
        self.archive.flush().await;
        if let Err(e) = self.server.storage.archive_delete(self.jid.as_str()).await {
            tracing::error!(room = %self.jid, error = %e, "deleting room archive");
        }
        self.update_summary();
        tracing::info!(room = %self.jid, "room destroyed");
    }

    /// §7.10: the registration form, or the registered nick.
    fn register_get(&self, from: &jid::FullJid) -> Result<Option<Element>, StanzaError> {
        let real = from.to_bare();
        if let Some(nick) = self.record.registered_nicks.get(real.as_str()) {
            return Ok(Some(
                Build::new("query", NS_REGISTER)
                    .child(Element::bare("registered", NS_REGISTER))
                    .child(
                        Build::new("username", NS_REGISTER)
                            .text(nick.clone())
                            .build(),
                    )
                    .build(),
            ));
        }
        Ok(Some(
            Build::new("query", NS_REGISTER)
                .child(
                    Build::new("x", ns::DATA_FORMS)
                        .attr("type", "form")
                        .child(
                            Build::new("title", ns::DATA_FORMS)
                                .text("Register a nickname")
                                .build(),
                        )
                        .child(
                            Build::new("field", ns::DATA_FORMS)
                                .attr("var", "FORM_TYPE")
                                .attr("type", "hidden")
                                .child(
                                    Build::new("value", ns::DATA_FORMS)
                                        .text("http://jabber.org/protocol/muc#register")
                                        .build(),
                                )
                                .build(),
                        )
                        .child(
                            Build::new("field", ns::DATA_FORMS)
                                .attr("var", "muc#register_roomnick")
                                .attr("type", "text-single")
                                .attr("label", "Nickname")
                                .child(Element::bare("required", ns::DATA_FORMS))
                                .build(),
                        )
                        .build(),
                )
                .build(),
        ))
    }

    async fn register_set(
        &mut self,
        from: &jid::FullJid,
        query: &Element,
    ) -> Result<Option<Element>, StanzaError> {
        let real = from.to_bare();
        if self.server.is_anonymous_host(real.domain().as_str()) {
            return Err(StanzaError::not_allowed().with_text("guests cannot register nicknames"));
        }
        if query.get_child("remove", NS_REGISTER).is_some() {
            self.record.registered_nicks.remove(real.as_str());
            self.save().await;
            return Ok(None);
        }
        let requested = query
            .get_child("x", ns::DATA_FORMS)
            .and_then(|x| {
                x.children()
                    .find(|f| f.attr("var") == Some("muc#register_roomnick"))
            })
            .and_then(|f| f.get_child("value", ns::DATA_FORMS))
            .map(|v| v.text())
            .ok_or_else(|| StanzaError::bad_request("muc#register_roomnick is required"))?;
        let own = self.occupants.iter().position(|o| o.real == real);
        let nick = self.check_nick(&requested, &real, own)?;
        if self.affiliation(&real) == Affiliation::Outcast {
            return Err(StanzaError::forbidden());
        }
        if self.record.config.members_only && self.affiliation(&real) < Affiliation::Member {
            return Err(StanzaError::new(ErrorType::Auth, "registration-required")
                .with_text("ask an admin to make you a member first"));
        }
        self.record.registered_nicks.insert(real.to_string(), nick);
        if self.affiliation(&real) == Affiliation::None {
            self.record
                .affiliations
                .insert(real.to_string(), Affiliation::Member);
        }
        self.save().await;
        Ok(None)
    }

    async fn archive_query(
        &mut self,
        from: &jid::FullJid,
        query: &Element,
    ) -> Result<Option<Element>, StanzaError> {
        let joined = self.occupant_by_session(from).is_some();
        let affiliation = self.affiliation(&from.to_bare());
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
            &self.server,
            self.jid.as_str(),
            from,
            query,
            archive::WithKind::Full,
        )
        .await
    }

    /// XEP-0425: a moderator retracts a message; everyone is told and the archive keeps a
    /// tombstone.
    async fn moderate(
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
        if query.get_child("retract", NS_RETRACT).is_none() {
            return Err(StanzaError::bad_request("only retraction is supported"));
        }
        let id = query
            .attr("id")
            .ok_or_else(|| StanzaError::bad_request("missing id"))?
            .to_string();
        let reason = query.get_child("reason", NS_MODERATE).map(|r| r.text());
        self.archive.flush().await;
        let original = self
            .server
            .storage
            .archive_get(self.jid.as_str(), &id)
            .await
            .map_err(|_| StanzaError::internal())?;
        let in_history = self.history.iter().position(|h| {
            h.stanza
                .children()
                .any(|c| c.is("stanza-id", NS_SID) && c.attr("id") == Some(id.as_str()))
        });
        if original.is_none() && in_history.is_none() {
            return Err(StanzaError::item_not_found().with_text("no message with that stanza-id"));
        }
        let moderator = &self.occupants[me];
        let moderator_jid = self.occupant_jid(&moderator.nick);
        let moderator_id = moderator.occupant_id.clone();
        let moderated = |tag: &str| {
            let mut element = Build::new(tag, NS_RETRACT)
                .child(
                    Build::new("moderated", NS_MODERATE)
                        .attr("by", moderator_jid.clone())
                        .child(
                            Build::new("occupant-id", NS_OCCUPANT_ID)
                                .attr("id", moderator_id.clone())
                                .build(),
                        )
                        .build(),
                )
                .children(
                    reason
                        .clone()
                        .map(|r| Build::new("reason", NS_RETRACT).text(r).build()),
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
                    .server
                    .storage
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
fn tombstone(stored: &str, retracted: Element) -> Option<String> {
    let original = salon_xml::parse_stored(stored, ns::CLIENT)?;
    let mut kept = Element::bare(original.name(), ns::CLIENT);
    for name in ["type", "from", "id"] {
        if let Some(value) = original.attr(name) {
            crate::stanza::set_attr(&mut kept, name, value.to_string());
        }
    }
    for child in original.children() {
        if child.is("occupant-id", NS_OCCUPANT_ID) || child.is("stanza-id", NS_SID) {
            kept.append_child(child.clone());
        }
    }
    kept.append_child(retracted);
    Some(String::from_utf8_lossy(&salon_xml::serialize(&kept)).into_owned())
}
