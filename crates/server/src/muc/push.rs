//! MUC push (issue 16 item 5, the sprint report's proposal; builds on XEP-0357): a client
//! registers its push service with a room, `<enable xmlns='urn:salon:muc-push:0' jid='SERVICE'
//! node='NODE'>` (with XEP-0357's optional publish-options form) sent to the room's address,
//! and gets a token back; while that client is offline or its session waits for resumption,
//! every message of the room with a body sends the service a XEP-0357 summary notification
//! (message count, sender's occupant JID; never the body). The registration is kept under the
//! token rather than the occupant's address or nick, so it works without nick registration and
//! in semi-anonymous rooms; `<disable xmlns='urn:salon:muc-push:0' token='TOKEN'/>` removes
//! it. Registrations are kept in memory: they last until the server stops.

use crate::service::ServiceContext;
use crate::stanza::forms::{DataForm, Field, FormType};
use crate::stanza::{ns, Build, StanzaError};
use dashmap::DashMap;
use minidom::Element;

pub const NS: &str = "urn:salon:muc-push:0";
const NS_PUSH: &str = "urn:xmpp:push:0";
const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const NS_SUMMARY: &str = "urn:xmpp:push:summary";
/// Registrations one room keeps, and one account may have in one room (its oldest goes).
const MAX_PER_ROOM: usize = 256;
const MAX_PER_ACCOUNT: usize = 4;
const MAX_NODE_BYTES: usize = 256;
const MAX_OPTIONS_BYTES: usize = 4096;

#[derive(Clone)]
struct Registration {
    token: String,
    /// The client that registered: pushed for while it is not attached.
    client: jid::FullJid,
    service: jid::Jid,
    node: String,
    options: Option<Element>,
    /// Messages since the client was last attached.
    count: u64,
}

/// Registrations by room (bare JID), in the server-wide extension slots.
#[derive(Default)]
struct Registrations(DashMap<String, Vec<Registration>>);

fn new_token() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..24)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// An `<enable/>` or `<disable/>` to the room from `from`.
pub fn enable_or_disable(
    context: &ServiceContext,
    room: &jid::BareJid,
    from: &jid::FullJid,
    request: &Element,
) -> Result<Option<Element>, StanzaError> {
    let all = context.extensions().get_or_default::<Registrations>();
    let account = from.to_bare();
    if request.is("disable", NS) {
        let token = request.attr("token").unwrap_or_default();
        let mut list = all.0.entry(room.to_string()).or_default();
        let before = list.len();
        list.retain(|r| !(r.token == token && r.client.to_bare() == account));
        if list.len() == before {
            return Err(StanzaError::item_not_found().with_text("no such push registration"));
        }
        tracing::info!(%room, %account, "MUC push registration removed");
        return Ok(None);
    }
    if !request.is("enable", NS) {
        return Err(StanzaError::bad_request("enable or disable"));
    }
    let domain = account.domain().as_str();
    if !context.is_local_user_host(domain) || context.is_anonymous_host(domain) {
        return Err(StanzaError::not_allowed().with_text("push is for this server's accounts"));
    }
    let service = request
        .attr("jid")
        .and_then(|j| jid::Jid::new(j).ok())
        .ok_or_else(|| StanzaError::bad_request("the push service's jid is missing"))?;
    let node = request.attr("node").unwrap_or_default().to_string();
    if node.is_empty() || node.len() > MAX_NODE_BYTES {
        return Err(StanzaError::bad_request(
            "a node of 1 to 256 bytes is needed",
        ));
    }
    let options = request.get_child("x", ns::DATA_FORMS).cloned();
    if options
        .as_ref()
        .is_some_and(|o| salon_xml::serialize(o).len() > MAX_OPTIONS_BYTES)
    {
        return Err(StanzaError::bad_request("publish-options too large"));
    }
    let token = new_token();
    let mut list = all.0.entry(room.to_string()).or_default();
    // A client registering again replaces its registration.
    list.retain(|r| &r.client != from);
    let own = list
        .iter()
        .filter(|r| r.client.to_bare() == account)
        .count();
    if own >= MAX_PER_ACCOUNT {
        if let Some(oldest) = list.iter().position(|r| r.client.to_bare() == account) {
            list.remove(oldest);
        }
    }
    if list.len() >= MAX_PER_ROOM {
        return Err(StanzaError::new(
            crate::stanza::ErrorType::Wait,
            crate::stanza::StanzaCondition::ResourceConstraint,
        )
        .with_text("this room has as many push registrations as it may"));
    }
    list.push(Registration {
        token: token.clone(),
        client: from.clone(),
        service,
        node,
        options,
        count: 0,
    });
    tracing::info!(%room, %account, "MUC push registration added");
    Ok(Some(
        Build::new("registered", NS).attr("token", token).build(),
    ))
}

/// A message with a body went out in `room` from `sender` (an occupant JID): notify the push
/// service of every registered client that is not attached.
pub async fn room_message(context: &ServiceContext, room: &jid::BareJid, sender: &str) {
    let Some(all) = context.extensions().get::<Registrations>() else {
        return;
    };
    let due: Vec<Registration> = match all.0.get_mut(room.as_str()) {
        Some(mut list) => list
            .iter_mut()
            .filter_map(|r| {
                let attached = context
                    .local_session(&r.client)
                    .is_some_and(|s| !s.is_detached());
                if attached {
                    r.count = 0;
                    return None;
                }
                r.count += 1;
                Some(r.clone())
            })
            .collect(),
        None => return,
    };
    for registration in due {
        context
            .route(notification(room, &registration, sender))
            .await;
    }
}

/// XEP-0357 §5: the publish to the service's node with the summary form, from the room.
fn notification(room: &jid::BareJid, registration: &Registration, sender: &str) -> Element {
    let summary = DataForm::new(FormType::Submit)
        .field(Field::form_type(NS_SUMMARY))
        .field(Field::untyped("message-count").value(registration.count.to_string()))
        .field(Field::untyped("last-message-sender").value(sender));
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
        .attr("id", format!("mucpush-{:016x}", rand::random::<u64>()))
        .attr("from", room.to_string())
        .attr("to", registration.service.to_string())
        .child(pubsub.build())
        .build()
}
