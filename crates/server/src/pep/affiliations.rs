//! The owner's management of a node's affiliations (XEP-0060 §8.9), as PEP needs it: the
//! members of a whitelist node (`member`, read access) are added and removed (`none`); the
//! owner is always `owner`. Other affiliations (publisher, outcast) are not supported.

use super::service::Service;
use super::PUBSUB_OWNER;
use crate::registry::{IqKind, IqResponse};
use crate::stanza::{Build, ErrorType, StanzaCondition, StanzaError};
use minidom::Element;

/// Most members one node may have.
const MAX_MEMBERS: usize = 1024;

pub async fn manage(service: &Service<'_>, kind: IqKind, verb: &Element, name: &str) -> IqResponse {
    let mut node = service
        .node(name)
        .await?
        .ok_or_else(StanzaError::item_not_found)?;
    match kind {
        IqKind::Get => {
            let owner = Build::new("affiliation", PUBSUB_OWNER)
                .attr("jid", service.owner.to_string())
                .attr("affiliation", "owner")
                .build();
            let members = node.config.whitelist.iter().map(|jid| {
                Build::new("affiliation", PUBSUB_OWNER)
                    .attr("jid", jid.clone())
                    .attr("affiliation", "member")
                    .build()
            });
            Ok(Some(
                Build::new("pubsub", PUBSUB_OWNER)
                    .child(
                        Build::new("affiliations", PUBSUB_OWNER)
                            .attr("node", name.to_owned())
                            .child(owner)
                            .children(members)
                            .build(),
                    )
                    .build(),
            ))
        }
        IqKind::Set => {
            let mut whitelist = node.config.whitelist.clone();
            for change in verb.children().filter(|c| c.name() == "affiliation") {
                let jid = change
                    .attr("jid")
                    .and_then(|j| jid::BareJid::new(j).ok())
                    .ok_or_else(|| StanzaError::bad_request("an affiliation names a bare JID"))?;
                if jid == *service.owner {
                    return Err(StanzaError::not_allowed().with_text("the owner stays the owner"));
                }
                let jid = jid.to_string();
                whitelist.retain(|member| *member != jid);
                match change.attr("affiliation") {
                    Some("member") => whitelist.push(jid),
                    Some("none") => {}
                    _ => {
                        return Err(StanzaError::new(
                            ErrorType::Modify,
                            StanzaCondition::NotAcceptable,
                        )
                        .with_text("PEP nodes take the affiliations member and none"))
                    }
                }
            }
            if whitelist.len() > MAX_MEMBERS {
                return Err(StanzaError::resource_constraint()
                    .with_text(format!("at most {MAX_MEMBERS} members per node")));
            }
            node.config.whitelist = whitelist;
            service.save(&node).await?;
            Ok(None)
        }
    }
}
