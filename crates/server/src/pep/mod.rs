//! Personal Eventing Protocol (XEP-0163, on XEP-0060): every account is a publish-subscribe
//! service on its own bare JID, where its clients keep avatars, bookmarks, nicknames and keys
//! and from which its contacts are notified.
//!
//! `requests.rs` answers the pubsub and pubsub#owner requests, `node_config.rs` reads and
//! writes node configuration forms and publish-options, `access.rs` decides who may read,
//! `caps.rs` learns which nodes each client wants (XEP-0115), `notify.rs` sends the events.

mod access;
mod affiliations;
pub mod avatar_hash;
mod avatars;
mod bookmarks;
mod caps;
mod client_features;
mod node_config;
mod node_list;
mod notify;
mod rate;
mod requests;
mod service;

use crate::registry::{Identity, IqHandler, IqKind, IqScope, Registry};
use crate::server::Server;
use std::sync::Arc;

pub const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
pub const PUBSUB_OWNER: &str = "http://jabber.org/protocol/pubsub#owner";

/// The pubsub features PEP implements (XEP-0060 §10), as announced on accounts.
const FEATURES: &[&str] = &[
    "http://jabber.org/protocol/pubsub#access-open",
    "http://jabber.org/protocol/pubsub#access-presence",
    "http://jabber.org/protocol/pubsub#access-roster",
    "http://jabber.org/protocol/pubsub#access-whitelist",
    "http://jabber.org/protocol/pubsub#auto-create",
    "http://jabber.org/protocol/pubsub#config-node",
    // `pubsub#max_items` takes "max" (XEP-0060 §7.1.4 v1.17).
    "http://jabber.org/protocol/pubsub#config-node-max",
    "http://jabber.org/protocol/pubsub#create-nodes",
    "http://jabber.org/protocol/pubsub#delete-items",
    "http://jabber.org/protocol/pubsub#delete-nodes",
    "http://jabber.org/protocol/pubsub#filtered-notifications",
    "http://jabber.org/protocol/pubsub#last-published",
    "http://jabber.org/protocol/pubsub#manage-affiliations",
    "http://jabber.org/protocol/pubsub#member-affiliation",
    "http://jabber.org/protocol/pubsub#persistent-items",
    "http://jabber.org/protocol/pubsub#presence-notifications",
    "http://jabber.org/protocol/pubsub#publish",
    "http://jabber.org/protocol/pubsub#publish-options",
    "http://jabber.org/protocol/pubsub#purge-nodes",
    "http://jabber.org/protocol/pubsub#retract-items",
    "http://jabber.org/protocol/pubsub#retrieve-affiliations",
    "http://jabber.org/protocol/pubsub#retrieve-items",
    "http://jabber.org/protocol/pubsub#retrieve-subscriptions",
];

pub fn register(registry: &mut Registry<Server>) {
    let handlers: [(&str, Arc<dyn IqHandler<Server>>); 2] = [
        (PUBSUB, Arc::new(requests::Pubsub)),
        (PUBSUB_OWNER, Arc::new(requests::PubsubOwner)),
    ];
    for (namespace, handler) in handlers {
        registry.iq(IqScope::Account, IqKind::Get, namespace, handler.clone());
        registry.iq(IqScope::Account, IqKind::Set, namespace, handler);
    }
    for feature in FEATURES {
        registry.feature(IqScope::Account, feature);
    }
    // XEP-0163 §6.1: the account is a PEP service.
    registry.identity(
        IqScope::Account,
        Identity {
            category: "pubsub",
            kind: "pep",
            name: None,
        },
    );
    caps::register(registry);
    bookmarks::register(registry);
    avatars::register(registry);
    node_list::register(registry);
}

/// Pubsub's application-specific error conditions (XEP-0060 §7, §6.5.9).
mod errors {
    use crate::stanza::StanzaError;
    use minidom::Element;

    pub const PUBSUB_ERRORS: &str = "http://jabber.org/protocol/pubsub#errors";

    /// `error` with the pubsub condition `condition` added.
    pub fn with_condition(mut error: StanzaError, condition: &str) -> StanzaError {
        error.extra = Some(Box::new(Element::bare(condition, PUBSUB_ERRORS)));
        error
    }

    /// `<feature-not-implemented/>` with `<unsupported feature='…'/>` (XEP-0060 §7.1.3.x).
    pub fn unsupported(feature: &str) -> StanzaError {
        let mut error = StanzaError::feature_not_implemented();
        let mut extra = Element::bare("unsupported", PUBSUB_ERRORS);
        crate::stanza::set_attr(&mut extra, "feature", feature.to_owned());
        error.extra = Some(Box::new(extra));
        error
    }
}
