//! XEP-0357 push notifications: a client enables pushes to its app server (a JID and a node);
//! while that client is offline or its session waits for resumption (XEP-0198), each message
//! with a body, or encrypted, that reaches its account sends the app server a summary
//! notification (`urn:xmpp:push:summary`: message count and sender; the body only if
//! `push.include_body`). Registrations are kept in memory: they last until the server stops.

use crate::hooks::{priority, MessageHook, SessionHook};
use crate::registry::{IqHandler, IqKind, IqRequest, IqResponse, IqScope, Registry};
use crate::server::Server;
use crate::session_handle::SessionHandle;
use crate::stanza::forms::{DataForm, Field, FormType};
use crate::stanza::{ns, Build, StanzaError};
use dashmap::DashMap;
use minidom::Element;
use std::sync::{Arc, Mutex};

pub const NS_PUSH: &str = "urn:xmpp:push:0";
const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const NS_SUMMARY: &str = "urn:xmpp:push:summary";
/// Push services one account may register (one per client, in practice).
const MAX_PER_ACCOUNT: usize = 8;
/// Longest node name, and longest publish-options form kept, in bytes.
const MAX_NODE_BYTES: usize = 256;
const MAX_OPTIONS_BYTES: usize = 4096;
/// Payloads that mark an encrypted message (OMEMO, OpenPGP for XMPP): pushed though bodiless.
const ENCRYPTED: &[(&str, &str)] = &[
    ("encrypted", "eu.siacs.conversations.axolotl"),
    ("encrypted", "urn:xmpp:omemo:2"),
    ("openpgp", "urn:xmpp:openpgp:0"),
];

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
}

/// One client's registration with its app server.
#[derive(Clone)]
struct Registration {
    service: jid::Jid,
    node: String,
    /// The `publish-options` form the client gave (its secret for the app server).
    options: Option<Element>,
    /// Messages since the client was last attached.
    count: u64,
}

/// Registrations by account (bare JID).
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
        let account = request.from.to_bare();
        if server.is_anonymous_host(account.domain().as_str()) {
            return Err(StanzaError::not_allowed().with_text("guests have no pushes"));
        }
        let service = payload
            .attr("jid")
            .and_then(|j| jid::Jid::new(j).ok())
            .ok_or_else(|| StanzaError::bad_request("a push service JID is needed"))?;
        let node = payload.attr("node").map(str::to_owned);
        let all = server.extensions.get_or_default::<Registrations>();
        let session = request.from_full().and_then(|f| server.router.session(f));
        match payload.name() {
            "enable" => {
                let node = node.ok_or_else(|| StanzaError::bad_request("enable needs a node"))?;
                if node.is_empty() || node.len() > MAX_NODE_BYTES {
                    return Err(StanzaError::bad_request("the node is 1 to 256 bytes"));
                }
                let options = payload
                    .get_child("x", ns::DATA_FORMS)
                    .filter(|x| salon_xml::serialize(x).len() <= MAX_OPTIONS_BYTES)
                    .cloned();
                let mut list = all.0.entry(account.to_string()).or_default();
                list.retain(|r| !(r.service == service && r.node == node));
                if list.len() >= MAX_PER_ACCOUNT {
                    return Err(StanzaError::resource_constraint()
                        .with_text("too many push services for this account"));
                }
                list.push(Registration {
                    service: service.clone(),
                    node: node.clone(),
                    options,
                    count: 0,
                });
                drop(list);
                if let Some(session) = session {
                    *session
                        .extensions
                        .get_or_default::<Enabled>()
                        .0
                        .lock()
                        .map_err(|_| StanzaError::internal())? = Some((service.clone(), node));
                }
                tracing::info!(%account, %service, "push notifications enabled");
                Ok(None)
            }
            "disable" => {
                // Without a node, every node of that service (XEP-0357 §6).
                if let Some(mut list) = all.0.get_mut(account.as_str()) {
                    list.retain(|r| {
                        !(r.service == service && node.as_ref().is_none_or(|n| &r.node == n))
                    });
                }
                all.0.remove_if(account.as_str(), |_, list| list.is_empty());
                if let Some(session) = session {
                    if let Some(enabled) = session.extensions.get::<Enabled>() {
                        if let Ok(mut slot) = enabled.0.lock() {
                            *slot = None;
                        }
                    }
                }
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
    message.get_child("body", ns::CLIENT).is_some()
        || ENCRYPTED
            .iter()
            .any(|(name, namespace)| message.get_child(name, *namespace).is_some())
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
            .filter(|r| {
                !attached
                    .iter()
                    .any(|(s, n)| s == &r.service && n == &r.node)
            })
            .map(|r| {
                r.count += 1;
                r.clone()
            })
            .collect(),
        None => return,
    };
    let sender = message.attr("from").unwrap_or_default().to_string();
    let body = message.get_child("body", ns::CLIENT).map(Element::text);
    for registration in due {
        let notification = notification(server, account, &registration, &sender, body.as_deref());
        server.route(notification).await;
    }
}

/// XEP-0357 §5: the publish to the app server's node, with the summary form.
fn notification(
    server: &Server,
    account: &jid::BareJid,
    registration: &Registration,
    sender: &str,
    body: Option<&str>,
) -> Element {
    let mut summary = DataForm::new(FormType::Submit)
        .field(Field::form_type(NS_SUMMARY))
        .field(Field::untyped("message-count").value(registration.count.to_string()))
        .field(Field::untyped("last-message-sender").value(sender));
    if server.config.push.include_body {
        if let Some(body) = body {
            summary = summary.field(Field::untyped("last-message-body").value(body));
        }
    }
    let mut pubsub = Build::new("pubsub", NS_PUBSUB).child(
        Build::new("publish", NS_PUBSUB)
            .attr("node", registration.node.clone())
            .child(
                Build::new("item", NS_PUBSUB)
                    .child(
                        Build::new("notification", NS_PUSH)
                            .child(summary.to_element())
                            .build(),
                    )
                    .build(),
            )
            .build(),
    );
    if let Some(options) = &registration.options {
        pubsub = pubsub.child(
            Build::new("publish-options", NS_PUBSUB)
                .child(options.clone())
                .build(),
        );
    }
    Build::new("iq", ns::CLIENT)
        .attr("type", "set")
        .attr("id", format!("push-{:016x}", rand::random::<u64>()))
        .attr("from", account.to_string())
        .attr("to", registration.service.to_string())
        .child(pubsub.build())
        .build()
}

/// A client that is back hears its messages itself: its count starts again.
struct Reset;

impl Reset {
    fn reset(server: &Server, session: &SessionHandle) {
        let Some(all) = server.extensions.get::<Registrations>() else {
            return;
        };
        let Some(enabled) = enabled_of(session) else {
            return;
        };
        if let Some(mut list) = all.0.get_mut(session.jid.to_bare().as_str()) {
            for r in list
                .iter_mut()
                .filter(|r| r.service == enabled.0 && r.node == enabled.1)
            {
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
