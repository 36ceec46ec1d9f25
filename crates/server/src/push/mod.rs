//! What XEP-0357 push shares between an account's registrations (`im/push.rs`) and a room's
//! (`muc/push.rs`, `urn:salon:muc-push:0`): reading an `<enable/>` (app server, node,
//! publish-options), the publish with the summary form (§5, §7) that wakes a phone, and the
//! per-app-server limit that coalesces notifications (`throttle.rs`).

pub mod throttle;

use std::sync::Arc;
use throttle::{Route, Throttle};

use crate::stanza::forms::{DataForm, Field, FormType};
use crate::stanza::{ns, Build, StanzaError};
use minidom::Element;

pub const NS_PUSH: &str = "urn:xmpp:push:0";
const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const NS_SUMMARY: &str = "urn:xmpp:push:summary";
/// Longest node name, and longest publish-options form kept, in bytes.
const MAX_NODE_BYTES: usize = 256;
const MAX_OPTIONS_BYTES: usize = 4096;

/// Where a client wants its notifications: the app server's JID and node, and the
/// publish-options form it gave (its secret for the app server).
#[derive(Clone, Debug)]
pub struct Target {
    pub service: jid::Jid,
    pub node: String,
    pub options: Option<Element>,
}

impl Target {
    /// The `jid`, `node` and publish-options form of an `<enable/>` (XEP-0357 §5).
    pub fn from_enable(enable: &Element) -> Result<Target, StanzaError> {
        let service = enable
            .attr("jid")
            .and_then(|j| jid::Jid::new(j).ok())
            .ok_or_else(|| StanzaError::bad_request("a push service JID is needed"))?;
        let node = enable.attr("node").unwrap_or_default().to_string();
        if node.is_empty() || node.len() > MAX_NODE_BYTES {
            return Err(StanzaError::bad_request(
                "a node of 1 to 256 bytes is needed",
            ));
        }
        let options = enable.get_child("x", ns::DATA_FORMS).cloned();
        if options
            .as_ref()
            .is_some_and(|o| salon_xml::serialize(o).len() > MAX_OPTIONS_BYTES)
        {
            return Err(StanzaError::bad_request("publish-options too large"));
        }
        Ok(Target {
            service,
            node,
            options,
        })
    }

    /// The publish-options form as stored.
    pub fn options_text(&self) -> Option<String> {
        self.options.as_ref().map(salon_xml::serialize_to_string)
    }

    /// A target read back from storage; `None` (and a log line) if it no longer parses.
    pub fn from_stored(service: &str, node: &str, options: Option<&str>) -> Option<Target> {
        let address = jid::Jid::new(service).ok();
        let options = options.map(|o| salon_xml::parse_stored(o, ns::DATA_FORMS));
        match (address, options) {
            (Some(service), None) => Some(Target {
                service,
                node: node.to_string(),
                options: None,
            }),
            (Some(service), Some(Some(options))) => Some(Target {
                service,
                node: node.to_string(),
                options: Some(options),
            }),
            _ => {
                tracing::warn!(service, "stored push registration unreadable; skipped");
                None
            }
        }
    }

    /// Whether this is the registration of `service` and `node`.
    pub fn is(&self, service: &jid::Jid, node: &str) -> bool {
        &self.service == service && self.node == node
    }
}

/// What a notification says (the `urn:xmpp:push:summary` form).
pub struct Summary<'a> {
    /// Messages since the client was last attached.
    pub count: u64,
    pub sender: &'a str,
    /// Only when the operator allows it (`push.include_body`).
    pub body: Option<&'a str>,
}

/// XEP-0357 §5, §7: the publish from `from` (the account, or the room) to the app server's
/// node, with the summary form and the client's publish-options.
pub fn publish(from: &str, target: &Target, summary: &Summary) -> Element {
    let mut form = DataForm::new(FormType::Submit)
        .field(Field::form_type(NS_SUMMARY))
        .field(Field::untyped("message-count").value(summary.count.to_string()))
        .field(Field::untyped("last-message-sender").value(summary.sender));
    if let Some(body) = summary.body {
        form = form.field(Field::untyped("last-message-body").value(body));
    }
    let mut pubsub = Build::new("pubsub", NS_PUBSUB).child(
        Build::new("publish", NS_PUBSUB)
            .attr("node", target.node.clone())
            .child(
                Build::new("item", NS_PUBSUB)
                    .child(
                        Build::new("notification", NS_PUSH)
                            .child(form.to_element())
                            .build(),
                    )
                    .build(),
            )
            .build(),
    );
    if let Some(options) = &target.options {
        pubsub = pubsub.child(
            Build::new("publish-options", NS_PUBSUB)
                .child(options.clone())
                .build(),
        );
    }
    Build::new("iq", ns::CLIENT)
        .attr("type", "set")
        .attr("id", format!("push-{:016x}", rand::random::<u64>()))
        .attr("from", from.to_string())
        .attr("to", target.service.to_string())
        .child(pubsub.build())
        .build()
}

/// Build the notification and send it from `from` (the account or the room) within the app
/// server's rate; `route` sends a stanza (now, or later for one held back).
pub async fn notify(
    throttle: Option<&Arc<Throttle>>,
    from: &str,
    target: &Target,
    summary: &Summary<'_>,
    route: impl FnOnce() -> Route,
) {
    let notification = publish(from, target, summary);
    match throttle {
        Some(throttle) => {
            let key = format!("{from}\n{}", target.node);
            throttle
                .send(target.service.as_str(), key, notification, route)
                .await;
        }
        None => route()(notification).await,
    }
}
