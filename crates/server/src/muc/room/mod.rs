//! One multi-user chat room (XEP-0045 §7–§10): the room's state, its task, and the lookups and
//! presence delivery every part of it shares. The room runs as one task that owns all of this
//! state; stanzas reach it through a bounded queue. By concern:
//! - `occupants`: joining, leaving, nick changes, presence updates (§7.2, §7.6, §7.7, §7.14);
//! - `messages`: groupchat with XEP-0359 stanza ids and XEP-0421 occupant ids, history on join
//!   (XEP-0203 delays), private messages, invitations, the archive, XEP-0425 retraction;
//! - `iq`: IQ dispatch, disco#info, XEP-0410 self-ping, IQs relayed between occupants (§18.1);
//! - `affiliations`: roles and affiliations (§8, §9); `address_bans`: how long a ban lasts, and
//!   a banned guest's address and browser;
//! - `archive_bounds`: the archive's lifetime and size (deleted with a temporary room, capped);
//! - `owner`: configuration and destruction (§10);
//! - `registration`: nickname registration (§7.10);
//! - `returning`: a guest's place given back to the same browser (`muc::visitor`);
//! - `slow_mode`: how often an occupant may speak (XEP-0500).

mod address_bans;
mod affiliations;
mod archive_bounds;
mod avatar;
mod iq;
mod messages;
mod occupants;
mod owner;
mod registration;
mod remote_outbox;
mod returning;
mod slow_mode;
#[cfg(test)]
mod tests;

use super::config::{Affiliation, Role, RoomRecord};
use super::nick;
use super::{MucService, RoomHandle};
use crate::archive::ArchiveWriter;
use crate::router::AddressedTemplate;
use crate::service::ServiceContext;
use crate::stanza::{ns, Build};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use minidom::Element;
use sha2::Sha256;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use tokio::sync::mpsc;

/// A stanza for the room, and its local sender's hold on its stream-management answers (see
/// [`InFlight`](crate::session_handle::InFlight)), released once the room has handled it.
pub struct RoomInput {
    pub stanza: Element,
    pub sent_by: Option<crate::session_handle::InFlight>,
}

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
    /// When its last message with a body went out, for slow mode (XEP-0500).
    last_message: Option<std::time::Instant>,
    /// A guest's browser id (`visitor.rs`), banned with it and proof for taking its place
    /// back after a reload.
    browser: Option<String>,
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

/// A message kept for history on join: the bytes serialised for its fan-out, shared with it,
/// rather than a parsed tree (a few bytes on the wire can be hundreds parsed).
struct HistoryEntry {
    /// The groupchat message as broadcast.
    template: Arc<AddressedTemplate>,
    /// Its XEP-0359 stanza id, for retraction.
    stanza_id: String,
    /// Unix seconds at which the room received it.
    at: i64,
    /// Characters of the serialised message, for `maxchars`.
    chars: usize,
    /// Its archive write, which a copy sent as history waits for too.
    commit: Option<crate::durable::Commit>,
}

pub struct Room {
    /// The service's view of the server: routing, the rooms' stores, the sessions to fan out to.
    context: ServiceContext,
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
    /// Groupchat messages since the archive was last trimmed to its bounds.
    since_archive_trim: usize,
    /// Bytes of the messages archived since then.
    bytes_since_archive_trim: u64,
    /// When the guests' retention was last applied to the archive (archive_bounds.rs).
    last_age_trim: Option<std::time::Instant>,
    /// Copies for occupants on other servers waiting for their archive commit.
    remote_outbox: remote_outbox::RemoteOutbox,
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
        context: ServiceContext,
        service: Arc<MucService>,
        handle: Arc<RoomHandle>,
        jid: jid::BareJid,
        mut record: RoomRecord,
        created_now: bool,
    ) -> Room {
        if record.occupant_id_secret.is_empty() {
            record.occupant_id_secret = format!("{:032x}", rand::random::<u128>());
        }
        let archive = crate::archive::writer(&context);
        let room = Room {
            context,
            service,
            handle,
            jid,
            record,
            locked: created_now,
            occupants: Vec::new(),
            history: VecDeque::new(),
            archive,
            relayed: HashMap::new(),
            since_archive_trim: 0,
            bytes_since_archive_trim: 0,
            last_age_trim: None,
            remote_outbox: Default::default(),
        };
        room.update_summary();
        room
    }

    pub async fn run(mut self, mut inbox: mpsc::Receiver<RoomInput>) {
        if self.locked {
            // A new room starts with an empty archive, whatever an earlier room of the same
            // name left (a temporary room that ended in a crash): the archive was readable
            // only by those allowed in that room.
            self.delete_archive().await;
        }
        // The archive's bounds are applied as messages come and hourly (for retention in a
        // quiet room); the first tick, at once, applies them to a room loaded from storage.
        // Not once the server shuts down: a trim must not run under the final flush.
        let mut bounds_tick = tokio::time::interval(archive_bounds::CHECK_INTERVAL);
        let mut shutdown = self.context.shutdown_signal();
        let mut stopping = false;
        loop {
            let stanza = tokio::select! {
                stanza = inbox.recv() => stanza,
                _ = crate::service::shutdown_requested(&mut shutdown), if !stopping => {
                    stopping = true;
                    continue;
                }
                _ = bounds_tick.tick(), if !stopping => {
                    self.bound_archive().await;
                    if self.forget_ended_bans() {
                        self.save().await;
                    }
                    continue;
                }
            };
            let Some(RoomInput { stanza, sent_by }) = stanza else {
                break;
            };
            let name = stanza.name().to_string();
            match name.as_str() {
                "presence" => self.on_presence(stanza).await,
                "message" => self.on_message(stanza).await,
                "iq" => self.on_iq(stanza).await,
                _ => {}
            }
            // Its archive write is queued (if it has one): the sender's stream-management
            // answers may go out once that commits.
            drop(sent_by);
            if self.should_close() {
                break;
            }
        }
        if !self.record.config.persistent {
            // A temporary room's archive ends with it, before the name is free again, so that
            // whoever creates the same name next cannot read it.
            self.delete_archive().await;
        }
        self.service.room_closed(self.jid.as_str(), &self.handle);
        // Stanzas that raced with the room's end (its archive being deleted) go to the service
        // again: a join creates the room afresh, anything else is answered as for a room that
        // is gone.
        inbox.close();
        while let Ok(input) = inbox.try_recv() {
            self.context.route(input.stanza).await;
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
                    .context
                    .room_store()
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
        match self.record.affiliations.get(real.as_str()).copied() {
            Some(Affiliation::Outcast) if self.ban_ended(real.as_str()) => Affiliation::None,
            Some(affiliation) => affiliation,
            None => Affiliation::None,
        }
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
        // Without `format!`'s formatting pass: twice per groupchat message.
        [self.jid.as_str(), "/", nick].concat()
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
        self.deliver_template_after(occupant, template, None);
    }

    /// [`deliver_template`](Self::deliver_template), held back until `commit` is done.
    fn deliver_template_after(
        &self,
        occupant: &Occupant,
        template: &Arc<AddressedTemplate>,
        commit: Option<&crate::durable::Commit>,
    ) {
        for handle in &occupant.handles {
            handle.send_addressed_after(template, commit);
        }
        // Sessions without a local handle are on other servers (or just gone): their copy
        // leaves through federation. Checked by count so the local fan-out pays nothing.
        if occupant.handles.len() < occupant.sessions.len() {
            for session in &occupant.sessions {
                if !occupant.handles.iter().any(|h| &h.jid == session) {
                    self.send_remote_after(session, template, commit);
                }
            }
        }
    }

    /// Look the handles of an occupant's sessions up again after its sessions changed (or a
    /// session reconnected under the same address).
    fn sessions_changed(&mut self, index: usize) {
        let handles = self.occupants[index]
            .sessions
            .iter()
            .filter_map(|session| self.context.local_session(session))
            .collect();
        self.occupants[index].handles = handles;
    }

    fn deliver_to_session(&self, session: &jid::FullJid, template: &Arc<AddressedTemplate>) {
        self.deliver_to_session_after(session, template, None);
    }

    /// [`deliver_to_session`](Self::deliver_to_session), held back until `commit` is done.
    fn deliver_to_session_after(
        &self,
        session: &jid::FullJid,
        template: &Arc<AddressedTemplate>,
        commit: Option<&crate::durable::Commit>,
    ) {
        if let Some(handle) = self.context.local_session(session) {
            handle.send_addressed_after(template, commit);
        } else {
            self.send_remote_after(session, template, commit);
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
        let mut item = Build::new("item", ns::MUC_USER)
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
        let mut x = Build::new("x", ns::MUC_USER).child(item.build());
        for code in codes {
            x = x.child(
                Build::new("status", ns::MUC_USER)
                    .attr("code", *code)
                    .build(),
            );
        }
        presence.append_child(x.build());
        presence.append_child(
            Build::new("occupant-id", ns::OCCUPANT_ID)
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
        let mut item = Build::new("item", ns::MUC_USER)
            .attr("affiliation", affiliation.as_str())
            .attr("role", role.as_str());
        if with_jid {
            if let Some(first) = occupant.sessions.first() {
                item = item.attr("jid", first.to_string());
            }
        }
        if let Some(actor) = actor {
            item = item.child(
                Build::new("actor", ns::MUC_USER)
                    .attr("nick", actor.to_string())
                    .build(),
            );
        }
        if let Some(reason) = reason {
            item = item.child(
                Build::new("reason", ns::MUC_USER)
                    .text(reason.to_string())
                    .build(),
            );
        }
        let mut x = Build::new("x", ns::MUC_USER).child(item.build());
        for code in codes {
            x = x.child(
                Build::new("status", ns::MUC_USER)
                    .attr("code", *code)
                    .build(),
            );
        }
        Build::new("presence", ns::CLIENT)
            .attr("type", "unavailable")
            .attr("from", self.occupant_jid(&occupant.nick))
            .child(x.build())
            .child(
                Build::new("occupant-id", ns::OCCUPANT_ID)
                    .attr("id", occupant.occupant_id.clone())
                    .build(),
            )
            .build()
    }
}
