//! Push registrations (XEP-0357, and Salon's MUC push `urn:salon:muc-push:0`): which app
//! server (a pubsub JID and node) to notify for an account's messages, or for a room's
//! messages while one of the account's clients is away. Kept so that a phone that enabled
//! push is still woken after the server restarts; they go with their account.

use async_trait::async_trait;

use super::StorageResult;

/// One registration of an account's client with its app server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushRegistration {
    /// The room's bare JID for MUC push; `None` for the account's own messages (XEP-0357).
    pub room: Option<String>,
    /// MUC push: the resource of the client that registered (pushed for while it is away).
    /// Empty for XEP-0357, where the session remembers what it enabled.
    pub resource: String,
    /// MUC push: the token the client removes it with. Empty for XEP-0357.
    pub token: String,
    /// The app server's JID and node.
    pub service: String,
    pub node: String,
    /// The XEP-0357 publish-options form the client gave, serialised (its secret).
    pub options: Option<String>,
    /// Unix seconds it was made; lists come oldest first.
    pub created: i64,
}

#[async_trait]
pub trait PushStore: Send + Sync {
    /// Keeps `registration` for the account `user@domain`, replacing the one with the same
    /// room, service and node. `NotFound` without an account.
    async fn put_push_registration(
        &self,
        user: &str,
        domain: &str,
        registration: &PushRegistration,
    ) -> StorageResult<()>;
    /// Removes the account's registrations in `room` (`None`: its own, XEP-0357) with
    /// `service` and `node` (`None`: every node of that service); how many went.
    async fn delete_push_registrations(
        &self,
        user: &str,
        domain: &str,
        room: Option<&str>,
        service: &str,
        node: Option<&str>,
    ) -> StorageResult<u64>;
    /// Every registration, with its account's bare JID, of rooms (`rooms`) or of accounts'
    /// own messages, oldest first: loaded once when the server starts.
    async fn push_registrations(
        &self,
        rooms: bool,
    ) -> StorageResult<Vec<(String, PushRegistration)>>;
}
