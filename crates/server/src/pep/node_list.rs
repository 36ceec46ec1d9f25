//! An account's nodes in its disco#items (XEP-0060 §5.2, XEP-0163 §7): each node the requester
//! may read, as `<item jid='account' node='…'/>`. Wraps the account's disco#items handler,
//! which lists nothing of its own.

use super::access;
use crate::im::roster;
use crate::registry::{IqHandler, IqKind, IqRequest, IqResponse, IqScope, Registry};
use crate::server::Server;
use crate::stanza::Bare;
use crate::stanza::{ns, Build};
use std::sync::Arc;

pub fn register(registry: &mut Registry<Server>) {
    if let Some(inner) = registry.handler(IqScope::Account, IqKind::Get, ns::DISCO_ITEMS) {
        registry.iq(
            IqScope::Account,
            IqKind::Get,
            ns::DISCO_ITEMS,
            Arc::new(NodeList { inner }),
        );
    }
}

struct NodeList {
    inner: Arc<dyn IqHandler<Server>>,
}

#[async_trait::async_trait]
impl IqHandler<Server> for NodeList {
    async fn handle(&self, server: &Arc<Server>, request: IqRequest) -> IqResponse {
        let owner = request.to.clone();
        let requester = request.from.bare();
        let answer = self.inner.handle(server, request).await?;
        let Some(mut query) = answer else {
            return Ok(None);
        };
        let (user, domain) = roster::account_key(&owner);
        let nodes = server
            .storage_for(&domain)
            .pep_nodes(&user, &domain)
            .await
            .map_err(|e| crate::stanza::StanzaError::storage("PEP storage", &e))?;
        let relation = access::relation(server, &owner, &requester).await;
        for node in nodes {
            if access::check(&node.config, &relation).is_ok() {
                query.append_child(
                    Build::new("item", ns::DISCO_ITEMS)
                        .attr("jid", owner.to_string())
                        .attr("node", node.name)
                        .build(),
                );
            }
        }
        Ok(Some(query))
    }
}
