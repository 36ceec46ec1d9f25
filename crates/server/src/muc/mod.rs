//! The multi-user chat service (XEP-0045) on `[muc] domain`: room creation policy, the room
//! directory (disco#items of the service), and hand-off of each stanza to its room. Every room
//! is a task of its own that owns the room's state, so a room's ordering is total and no lock is
//! shared between rooms.

pub mod config;
pub mod invite_links;
pub mod nick;
pub mod push;
pub mod room;
pub mod visitor;

use crate::config::{CreateRooms, MucConfig};
use crate::limits::RateWindow;
use crate::registry::Registry;
use crate::server::Server;
use crate::service::{self, ServiceContext, ServiceHost, ServiceInfo, ServiceStart};
use crate::stanza::Bare;
use crate::stanza::{self, ns, Build, StanzaCondition, StanzaError};
use dashmap::DashMap;
use minidom::Element;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// The service's start: stored rooms come back, and the archive retention sweep begins.
pub fn register(registry: &mut Registry<Server>, service: Arc<MucService>) {
    let domain = service.settings.domain.clone();
    service::on_start(registry, &domain, Arc::new(Startup(service)));
}

struct Startup(Arc<MucService>);

#[async_trait::async_trait]
impl ServiceStart for Startup {
    async fn started(&self, context: &ServiceContext) {
        let service = &self.0;
        service.load(context).await;
        crate::archive::start_retention(
            context.archive_store(),
            vec![service.settings.domain.clone()],
            service.settings.archive_retention_days,
            context.shutdown_signal(),
        );
    }
}

impl crate::metrics::RoomCounts for MucService {
    fn totals(&self) -> (usize, usize) {
        MucService::totals(self)
    }
}

/// Stanzas waiting for one room; a room that falls this far behind refuses more.
const ROOM_QUEUE: usize = 4096;

/// What the directory shows of a room, kept current by the room's task.
#[derive(Clone, Debug, Default)]
pub struct RoomSummary {
    pub name: String,
    pub public: bool,
    pub occupants: usize,
}

/// The service's way to reach a running room.
pub struct RoomHandle {
    sender: mpsc::Sender<room::RoomInput>,
    pub summary: Mutex<RoomSummary>,
    /// Tells this incarnation from a later room of the same name.
    id: u64,
}

pub struct MucService {
    pub settings: MucConfig,
    rooms: DashMap<String, Arc<RoomHandle>>,
    next_id: std::sync::atomic::AtomicU64,
    /// Rooms created in the last hour, by creator (`rooms_per_hour`) and by address
    /// (`rooms_per_hour_per_address`).
    created_by_creator: RateWindow<String>,
    created_by_address: RateWindow<std::net::IpAddr>,
    /// Guests' browser secrets (`visitor.rs`), valid in every room of the service.
    pub visitors: visitor::VisitorSecrets,
}

impl MucService {
    pub fn new(settings: MucConfig, visitors: visitor::VisitorSecrets) -> Arc<MucService> {
        let hour = std::time::Duration::from_secs(3600);
        Arc::new(MucService {
            created_by_creator: RateWindow::new(settings.rooms_per_hour, hour),
            created_by_address: RateWindow::new(settings.rooms_per_hour_per_address, hour),
            settings,
            visitors,
            rooms: DashMap::new(),
            next_id: std::sync::atomic::AtomicU64::new(1),
        })
    }

    /// Start the tasks of the persistent rooms stored for this service.
    pub async fn load(self: &Arc<Self>, context: &ServiceContext) {
        let stored = match context.room_store().rooms(&self.settings.domain).await {
            Ok(rooms) => rooms,
            Err(e) => {
                tracing::error!(error = %e, "loading persistent rooms");
                return;
            }
        };
        for (jid, record) in stored {
            let Ok(jid) = jid::BareJid::new(&jid) else {
                tracing::warn!(room = %jid, "stored room with an invalid address skipped");
                continue;
            };
            match serde_json::from_str::<config::RoomRecord>(&record) {
                Ok(record) => {
                    self.spawn_room(context, jid, record, false);
                }
                Err(e) => {
                    tracing::error!(room = %jid, error = %e, "unreadable room record skipped")
                }
            }
        }
        tracing::info!(rooms = self.rooms.len(), domain = %self.settings.domain, "MUC service ready");
    }

    fn spawn_room(
        self: &Arc<Self>,
        context: &ServiceContext,
        jid: jid::BareJid,
        record: config::RoomRecord,
        created_now: bool,
    ) -> Arc<RoomHandle> {
        let (sender, receiver) = mpsc::channel(ROOM_QUEUE);
        let handle = Arc::new(RoomHandle {
            sender,
            summary: Mutex::new(RoomSummary::default()),
            id: self
                .next_id
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        });
        let key = jid.to_string();
        self.rooms.insert(key, handle.clone());
        let room = room::Room::new(
            context.clone(),
            self.clone(),
            handle.clone(),
            jid,
            record,
            created_now,
        );
        tokio::spawn(room.run(receiver));
        handle
    }

    /// Called by a room's task when it ends (destroyed, or temporary and empty).
    /// Rooms running and their occupants, from the rooms' summaries.
    pub fn totals(&self) -> (usize, usize) {
        let occupants = self
            .rooms
            .iter()
            .map(|room| room.summary.lock().map_or(0, |s| s.occupants))
            .sum();
        (self.rooms.len(), occupants)
    }

    pub fn room_closed(&self, jid: &str, handle: &RoomHandle) {
        self.rooms
            .remove_if(jid, |_, current| current.id == handle.id);
    }

    /// Whether `user` may create a room under `[muc] create_rooms`.
    fn may_create(&self, context: &ServiceContext, user: &jid::BareJid) -> bool {
        match self.settings.create_rooms {
            CreateRooms::Anyone => true,
            CreateRooms::Registered => user.domain().as_str() == context.server_domain(),
            CreateRooms::Admins => context.is_server_admin(user),
        }
    }

    /// Counts a room `creator` is about to create; false if the creator, or its address (an
    /// IPv6 /64), created its share in the last hour. A visitor of the anonymous host gets a
    /// new JID with every login, so it counts by its address; admins are not counted.
    fn count_creation(&self, context: &ServiceContext, creator: &jid::FullJid) -> bool {
        let bare = creator.bare();
        if context.is_server_admin(&bare) {
            return true;
        }
        let address = context
            .local_session(creator)
            .map(|session| crate::limits::address_key(session.peer_ip));
        let creator_key = match address {
            Some(ip) if context.is_anonymous_host(bare.domain().as_str()) => format!("ip:{ip}"),
            _ => bare.to_string(),
        };
        address.is_none_or(|ip| self.created_by_address.try_take(&ip))
            && self.created_by_creator.try_take(&creator_key)
    }

    /// Queries to the service itself (XEP-0045 §6.1–§6.3): what it is, and its public rooms.
    fn handle_service_stanza(&self, context: &ServiceContext, stanza: Element) {
        let Some(kind) = context.service_query_kind(&stanza) else {
            return;
        };
        let info = |_node: Option<&str>| {
            Ok(ServiceInfo {
                category: "conference",
                kind: "text",
                name: "Chatrooms",
                features: &[
                    ns::DISCO_INFO,
                    ns::DISCO_ITEMS,
                    ns::MUC,
                    "urn:xmpp:occupant-id:0",
                    "urn:xmpp:mam:2",
                    "urn:xmpp:sid:0",
                    // Room avatars (XEP-0486).
                    ns::VCARD,
                ],
                forms: Vec::new(),
            }
            .to_query())
        };
        let items = |_node: Option<&str>| Ok(self.directory());
        let reply = stanza::first_child(&stanza)
            .and_then(|payload| service::answer_discovery_or_ping(kind, payload, info, items))
            .unwrap_or_else(|| Err(StanzaError::service_unavailable()));
        context.answer_iq(&stanza, reply);
    }

    /// Public rooms, for disco#items on the service (XEP-0045 §6.3).
    fn directory(&self) -> Element {
        let mut rooms: Vec<(String, RoomSummary)> = self
            .rooms
            .iter()
            .filter_map(|entry| {
                let summary = entry.value().summary.lock().ok()?.clone();
                summary.public.then(|| (entry.key().clone(), summary))
            })
            .collect();
        rooms.sort_by(|a, b| a.0.cmp(&b.0));
        Build::new("query", ns::DISCO_ITEMS)
            .children(rooms.into_iter().map(|(jid, summary)| {
                let name = if summary.name.is_empty() {
                    jid.split('@').next().unwrap_or_default().to_string()
                } else {
                    summary.name
                };
                Build::new("item", ns::DISCO_ITEMS)
                    .attr("jid", jid)
                    .attr("name", name)
                    .build()
            }))
            .build()
    }
}

#[async_trait::async_trait]
impl ServiceHost for MucService {
    async fn handle(&self, context: &ServiceContext, stanza: Element) {
        let Some(Ok(to)) = stanza.attr("to").map(crate::jid_memo::parse) else {
            return;
        };
        if to.node().is_none() {
            self.handle_service_stanza(context, stanza);
            return;
        }
        // The room's address is `to` without its resource (`Bare`: no formatting pass per
        // stanza).
        let key = to.bare_str();
        let existing = self.rooms.get(key).map(|h| h.clone());
        let handle = match existing {
            Some(handle) => handle,
            None => {
                let is_join = stanza.name() == "presence"
                    && stanza.attr("type").is_none()
                    && to.resource().is_some();
                if !is_join {
                    if !stanza::is_error(&stanza) && stanza.attr("type") != Some("unavailable") {
                        context.bounce(
                            &stanza,
                            StanzaError::item_not_found().with_text("no such room"),
                        );
                    }
                    return;
                }
                let Some(Ok(creator)) = stanza.attr("from").map(crate::jid_memo::parse) else {
                    return;
                };
                if !self.may_create(context, &creator.bare()) {
                    context.bounce(
                        &stanza,
                        StanzaError::not_allowed().with_text("you may not create rooms here"),
                    );
                    return;
                }
                let counted = match stanza.attr("from").map(crate::jid_memo::parse_full) {
                    Some(Ok(full)) => self.count_creation(context, &full),
                    _ => false,
                };
                if !counted {
                    context.bounce(
                        &stanza,
                        StanzaError::new(
                            stanza::ErrorType::Wait,
                            StanzaCondition::ResourceConstraint,
                        )
                        .with_text("you have created too many rooms; try again later"),
                    );
                    return;
                }
                // The service is held in an Arc by the router; find ours to share with the room.
                let Some(me) = context.extensions().get::<MucService>() else {
                    return;
                };
                // Another stanza may have created it meanwhile: entry() keeps this atomic.
                if let Some(handle) = self.rooms.get(key).map(|h| h.clone()) {
                    handle
                } else {
                    me.spawn_room(context, to.bare(), config::RoomRecord::default(), true)
                }
            }
        };
        // A groupchat message is archived before anyone sees it; its local sender's XEP-0198
        // answers wait until the room has queued that write.
        let sent_by = (stanza.name() == "message" && stanza.attr("type") == Some("groupchat"))
            .then(|| {
                stanza
                    .attr("from")
                    .and_then(|f| crate::jid_memo::parse_full(f).ok())
            })
            .flatten()
            .and_then(|from| context.local_session(&from))
            .map(|session| session.in_flight());
        let input = room::RoomInput { stanza, sent_by };
        if let Err(refused) = handle.sender.try_send(input) {
            let stanza = refused.into_inner().stanza;
            tracing::warn!(room = %key, "room queue full or closed; stanza refused");
            context.bounce(
                &stanza,
                StanzaError::new(
                    stanza::ErrorType::Wait,
                    stanza::StanzaCondition::ResourceConstraint,
                )
                .with_text("the room is too busy"),
            );
        }
    }
}
