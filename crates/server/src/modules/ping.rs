//! XEP-0199 XMPP Ping: the server answers pings addressed to it.

use crate::registry::{IqHandler, IqKind, IqRequest, IqResponse, IqScope, Registry};
use crate::server::Server;
use crate::stanza::ns;
use std::sync::Arc;

pub fn register(registry: &mut Registry<Server>) {
    registry.feature(IqScope::Server, ns::PING);
    // A ping without `to` is addressed to the account and answered by the server for it
    // (RFC 6120 §10.3.3), which clients use to check their connection.
    for scope in [IqScope::Server, IqScope::Account] {
        registry.iq(scope, IqKind::Get, ns::PING, Arc::new(Ping));
    }
}

struct Ping;

#[async_trait::async_trait]
impl IqHandler<Server> for Ping {
    async fn handle(&self, _server: &Arc<Server>, _request: IqRequest) -> IqResponse {
        Ok(None)
    }
}
