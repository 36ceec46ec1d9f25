//! Who may read a PEP node (XEP-0060 §4.5 access models, XEP-0163 §4.1 presence default), and
//! the errors of XEP-0060 §6.5.9 for those who may not.

use super::errors;
use crate::im::roster;
use crate::server::Server;
use crate::stanza::{ErrorType, StanzaCondition, StanzaError};
use crate::storage::{AccessModel, PepNodeConfig, RosterItem};
use std::sync::Arc;

/// How the requester stands with the node's owner, as the owner's roster says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Relation {
    Owner,
    /// In the owner's roster.
    Contact {
        /// Bare JID.
        jid: String,
        /// Receives the owner's presence (subscription "from" or "both" on the owner's side).
        subscribed: bool,
        groups: Vec<String>,
    },
    /// Not in the owner's roster (bare JID).
    Stranger(String),
}

impl Relation {
    /// The relation of `jid` with the owner, whose roster item for it is `item`.
    pub fn of_item(jid: &str, item: Option<&RosterItem>) -> Relation {
        match item {
            Some(item) => Relation::Contact {
                jid: jid.to_owned(),
                subscribed: item.subscription.has_from(),
                groups: item.groups.clone(),
            },
            None => Relation::Stranger(jid.to_owned()),
        }
    }
}

/// Look up how `requester` stands with `owner`.
pub async fn relation(
    server: &Arc<Server>,
    owner: &jid::BareJid,
    requester: &jid::BareJid,
) -> Relation {
    if owner == requester {
        return Relation::Owner;
    }
    let (user, domain) = roster::account_key(owner);
    let item = server
        .storage_for(&domain)
        .roster_item(&user, &domain, requester.as_str())
        .await
        .unwrap_or_default();
    Relation::of_item(requester.as_str(), item.as_ref())
}

/// Whether someone in `relation` may read the node (and so be notified of it).
pub fn check(config: &PepNodeConfig, relation: &Relation) -> Result<(), StanzaError> {
    let (jid, subscribed, groups) = match relation {
        Relation::Owner => return Ok(()),
        Relation::Contact {
            jid,
            subscribed,
            groups,
        } => (jid, *subscribed, groups.as_slice()),
        Relation::Stranger(jid) => (jid, false, [].as_slice()),
    };
    match config.access_model {
        AccessModel::Open => Ok(()),
        AccessModel::Presence if subscribed => Ok(()),
        AccessModel::Presence => Err(errors::with_condition(
            StanzaError::new(ErrorType::Auth, StanzaCondition::NotAuthorized),
            "presence-subscription-required",
        )),
        AccessModel::Roster
            if groups
                .iter()
                .any(|g| config.roster_groups_allowed.contains(g)) =>
        {
            Ok(())
        }
        AccessModel::Roster => Err(errors::with_condition(
            StanzaError::new(ErrorType::Auth, StanzaCondition::NotAuthorized),
            "not-in-roster-group",
        )),
        AccessModel::Whitelist if config.whitelist.contains(jid) => Ok(()),
        AccessModel::Whitelist => Err(errors::with_condition(
            StanzaError::not_allowed(),
            "closed-node",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(access_model: AccessModel, groups: &[&str]) -> PepNodeConfig {
        PepNodeConfig {
            access_model,
            roster_groups_allowed: groups.iter().map(|g| g.to_string()).collect(),
            ..PepNodeConfig::default()
        }
    }

    fn contact(subscribed: bool, groups: &[&str]) -> Relation {
        Relation::Contact {
            jid: "bob@example.org".into(),
            subscribed,
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    fn stranger() -> Relation {
        Relation::Stranger("eve@example.org".into())
    }

    fn refused(config: &PepNodeConfig, relation: &Relation) -> Option<(&'static str, String)> {
        check(config, relation).err().map(|e| {
            let extra = e.extra.map(|x| x.name().to_owned()).unwrap_or_default();
            (e.condition.name(), extra)
        })
    }

    #[test]
    fn the_owner_reads_every_node() {
        for model in [
            AccessModel::Open,
            AccessModel::Presence,
            AccessModel::Roster,
            AccessModel::Whitelist,
        ] {
            assert!(check(&config(model, &[]), &Relation::Owner).is_ok());
        }
    }

    #[test]
    fn open_nodes_are_read_by_anyone() {
        assert!(check(&config(AccessModel::Open, &[]), &stranger()).is_ok());
    }

    #[test]
    fn presence_nodes_need_a_presence_subscription() {
        let node = config(AccessModel::Presence, &[]);
        assert!(check(&node, &contact(true, &[])).is_ok());
        let expected = Some((
            "not-authorized",
            "presence-subscription-required".to_owned(),
        ));
        assert_eq!(refused(&node, &contact(false, &["Friends"])), expected);
        assert_eq!(refused(&node, &stranger()), expected);
    }

    #[test]
    fn roster_nodes_need_an_allowed_group() {
        let node = config(AccessModel::Roster, &["Friends"]);
        assert!(check(&node, &contact(false, &["Work", "Friends"])).is_ok());
        let expected = Some(("not-authorized", "not-in-roster-group".to_owned()));
        assert_eq!(refused(&node, &contact(true, &["Work"])), expected);
        assert_eq!(refused(&node, &stranger()), expected);
    }

    #[test]
    fn whitelist_nodes_are_the_owners_and_members() {
        let mut node = config(AccessModel::Whitelist, &[]);
        let expected = Some(("not-allowed", "closed-node".to_owned()));
        assert_eq!(refused(&node, &contact(true, &["Friends"])), expected);
        assert_eq!(refused(&node, &stranger()), expected);
        // ... and its members'.
        node.whitelist = vec!["eve@example.org".into()];
        assert!(check(&node, &stranger()).is_ok());
        assert_eq!(refused(&node, &contact(true, &[])), expected);
    }
}
