//! XEP-0012 Last Activity: the server's uptime, and when an offline contact last logged out
//! (only to those subscribed to the account's presence, XEP-0012 §4).

use crate::hooks::{priority, SessionHook};
use crate::im::roster;
use crate::registry::{IqHandler, IqKind, IqRequest, IqResponse, IqScope, Registry};
use crate::router::{Outbound, SessionHandle};
use crate::server::Server;
use crate::stanza::Bare;
use crate::stanza::{self, ns, Build, StanzaError};
use std::sync::Arc;

pub fn register(registry: &mut Registry<Server>) {
    registry.feature(IqScope::Server, ns::LAST);
    registry.iq(
        IqScope::Server,
        IqKind::Get,
        ns::LAST,
        Arc::new(ServerUptime),
    );
    registry.iq(
        IqScope::Account,
        IqKind::Get,
        ns::LAST,
        Arc::new(AccountLast),
    );
    registry
        .hooks
        .on_session(priority::DELIVER, Arc::new(RecordLogout));
}

/// When an account's last session ends, remember the time for §4's answers.
struct RecordLogout;

#[async_trait::async_trait]
impl SessionHook<Server> for RecordLogout {
    async fn ended(
        &self,
        server: &Arc<Server>,
        session: &Arc<SessionHandle>,
        _: &mut Vec<Outbound>,
    ) {
        if session.anonymous {
            return;
        }
        let bare = session.jid.bare();
        if server.router.is_online(bare.as_str()) {
            return;
        }
        let Some(node) = bare.node() else {
            return;
        };
        let activity = crate::storage::LastActivity {
            at: stanza::now_unix(),
            status: String::new(),
        };
        let domain = bare.domain().as_str();
        if let Err(e) = server
            .storage
            .set_last_activity(node.as_str(), domain, &activity)
            .await
        {
            tracing::warn!(jid = %bare, error = %e, "recording the time of logout");
        }
    }
}

struct ServerUptime;

#[async_trait::async_trait]
impl IqHandler<Server> for ServerUptime {
    async fn handle(&self, server: &Arc<Server>, _request: IqRequest) -> IqResponse {
        Ok(Some(
            Build::new("query", ns::LAST)
                .attr("seconds", server.started.elapsed().as_secs().to_string())
                .build(),
        ))
    }
}

struct AccountLast;

#[async_trait::async_trait]
impl IqHandler<Server> for AccountLast {
    async fn handle(&self, server: &Arc<Server>, request: IqRequest) -> IqResponse {
        let (user, domain) = roster::account_key(&request.to);
        if !request.is_own_account() {
            let item = server
                .storage_for(&domain)
                .roster_item(&user, &domain, request.from.bare().as_str())
                .await
                .map_err(|e| {
                    StanzaError::storage(&format!("reading the roster of {}", request.to), &e)
                })?;
            if !item.is_some_and(|i| i.subscription.has_from()) {
                return Err(StanzaError::forbidden());
            }
        }
        if server.router.is_online(request.to.as_str()) {
            return Ok(Some(
                Build::new("query", ns::LAST).attr("seconds", "0").build(),
            ));
        }
        let last = server
            .storage_for(&domain)
            .last_activity(&user, &domain)
            .await
            .map_err(|e| {
                StanzaError::storage(&format!("reading the last activity of {}", request.to), &e)
            })?
            .ok_or_else(StanzaError::item_not_found)?;
        let seconds = (stanza::now_unix() - last.at).max(0);
        Ok(Some(
            Build::new("query", ns::LAST)
                .attr("seconds", seconds.to_string())
                .text(last.status)
                .build(),
        ))
    }
}
