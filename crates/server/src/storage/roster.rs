//! Rosters (RFC 6121 §2): each account's contacts with their subscription states (§3) and
//! groups. Rosters are returned sorted by contact JID.

use async_trait::async_trait;

use super::StorageResult;

/// RFC 6121 §2.1.2.5 subscription states as stored on the roster item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Subscription {
    #[default]
    None,
    To,
    From,
    Both,
    /// Only in roster pushes for a removed item; never stored.
    Remove,
}

impl Subscription {
    pub fn as_str(self) -> &'static str {
        match self {
            Subscription::None => "none",
            Subscription::To => "to",
            Subscription::From => "from",
            Subscription::Both => "both",
            Subscription::Remove => "remove",
        }
    }

    pub fn parse(text: &str) -> Option<Subscription> {
        Some(match text {
            "none" => Subscription::None,
            "to" => Subscription::To,
            "from" => Subscription::From,
            "both" => Subscription::Both,
            "remove" => Subscription::Remove,
            _ => return None,
        })
    }

    /// The user receives the contact's presence.
    pub fn has_to(self) -> bool {
        matches!(self, Subscription::To | Subscription::Both)
    }

    /// The contact receives the user's presence.
    pub fn has_from(self) -> bool {
        matches!(self, Subscription::From | Subscription::Both)
    }

    /// RFC 6121 Appendix A transitions: the state with the `to` half added or removed…
    pub fn with_to(self) -> Subscription {
        match self {
            Subscription::None => Subscription::To,
            Subscription::From => Subscription::Both,
            other => other,
        }
    }

    pub fn without_to(self) -> Subscription {
        match self {
            Subscription::To => Subscription::None,
            Subscription::Both => Subscription::From,
            other => other,
        }
    }

    /// …and with the `from` half added or removed.
    pub fn with_from(self) -> Subscription {
        match self {
            Subscription::None => Subscription::From,
            Subscription::To => Subscription::Both,
            other => other,
        }
    }

    pub fn without_from(self) -> Subscription {
        match self {
            Subscription::From => Subscription::None,
            Subscription::Both => Subscription::To,
            other => other,
        }
    }
}

/// One contact on a user's roster (RFC 6121 §2.1.2).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RosterItem {
    /// The contact's bare JID, normalised.
    pub jid: String,
    pub name: Option<String>,
    pub subscription: Subscription,
    /// The user has sent a subscription request not yet answered ("pending out").
    pub ask_out: bool,
    /// The contact has asked to subscribe and the user has not answered ("pending in"); the
    /// stored request is re-delivered at each login (RFC 6121 §3.1.3).
    pub pending_in: bool,
    /// The user approved the contact's subscription before it was asked for ("pre-approved",
    /// RFC 6121 §3.4); the next request from the contact is answered at once.
    pub approved: bool,
    pub groups: Vec<String>,
}

#[async_trait]
pub trait RosterStore: Send + Sync {
    /// The user's roster, sorted by contact JID.
    async fn roster(&self, user: &str, domain: &str) -> StorageResult<Vec<RosterItem>>;
    async fn roster_item(
        &self,
        user: &str,
        domain: &str,
        contact: &str,
    ) -> StorageResult<Option<RosterItem>>;
    /// Inserts or replaces the item for `item.jid`. An item whose subscription is `remove` is
    /// refused ([`super::rules::check_roster_item`]).
    async fn put_roster_item(
        &self,
        user: &str,
        domain: &str,
        item: &RosterItem,
    ) -> StorageResult<()>;
    /// Removing an item that is not there is not an error.
    async fn remove_roster_item(
        &self,
        user: &str,
        domain: &str,
        contact: &str,
    ) -> StorageResult<()>;
}
