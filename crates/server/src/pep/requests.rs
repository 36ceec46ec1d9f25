//! The pubsub requests PEP answers on an account's bare JID (XEP-0060 §6.5 items, §7.1
//! publish with auto-create and publish-options, §7.2 retract, §8.1 create, §8.2 configure,
//! §8.3 default configuration, §8.4 delete, §8.5 purge), as XEP-0163 restricts them: only
//! the owner publishes and manages, readers are whoever the access model lets in.

use super::access;
use super::avatars;
use super::errors::{self, with_condition};
use super::node_config::{self, submitted_fields};
use super::notify::{self, EVENT};
use super::service::{storage_error, Preconditions, Service};
use super::{PUBSUB, PUBSUB_OWNER};
use crate::registry::{IqHandler, IqKind, IqRequest, IqResponse};
use crate::server::Server;
use crate::stanza::Bare;
use crate::stanza::{ns, Build, ErrorType, StanzaCondition, StanzaError};
use crate::storage::{PepNode, PepNodeConfig};
use minidom::Element;
use std::sync::Arc;

/// Longest node name or item id accepted.
const MAX_NAME_BYTES: usize = 1024;

/// `<pubsub xmlns='http://jabber.org/protocol/pubsub'/>` requests.
pub struct Pubsub;

/// `<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'/>` requests.
pub struct PubsubOwner;

fn bad_request(condition: &str, text: &str) -> StanzaError {
    with_condition(StanzaError::bad_request(text), condition)
}

/// The `node` attribute of a request element.
fn node_name(element: &Element) -> Result<&str, StanzaError> {
    match element.attr("node") {
        Some(name) if !name.is_empty() && name.len() <= MAX_NAME_BYTES => Ok(name),
        Some(name) if !name.is_empty() => Err(StanzaError::new(
            ErrorType::Modify,
            StanzaCondition::NotAcceptable,
        )
        .with_text(format!("node names have at most {MAX_NAME_BYTES} bytes"))),
        _ => Err(bad_request("nodeid-required", "which node?")),
    }
}

/// The fields of the data form inside `parent` (`<publish-options/>`, `<configure/>`).
fn form_fields(parent: Option<&Element>) -> Vec<(String, Vec<String>)> {
    parent
        .and_then(|p| p.get_child("x", ns::DATA_FORMS))
        .map(submitted_fields)
        .unwrap_or_default()
}

impl Service<'_> {
    fn for_request<'a>(server: &'a Arc<Server>, request: &'a IqRequest) -> Service<'a> {
        Service::of(server, &request.to)
    }

    async fn publish(&self, publish: &Element, options: Option<&Element>) -> IqResponse {
        let name = node_name(publish)?;
        let items: Vec<&Element> = publish.children().filter(|c| c.name() == "item").collect();
        let item = match items.as_slice() {
            [item] => *item,
            [] => return Err(bad_request("item-required", "PEP publishes one item")),
            _ => return Err(bad_request("invalid-payload", "one item at a time")),
        };
        let payloads: Vec<&Element> = item.children().collect();
        let [payload] = payloads.as_slice() else {
            return Err(bad_request(
                "payload-required",
                "an item carries one payload",
            ));
        };
        let id = match item.attr("id").filter(|id| !id.is_empty()) {
            Some(id) if id.len() > MAX_NAME_BYTES => {
                return Err(
                    StanzaError::new(ErrorType::Modify, StanzaCondition::NotAcceptable)
                        .with_text(format!("item ids have at most {MAX_NAME_BYTES} bytes")),
                )
            }
            Some(id) => id.to_owned(),
            None => format!("{:016x}", rand::random::<u64>()),
        };
        let options = form_fields(options);
        self.publish_item(name, &id, payload, &options, Preconditions::Check)
            .await?;
        if name == super::avatar_hash::METADATA {
            // XEP-0398 §3: the avatar a client published becomes the vCard's photo.
            avatars::to_vcard(self, payload).await;
        }
        Ok(Some(
            Build::new("pubsub", PUBSUB)
                .child(
                    Build::new("publish", PUBSUB)
                        .attr("node", name.to_owned())
                        .child(Build::new("item", PUBSUB).attr("id", id).build())
                        .build(),
                )
                .build(),
        ))
    }

    /// Store `payload` as item `id` of node `name` and notify whoever hears of the node. The
    /// node is created with `options` if it does not exist; if it does, `preconditions` says
    /// whether `options` must match its configuration.
    async fn retract(&self, retract: &Element) -> IqResponse {
        let name = node_name(retract)?;
        let ids: Vec<&str> = retract
            .children()
            .filter(|c| c.name() == "item")
            .filter_map(|i| i.attr("id"))
            .collect();
        let [id] = ids.as_slice() else {
            return Err(bad_request("item-required", "which item?"));
        };
        let notify = matches!(retract.attr("notify"), Some("1" | "true"));
        self.retract_item(name, id, notify).await?;
        Ok(None)
    }

    /// XEP-0060 §6.5: all items, the newest `max_items`, or the ones asked for by id.
    async fn items(&self, requester: &jid::BareJid, items: &Element) -> IqResponse {
        let name = node_name(items)?;
        let node = self.existing_node(name).await?;
        let relation = access::relation(self.server, self.owner, requester).await;
        access::check(&node.config, &relation)?;
        let ids: Vec<&str> = items
            .children()
            .filter(|c| c.name() == "item")
            .filter_map(|i| i.attr("id"))
            .collect();
        let found = if ids.is_empty() {
            let limit = match items.attr("max_items") {
                Some(n) => Some(
                    n.parse::<usize>()
                        .map_err(|_| StanzaError::bad_request("max_items is a number"))?,
                ),
                None => None,
            };
            self.storage
                .pep_items(&self.user, &self.domain, name, limit)
                .await
                .map_err(storage_error)?
        } else {
            let mut found = Vec::new();
            for id in ids {
                if let Some(item) = self
                    .storage
                    .pep_item(&self.user, &self.domain, name, id)
                    .await
                    .map_err(storage_error)?
                {
                    found.push(item);
                }
            }
            found
        };
        Ok(Some(
            Build::new("pubsub", PUBSUB)
                .child(
                    Build::new("items", PUBSUB)
                        .attr("node", name.to_owned())
                        .children(found.iter().map(|i| notify::item_element(i, PUBSUB)))
                        .build(),
                )
                .build(),
        ))
    }

    /// XEP-0060 §5.7: the requester's affiliations with the account's nodes: the owner owns
    /// every one, anyone else has none.
    async fn affiliations(&self, own: bool) -> IqResponse {
        let nodes = if own {
            self.storage
                .pep_nodes(&self.user, &self.domain)
                .await
                .map_err(storage_error)?
        } else {
            Vec::new()
        };
        Ok(Some(
            Build::new("pubsub", PUBSUB)
                .child(
                    Build::new("affiliations", PUBSUB)
                        .children(nodes.into_iter().map(|node| {
                            Build::new("affiliation", PUBSUB)
                                .attr("node", node.name)
                                .attr("affiliation", "owner")
                                .build()
                        }))
                        .build(),
                )
                .build(),
        ))
    }

    /// XEP-0060 §8.1.2 and §8.1.3: create a node, with a configuration if one is given.
    async fn create_node(&self, create: &Element, configure: Option<&Element>) -> IqResponse {
        let name = create
            .attr("node")
            .ok_or_else(|| errors::unsupported("instant-nodes"))?;
        let name = node_name(create).map(|_| name)?;
        if self.node(name).await?.is_some() {
            return Err(
                StanzaError::new(ErrorType::Cancel, StanzaCondition::Conflict)
                    .with_text("the node exists already"),
            );
        }
        let config = node_config::apply(
            &PepNodeConfig::default(),
            &form_fields(configure),
            self.limits.max_items_per_node,
        )?;
        self.create(name, config).await?;
        Ok(None)
    }

    /// XEP-0060 §8.2: the configuration form, or a submitted one applied.
    async fn configure(&self, kind: IqKind, configure: &Element) -> IqResponse {
        let name = node_name(configure)?;
        let node = self.existing_node(name).await?;
        match kind {
            IqKind::Get => Ok(Some(
                Build::new("pubsub", PUBSUB_OWNER)
                    .child(
                        Build::new("configure", PUBSUB_OWNER)
                            .attr("node", name.to_owned())
                            .child(node_config::form(&node.config))
                            .build(),
                    )
                    .build(),
            )),
            IqKind::Set => {
                let form = configure
                    .get_child("x", ns::DATA_FORMS)
                    .ok_or_else(|| StanzaError::bad_request("no configuration form"))?;
                if form.attr("type") == Some("cancel") {
                    return Ok(None);
                }
                let config = node_config::apply(
                    &node.config,
                    &submitted_fields(form),
                    self.limits.max_items_per_node,
                )?;
                self.save(&PepNode {
                    name: node.name,
                    config,
                })
                .await?;
                Ok(None)
            }
        }
    }

    /// XEP-0060 §8.4 and §8.5: delete the node or only its items, and tell whoever hears of it.
    async fn delete_or_purge(&self, verb: &Element) -> IqResponse {
        let name = node_name(verb)?;
        let node = self.existing_node(name).await?;
        if verb.name() == "delete" {
            self.storage
                .delete_pep_node(&self.user, &self.domain, name)
                .await
                .map_err(storage_error)?;
        } else {
            self.storage
                .purge_pep_node(&self.user, &self.domain, name)
                .await
                .map_err(storage_error)?;
        }
        if name == super::avatar_hash::METADATA {
            super::avatar_hash::forget_hash(self.server, self.owner);
        }
        let event = Build::new(verb.name(), EVENT)
            .attr("node", name.to_owned())
            .build();
        notify::broadcast(self.server, self.owner, &node, event).await;
        Ok(None)
    }
}

/// The verb of a `<pubsub/>` request and the element after it (publish-options, configure).
fn verb(request: &IqRequest) -> Result<(&Element, Option<&Element>), StanzaError> {
    let pubsub = request
        .payload()
        .filter(|p| p.name() == "pubsub")
        .ok_or_else(|| StanzaError::bad_request("expected <pubsub/>"))?;
    let mut children = pubsub.children();
    let verb = children
        .next()
        .ok_or_else(|| StanzaError::bad_request("an empty <pubsub/>"))?;
    Ok((verb, children.next()))
}

#[async_trait::async_trait]
impl IqHandler<Server> for Pubsub {
    async fn handle(&self, server: &Arc<Server>, request: IqRequest) -> IqResponse {
        let service = Service::for_request(server, &request);
        let (verb, next) = verb(&request)?;
        let own = request.is_own_account();
        match (request.kind, verb.name()) {
            (IqKind::Get, "items") => service.items(&request.from.bare(), verb).await,
            (IqKind::Set, "publish" | "retract" | "create") if !own => {
                Err(with_condition(StanzaError::forbidden(), "publisher-only"))
            }
            (IqKind::Set, "publish") => {
                super::rate::allow(server, &request.to)?;
                let options = next.filter(|n| n.name() == "publish-options");
                service.publish(verb, options).await
            }
            (IqKind::Set, "retract") => {
                super::rate::allow(server, &request.to)?;
                service.retract(verb).await
            }
            (IqKind::Set, "create") => {
                let configure = next.filter(|n| n.name() == "configure");
                service.create_node(verb, configure).await
            }
            // XEP-0060 §5.6: PEP subscriptions are implicit (presence and caps, XEP-0163 §4),
            // so an entity has no explicit ones to list.
            (IqKind::Get, "subscriptions") => Ok(Some(
                Build::new("pubsub", PUBSUB)
                    .child(Build::new("subscriptions", PUBSUB).build())
                    .build(),
            )),
            (IqKind::Get, "affiliations") => service.affiliations(own).await,
            (_, feature @ ("subscribe" | "unsubscribe" | "options")) => {
                Err(errors::unsupported(feature))
            }
            _ => Err(StanzaError::bad_request("not a pubsub request PEP answers")),
        }
    }
}

#[async_trait::async_trait]
impl IqHandler<Server> for PubsubOwner {
    async fn handle(&self, server: &Arc<Server>, request: IqRequest) -> IqResponse {
        if !request.is_own_account() {
            return Err(StanzaError::forbidden());
        }
        let service = Service::for_request(server, &request);
        let (verb, _) = verb(&request)?;
        match (request.kind, verb.name()) {
            (kind, "configure") => service.configure(kind, verb).await,
            (IqKind::Get, "default") => Ok(Some(
                Build::new("pubsub", PUBSUB_OWNER)
                    .child(
                        Build::new("default", PUBSUB_OWNER)
                            .child(node_config::form(&PepNodeConfig::default()))
                            .build(),
                    )
                    .build(),
            )),
            (IqKind::Set, "delete" | "purge") => service.delete_or_purge(verb).await,
            (kind, "affiliations") => {
                let name = node_name(verb)?;
                super::affiliations::manage(&service, kind, verb, name).await
            }
            (_, "subscriptions") => Err(errors::unsupported("manage-subscriptions")),
            _ => Err(StanzaError::bad_request(
                "not a pubsub#owner request PEP answers",
            )),
        }
    }
}
