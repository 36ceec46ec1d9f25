//! One account's PEP service (XEP-0163 on XEP-0060): its nodes and items as the storage keeps
//! them, with the limits of `[pep]`. The requests clients send (`requests.rs`) and what the
//! server publishes on an account's behalf (bookmarks, avatars) both go through it.

use super::avatar_hash;
use super::errors::with_condition;
use super::node_config::{self, items_kept, preconditions_met};
use super::notify::{self, EVENT};
use crate::config::PepConfig;
use crate::im::roster;
use crate::server::Server;
use crate::stanza::{Build, ErrorType, StanzaCondition, StanzaError};
use crate::storage::{PepItem, PepNode, PepNodeConfig, Storage, StorageError};
use minidom::Element;
use std::sync::Arc;

/// Whether a publish checks its options against an existing node's configuration.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Preconditions {
    /// XEP-0060 §7.1.5, for clients' publish-options.
    Check,
    /// The server's own publishing on the owner's behalf (bookmarks, avatars from a vCard):
    /// the node keeps whatever configuration its owner gave it.
    Ignore,
}

/// One account's PEP service, for the length of a request.
pub(super) struct Service<'a> {
    pub(super) server: &'a Arc<Server>,
    pub(super) owner: &'a jid::BareJid,
    pub(super) user: String,
    pub(super) domain: String,
    pub(super) storage: &'a Arc<dyn Storage>,
    pub(super) limits: &'a PepConfig,
}

pub(super) fn storage_error(error: StorageError) -> StanzaError {
    StanzaError::storage("PEP storage", &error)
}

impl Service<'_> {
    /// The PEP service of account `owner`.
    pub(super) fn of<'a>(server: &'a Arc<Server>, owner: &'a jid::BareJid) -> Service<'a> {
        let (user, domain) = roster::account_key(owner);
        Service {
            server,
            owner,
            storage: server.storage_for(&domain),
            user,
            domain,
            limits: &server.config.pep,
        }
    }

    pub(super) async fn node(&self, name: &str) -> Result<Option<PepNode>, StanzaError> {
        self.storage
            .pep_node(&self.user, &self.domain, name)
            .await
            .map_err(storage_error)
    }

    /// Every item of node `name`, oldest first (none if there is no such node).
    pub(super) async fn all_items(&self, name: &str) -> Result<Vec<PepItem>, StanzaError> {
        self.storage
            .pep_items(&self.user, &self.domain, name, None)
            .await
            .map_err(storage_error)
    }

    pub(super) async fn existing_node(&self, name: &str) -> Result<PepNode, StanzaError> {
        self.node(name)
            .await?
            .ok_or_else(StanzaError::item_not_found)
    }

    /// Create `name` with `config`, within the account's limit of nodes.
    pub(super) async fn create(
        &self,
        name: &str,
        config: PepNodeConfig,
    ) -> Result<PepNode, StanzaError> {
        let count = self
            .storage
            .pep_nodes(&self.user, &self.domain)
            .await
            .map_err(storage_error)?
            .len();
        if count >= self.limits.max_nodes_per_account {
            return Err(StanzaError::resource_constraint().with_text(format!(
                "at most {} nodes per account",
                self.limits.max_nodes_per_account
            )));
        }
        let node = PepNode {
            name: name.to_owned(),
            config,
        };
        self.save(&node).await?;
        Ok(node)
    }

    pub(super) async fn save(&self, node: &PepNode) -> Result<(), StanzaError> {
        let keep = items_kept(&node.config, self.limits.max_items_per_node);
        self.storage
            .put_pep_node(&self.user, &self.domain, node, keep)
            .await
            .map_err(storage_error)
    }

    /// XEP-0060 §7.1: publish one item, creating the node (§7.1.4) with the publish-options as
    /// its configuration, or checking them as preconditions against the existing one (§7.1.5).
    pub(super) async fn publish_item(
        &self,
        name: &str,
        id: &str,
        payload: &Element,
        options: &[(String, Vec<String>)],
        preconditions: Preconditions,
    ) -> Result<(), StanzaError> {
        let payload_xml = salon_xml::serialize_to_string(payload);
        if payload_xml.len() > self.limits.max_item_bytes {
            return Err(with_condition(
                StanzaError::new(ErrorType::Modify, StanzaCondition::NotAcceptable).with_text(
                    format!("items have at most {} bytes", self.limits.max_item_bytes),
                ),
                "payload-too-big",
            ));
        }
        let max = self.limits.max_items_per_node;
        let node = match self.node(name).await? {
            Some(node)
                if preconditions == Preconditions::Ignore
                    || preconditions_met(&node.config, options, max) =>
            {
                node
            }
            Some(_) => {
                return Err(with_condition(
                    StanzaError::new(ErrorType::Cancel, StanzaCondition::Conflict)
                        .with_text("the node's configuration is not the one asked for"),
                    "precondition-not-met",
                ))
            }
            None => {
                let config = node_config::apply(&PepNodeConfig::default(), options, max)
                    .map_err(|e| with_condition(e, "precondition-not-met"))?;
                self.create(name, config).await?
            }
        };
        let stored = PepItem {
            id: id.to_owned(),
            published: chrono::Utc::now().timestamp_micros(),
            payload: payload_xml,
        };
        if node.config.persist_items {
            self.storage
                .publish_pep_item(
                    &self.user,
                    &self.domain,
                    name,
                    &stored,
                    items_kept(&node.config, max),
                )
                .await
                .map_err(storage_error)?;
        }
        let event = Build::new("items", EVENT)
            .attr("node", name.to_owned())
            .child(notify::item_element(&stored, EVENT))
            .build();
        notify::broadcast(self.server, self.owner, &node, event).await;
        if name == avatar_hash::METADATA {
            avatar_hash::remember_hash(self.server, self.owner, payload);
        }
        Ok(())
    }

    /// XEP-0060 §7.2: remove an item; with `notify`, tell whoever hears of the node.
    /// Remove item `id` of node `name`; with `notify`, tell whoever hears of the node.
    pub(super) async fn retract_item(
        &self,
        name: &str,
        id: &str,
        notify: bool,
    ) -> Result<(), StanzaError> {
        let node = self.existing_node(name).await?;
        let removed = self
            .storage
            .retract_pep_item(&self.user, &self.domain, name, id)
            .await
            .map_err(storage_error)?;
        if !removed {
            return Err(StanzaError::item_not_found());
        }
        if notify {
            let event = Build::new("items", EVENT)
                .attr("node", name.to_owned())
                .child(
                    Build::new("retract", EVENT)
                        .attr("id", id.to_owned())
                        .build(),
                )
                .build();
            notify::broadcast(self.server, self.owner, &node, event).await;
        }
        Ok(())
    }
}
