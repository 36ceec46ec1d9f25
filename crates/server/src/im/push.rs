//! XEP-0357 push notifications: a client enables pushes to its app server (a JID and a node);
//! while that client is offline or its session waits for resumption (XEP-0198), each message
//! with a body, or encrypted, that reaches its account sends the app server a summary
//! notification (`urn:xmpp:push:summary`: message count and sender; the body only if
//! `push.include_body`), within the app server's rate (`crate::push::throttle`).
//! Registrations are stored (`PushStore`), so a phone is still woken after a restart; they are
//! loaded when the server starts and kept in memory, where each message looks them up.

use crate::hooks::{priority, MessageHook, ServerHook, SessionHook};
use crate::push::throttle::{Route, Throttle};
use crate::push::{Summary, Target, NS_PUSH};
use crate::registry::{IqHandler, IqKind, IqRequest, IqResponse, IqScope, Registry};
use crate::server::Server;
use crate::session_handle::SessionHandle;
use crate::stanza::Bare;
use crate::stanza::{ns, StanzaError};
use crate::storage::PushRegistration;
use dashmap::DashMap;
use minidom::Element;
use std::sync::{Arc, Mutex};

/// Push services one account may register (one per client, in practice).
const MAX_PER_ACCOUNT: usize = 8;
pub fn register(registry: &mut Registry<Server>) {
    registry.feature(IqScope::Account, NS_PUSH);
    registry.iq(
        IqScope::Account,
        IqKind::Set,
        NS_PUSH,
        Arc::new(EnableDisable),
    );
    registry
        .hooks
        .on_message(priority::OBSERVE, Arc::new(Notify));
    registry
        .hooks
        .on_session(priority::OBSERVE, Arc::new(Reset));
    registry.hooks.on_server(priority::OBSERVE, Arc::new(Load));
}

/// One client's registration with its app server.
#[derive(Clone)]
struct Registration {
    target: Target,
    /// Messages since the client was last attached.
    count: u64,
}

/// Registrations by account (bare JID): what storage holds, loaded at start.
#[derive(Default)]
struct Registrations(DashMap<String, Vec<Registration>>);

/// Per session: the registration (service, node) this client enabled.
#[derive(Default)]
struct Enabled(Mutex<Option<(jid::Jid, String)>>);

fn enabled_of(session: &SessionHandle) -> Option<(jid::Jid, String)> {
    session
        .extensions
        .get::<Enabled>()
        .and_then(|e| e.0.lock().ok().and_then(|g| g.clone()))
}

fn set_enabled(session: Option<Arc<SessionHandle>>, value: Option<(jid::Jid, String)>) {
    if let Some(session) = session {
        if let Ok(mut slot) = session.extensions.get_or_default::<Enabled>().0.lock() {
            *slot = value;
        }
    }
}

/// Forget `account`'s registrations (it was deleted; storage dropped them with it).
pub fn forget_account(server: &Server, account: &jid::BareJid) {
    if let Some(all) = server.extensions.get::<Registrations>() {
        all.0.remove(account.as_str());
    }
}

/// Loads the stored registrations, and installs the app servers' rate limit.
struct Load;

#[async_trait::async_trait]
impl ServerHook<Server> for Load {
    async fn started(&self, server: &Arc<Server>) {
        server
            .extensions
            .insert(Throttle::new(server.config.push.per_service_per_minute));
        let all = server.extensions.get_or_default::<Registrations>();
        let stored = match server.storage.push_registrations(false).await {
            Ok(stored) => stored,
            Err(e) => {
                tracing::error!(error = %e, "loading push registrations; none are active");
                return;
            }
        };
        let count = stored.len();
        for (account, stored) in stored {
            let Some(target) =
                Target::from_stored(&stored.service, &stored.node, stored.options.as_deref())
            else {
                continue;
            };
            all.0
                .entry(account)
                .or_default()
                .push(Registration { target, count: 0 });
        }
        tracing::info!(count, "push registrations loaded");
    }
}

struct EnableDisable;

#[async_trait::async_trait]
impl IqHandler<Server> for EnableDisable {
    async fn handle(&self, server: &Arc<Server>, request: IqRequest) -> IqResponse {
        if !request.is_own_account() && request.to.node().is_some() {
            return Err(StanzaError::forbidden());
        }
        let payload = request
            .payload()
            .ok_or_else(|| StanzaError::bad_request("missing payload"))?;
        let account = request.from.bare();
        let (user, domain) = crate::im::roster::account_key(&account);
        if server.is_anonymous_host(&domain) {
            return Err(StanzaError::not_allowed().with_text("guests have no pushes"));
        }
        let all = server.extensions.get_or_default::<Registrations>();
        let session = request.from_full().and_then(|f| server.router.session(f));
        let storage = server.storage_for(&domain);
        match payload.name() {
            "enable" => {
                let target = Target::from_enable(payload)?;
                let known = all.0.get(account.as_str()).map(|list| {
                    (
                        list.len(),
                        list.iter()
                            .any(|r| r.target.is(&target.service, &target.node)),
                    )
                });
                if let Some((count, false)) = known {
                    if count >= MAX_PER_ACCOUNT {
                        return Err(StanzaError::resource_constraint()
                            .with_text("too many push services for this account"));
                    }
                }
                let stored = PushRegistration {
                    room: None,
                    resource: String::new(),
                    token: String::new(),
                    service: target.service.to_string(),
                    node: target.node.clone(),
                    options: target.options_text(),
                    created: crate::stanza::now_unix(),
                };
                storage
                    .put_push_registration(&user, &domain, &stored)
                    .await
                    .map_err(|e| StanzaError::storage("storing a push registration", &e))?;
                let service = target.service.clone();
                let enabled = (service.clone(), target.node.clone());
                let mut list = all.0.entry(account.to_string()).or_default();
                list.retain(|r| !r.target.is(&target.service, &target.node));
                list.push(Registration { target, count: 0 });
                drop(list);
                set_enabled(session, Some(enabled));
                tracing::info!(%account, %service, "push notifications enabled");
                Ok(None)
            }
            "disable" => {
                let service = payload
                    .attr("jid")
                    .and_then(|j| jid::Jid::new(j).ok())
                    .ok_or_else(|| StanzaError::bad_request("a push service JID is needed"))?;
                // Without a node, every node of that service (XEP-0357 §6).
                let node = payload.attr("node");
                storage
                    .delete_push_registrations(&user, &domain, None, service.as_str(), node)
                    .await
                    .map_err(|e| StanzaError::storage("removing push registrations", &e))?;
                if let Some(mut list) = all.0.get_mut(account.as_str()) {
                    list.retain(|r| {
                        !(r.target.service == service && node.is_none_or(|n| r.target.node == n))
                    });
                }
                all.0.remove_if(account.as_str(), |_, list| list.is_empty());
                set_enabled(session, None);
                tracing::info!(%account, %service, "push notifications disabled");
                Ok(None)
            }
            _ => Err(StanzaError::bad_request("expected <enable/> or <disable/>")),
        }
    }
}

/// Whether a message is worth waking a phone for: one a person wrote.
fn worth_pushing(message: &Element) -> bool {
    if matches!(
        message.attr("type"),
        Some("groupchat" | "error" | "headline")
    ) {
        return false;
    }
    message.get_child("body", ns::CLIENT).is_some() || super::encrypted::is_encrypted(message)
}

struct Notify;

#[async_trait::async_trait]
impl MessageHook<Server> for Notify {
    async fn arriving(
        &self,
        server: &Arc<Server>,
        account: &jid::BareJid,
        message: &mut Element,
    ) -> Option<crate::durable::Commit> {
        notify_app_servers(server, account, message).await;
        // A notification carries no copy of the message: nothing to wait for.
        None
    }
}

/// Count the message for every app server of `account`'s detached or offline clients and
/// notify them (XEP-0357 §7).
async fn notify_app_servers(server: &Arc<Server>, account: &jid::BareJid, message: &Element) {
    let Some(all) = server.extensions.get::<Registrations>() else {
        return;
    };
    if !all.0.contains_key(account.as_str()) || !worth_pushing(message) {
        return;
    }
    // A client is reached directly while its session is attached; otherwise it hears
    // through its app server.
    let attached: Vec<(jid::Jid, String)> = server
        .router
        .sessions_of(account.as_str())
        .iter()
        .filter(|s| !s.is_detached())
        .filter_map(|s| enabled_of(s))
        .collect();
    let due: Vec<Registration> = match all.0.get_mut(account.as_str()) {
        Some(mut list) => list
            .iter_mut()
            .filter(|r| !attached.iter().any(|(s, n)| r.target.is(s, n)))
            .map(|r| {
                r.count += 1;
                r.clone()
            })
            .collect(),
        None => return,
    };
    let sender = message.attr("from").unwrap_or_default();
    let body = message
        .get_child("body", ns::CLIENT)
        .map(Element::text)
        .filter(|_| server.config.push.include_body);
    let from = account.to_string();
    let throttle = server.extensions.get::<Throttle>();
    for registration in due {
        let summary = Summary {
            count: registration.count,
            sender,
            body: body.as_deref(),
        };
        crate::push::notify(
            throttle.as_ref(),
            &from,
            &registration.target,
            &summary,
            || route_through(server),
        )
        .await;
    }
}

/// How the throttle sends a notification it held back.
fn route_through(server: &Arc<Server>) -> Route {
    let server = server.clone();
    Arc::new(move |stanza| {
        let server = server.clone();
        Box::pin(async move { server.route(stanza).await })
    })
}

/// A client that is back hears its messages itself: its count starts again.
struct Reset;

impl Reset {
    fn reset(server: &Server, session: &SessionHandle) {
        let Some(all) = server.extensions.get::<Registrations>() else {
            return;
        };
        let Some((service, node)) = enabled_of(session) else {
            return;
        };
        if let Some(mut list) = all.0.get_mut(session.jid.bare().as_str()) {
            for r in list.iter_mut().filter(|r| r.target.is(&service, &node)) {
                r.count = 0;
            }
        };
    }
}

#[async_trait::async_trait]
impl SessionHook<Server> for Reset {
    async fn resumed(&self, server: &Arc<Server>, session: &Arc<SessionHandle>) {
        Reset::reset(server, session);
    }
}
