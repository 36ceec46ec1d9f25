//! XEP-0199 XMPP Ping: the server answers pings addressed to it.

use super::{IqHandler, IqKind, IqRequest, IqResponse, IqScope, Registry};
use crate::server::Server;
use crate::stanza::ns;
use std::sync::Arc;

pub fn register(registry: &mut Registry) {
    registry.feature(IqScope::Server, ns::PING);
    registry.iq(IqScope::Server, IqKind::Get, ns::PING, Arc::new(Ping));
}

struct Ping;

#[async_trait::async_trait]
impl IqHandler for Ping {
    async fn handle(&self, _server: &Arc<Server>, _request: IqRequest) -> IqResponse {
        Ok(None)
    }
}
