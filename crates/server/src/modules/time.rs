//! XEP-0202 Entity Time of the server.

use crate::registry::{IqHandler, IqKind, IqRequest, IqResponse, IqScope, Registry};
use crate::server::Server;
use crate::stanza::{ns, Build};
use std::sync::Arc;

pub fn register(registry: &mut Registry<Server>) {
    registry.feature(IqScope::Server, ns::TIME);
    registry.iq(IqScope::Server, IqKind::Get, ns::TIME, Arc::new(Time));
}

struct Time;

#[async_trait::async_trait]
impl IqHandler<Server> for Time {
    async fn handle(&self, _server: &Arc<Server>, _request: IqRequest) -> IqResponse {
        // The server reports UTC; XEP-0202 allows any offset as long as it is stated.
        let now = chrono::Utc::now();
        Ok(Some(
            Build::new("time", ns::TIME)
                .child(Build::new("tzo", ns::TIME).text("+00:00").build())
                .child(
                    Build::new("utc", ns::TIME)
                        .text(now.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
                        .build(),
                )
                .build(),
        ))
    }
}
