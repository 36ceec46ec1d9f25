//! XEP-0092 Software Version of the server.

use crate::registry::{IqHandler, IqKind, IqRequest, IqResponse, IqScope, Registry};
use crate::server::Server;
use crate::stanza::{ns, Build};
use std::sync::Arc;

pub fn register(registry: &mut Registry<Server>) {
    registry.feature(IqScope::Server, ns::VERSION);
    registry.iq(IqScope::Server, IqKind::Get, ns::VERSION, Arc::new(Version));
}

struct Version;

#[async_trait::async_trait]
impl IqHandler<Server> for Version {
    async fn handle(&self, _server: &Arc<Server>, _request: IqRequest) -> IqResponse {
        Ok(Some(
            Build::new("query", ns::VERSION)
                .child(Build::new("name", ns::VERSION).text("Salon").build())
                .child(
                    Build::new("version", ns::VERSION)
                        .text(env!("CARGO_PKG_VERSION"))
                        .build(),
                )
                .build(),
        ))
    }
}
