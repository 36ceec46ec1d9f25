//! Personal eventing (XEP-0163, on XEP-0060): each account's nodes with their configuration,
//! and the items published to them, oldest first.

use async_trait::async_trait;

use super::StorageResult;

/// Who may read a node's items and receive its notifications (XEP-0060 §4.5).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AccessModel {
    /// Anyone.
    Open,
    /// Contacts subscribed to the owner's presence (XEP-0163's default).
    #[default]
    Presence,
    /// Contacts in the roster groups the node allows.
    Roster,
    /// Only the owner (private storage, XEP-0223).
    Whitelist,
}

impl AccessModel {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessModel::Open => "open",
            AccessModel::Presence => "presence",
            AccessModel::Roster => "roster",
            AccessModel::Whitelist => "whitelist",
        }
    }

    pub fn parse(text: &str) -> Option<AccessModel> {
        Some(match text {
            "open" => AccessModel::Open,
            "presence" => AccessModel::Presence,
            "roster" => AccessModel::Roster,
            "whitelist" => AccessModel::Whitelist,
            _ => return None,
        })
    }
}

/// When a node's last item is sent without being asked for (XEP-0060 §12.18).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SendLastItem {
    Never,
    OnSub,
    /// On subscription and whenever a subscriber's client comes online (PEP's default).
    #[default]
    OnSubAndPresence,
}

impl SendLastItem {
    pub fn as_str(self) -> &'static str {
        match self {
            SendLastItem::Never => "never",
            SendLastItem::OnSub => "on_sub",
            SendLastItem::OnSubAndPresence => "on_sub_and_presence",
        }
    }

    pub fn parse(text: &str) -> Option<SendLastItem> {
        Some(match text {
            "never" => SendLastItem::Never,
            "on_sub" => SendLastItem::OnSub,
            "on_sub_and_presence" => SendLastItem::OnSubAndPresence,
            _ => return None,
        })
    }
}

/// A node's configuration (XEP-0060 §16.4.3, the fields PEP supports).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PepNodeConfig {
    pub access_model: AccessModel,
    /// Roster groups whose members may read a node with [`AccessModel::Roster`].
    pub roster_groups_allowed: Vec<String>,
    /// Items are stored; otherwise they are only sent as notifications.
    pub persist_items: bool,
    /// Items kept; `None` is "max", the server's limit.
    pub max_items: Option<u32>,
    pub send_last_published_item: SendLastItem,
    /// Bare JIDs the owner made members (XEP-0060 §8.9): they may read a node with
    /// [`AccessModel::Whitelist`].
    pub whitelist: Vec<String>,
}

impl Default for PepNodeConfig {
    fn default() -> Self {
        PepNodeConfig {
            access_model: AccessModel::Presence,
            roster_groups_allowed: Vec::new(),
            persist_items: true,
            max_items: Some(1),
            send_last_published_item: SendLastItem::OnSubAndPresence,
            whitelist: Vec::new(),
        }
    }
}

/// One node of an account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PepNode {
    pub name: String,
    pub config: PepNodeConfig,
}

/// One published item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PepItem {
    pub id: String,
    /// When it was published, microseconds since the epoch.
    pub published: i64,
    /// The serialised payload element.
    pub payload: String,
}

#[async_trait]
pub trait PepStore: Send + Sync {
    /// The account's nodes, by name.
    async fn pep_nodes(&self, user: &str, domain: &str) -> StorageResult<Vec<PepNode>>;
    async fn pep_node(
        &self,
        user: &str,
        domain: &str,
        node: &str,
    ) -> StorageResult<Option<PepNode>>;
    /// Creates the node or replaces its configuration, keeping its newest `keep` items.
    /// NotFound without an account.
    async fn put_pep_node(
        &self,
        user: &str,
        domain: &str,
        node: &PepNode,
        keep: usize,
    ) -> StorageResult<()>;
    /// Deletes the node and its items; whether there was one.
    async fn delete_pep_node(&self, user: &str, domain: &str, node: &str) -> StorageResult<bool>;
    /// Stores `item` as the node's newest (an item with the same id is replaced and becomes the
    /// newest), then keeps the newest `keep` items. NotFound without the node.
    async fn publish_pep_item(
        &self,
        user: &str,
        domain: &str,
        node: &str,
        item: &PepItem,
        keep: usize,
    ) -> StorageResult<()>;
    /// The newest `limit` items (all with `None`), oldest first.
    async fn pep_items(
        &self,
        user: &str,
        domain: &str,
        node: &str,
        limit: Option<usize>,
    ) -> StorageResult<Vec<PepItem>>;
    async fn pep_item(
        &self,
        user: &str,
        domain: &str,
        node: &str,
        id: &str,
    ) -> StorageResult<Option<PepItem>>;
    /// Removes one item; whether it was there.
    async fn retract_pep_item(
        &self,
        user: &str,
        domain: &str,
        node: &str,
        id: &str,
    ) -> StorageResult<bool>;
    /// Removes every item of the node, keeping the node.
    async fn purge_pep_node(&self, user: &str, domain: &str, node: &str) -> StorageResult<()>;
}
