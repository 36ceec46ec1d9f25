//! Message Archive Management for accounts (XEP-0313): the one-to-one messages an account sends
//! and receives are archived under a stanza id (XEP-0359), and its clients page through them.

use crate::archive::{self, WithKind};
use crate::durable::Commit;
use crate::hooks::{priority, FromClient, MessageHook, ServerHook, StanzaHook};
use crate::registry::{IqHandler, IqKind, IqRequest, IqResponse, IqScope, Registry};
use crate::server::Server;
use crate::stanza::Bare;
use crate::stanza::{ns, Build, StanzaError};
use crate::storage::ArchivedMessage;
use minidom::Element;
use std::sync::Arc;

pub fn register(registry: &mut Registry<Server>, config: &crate::config::Config) {
    if !config.archive.enabled {
        return;
    }
    let handler = Arc::new(MamHandler);
    registry.iq(IqScope::Account, IqKind::Get, ns::MAM, handler.clone());
    registry.iq(IqScope::Account, IqKind::Set, ns::MAM, handler);
    // Both on the account's bare JID: it archives, and it stamps stanza ids (XEP-0359 §6).
    registry.feature(IqScope::Account, ns::MAM);
    registry.feature(IqScope::Account, ns::SID);
    registry
        .hooks
        .on_from_client(priority::OBSERVE, Arc::new(Archiving));
    registry
        .hooks
        .on_message(priority::OBSERVE, Arc::new(Archiving));
    registry
        .hooks
        .on_server(priority::OBSERVE, Arc::new(Archiving));
}

/// Archives what accounts send and receive, and expires old entries.
struct Archiving;

#[async_trait::async_trait]
impl StanzaHook<Server, FromClient> for Archiving {
    async fn handle(
        &self,
        server: &Arc<Server>,
        point: &FromClient,
        stanza: Element,
    ) -> Option<Element> {
        if stanza.name() == "message" {
            archive_outgoing(server, point, &stanza).await;
        }
        Some(stanza)
    }
}

#[async_trait::async_trait]
impl MessageHook<Server> for Archiving {
    async fn arriving(
        &self,
        server: &Arc<Server>,
        account: &jid::BareJid,
        message: &mut Element,
    ) -> Option<Commit> {
        archive_incoming(server, account, message).await
    }
}

#[async_trait::async_trait]
impl ServerHook<Server> for Archiving {
    async fn started(&self, server: &Arc<Server>) {
        archive::start_retention(
            server.storage.clone(),
            vec![server.config.domain.clone()],
            server.config.archive.retention_days,
            server.shutdown_signal(),
        );
    }
}

struct MamHandler;

#[async_trait::async_trait]
impl IqHandler<Server> for MamHandler {
    async fn handle(&self, server: &Arc<Server>, request: IqRequest) -> IqResponse {
        if server.is_anonymous_host(request.to.domain().as_str()) {
            return Err(StanzaError::service_unavailable().with_text("guests have no archive"));
        }
        if !request.is_own_account() {
            return Err(StanzaError::forbidden());
        }
        let Some(payload) = request.payload() else {
            return Err(StanzaError::bad_request("missing payload"));
        };
        match (request.kind, payload.name()) {
            (IqKind::Get, "query") => Ok(Some(archive::query_form())),
            (IqKind::Set, "query") => {
                // A message sent a moment ago is in the answer.
                archive::writer(server.as_ref()).flush().await;
                archive::answer_query(
                    server.as_ref(),
                    request.to.as_str(),
                    request.from_full().ok_or_else(StanzaError::forbidden)?,
                    payload,
                    WithKind::Bare,
                )
                .await
            }
            // §6.1: everything is archived; the operator decides that, not the user.
            (IqKind::Get, "prefs") => Ok(Some(
                Build::new("prefs", ns::MAM)
                    .attr("default", "always")
                    .child(Element::bare("always", ns::MAM))
                    .child(Element::bare("never", ns::MAM))
                    .build(),
            )),
            (IqKind::Set, "prefs") => Err(StanzaError::feature_not_implemented()
                .with_text("every message is archived; preferences cannot be changed here")),
            _ => Err(StanzaError::bad_request("expected <query/> or <prefs/>")),
        }
    }
}

/// XEP-0313 §7.1 with XEP-0334 hints: chats and normal messages with a body (or a `<store/>`
/// hint), unless the sender asked for them not to be stored.
fn archivable(message: &Element) -> bool {
    let hint = |name: &str| message.get_child(name, ns::HINTS).is_some();
    if hint("no-store") || hint("no-permanent-store") {
        return false;
    }
    matches!(message.attr("type").unwrap_or("normal"), "chat" | "normal")
        && (message.get_child("body", ns::CLIENT).is_some() || hint("store"))
}

fn enabled_for(server: &Server, account: &jid::BareJid) -> bool {
    server.config.archive.enabled && !server.is_anonymous_host(account.domain().as_str())
}

fn bare_of(address: Option<&str>) -> Option<String> {
    Some(crate::jid_memo::parse(address?).ok()?.bare().to_string())
}

/// A message about to be delivered to (or held for) `account`: drop stanza ids that claim to
/// be the account's (XEP-0359 §3.3), then archive it under a new one, which the delivered copy
/// carries so clients can match it with the archive. The delivered copy waits for the
/// returned commit.
async fn archive_incoming(
    server: &Arc<Server>,
    account: &jid::BareJid,
    message: &mut Element,
) -> Option<Commit> {
    if !enabled_for(server, account) {
        return None;
    }
    let account_str = account.as_str();
    let forged = |c: &Element| c.is("stanza-id", ns::SID) && c.attr("by") == Some(account_str);
    if message.children().any(forged) {
        for node in message.take_nodes() {
            if !node.as_element().is_some_and(forged) {
                message.append_node(node);
            }
        }
    }
    if !archivable(message) {
        return None;
    }
    let with = bare_of(message.attr("from"))?;
    // Stored as the sender's archive stores it (before the stanza id, which the result's id
    // carries), so that the two copies of a local 1:1 message share one stored stanza.
    let stored = serialized(message);
    let id = archive::new_stanza_id();
    message.append_child(
        Build::new("stanza-id", ns::SID)
            .attr("id", id.clone())
            .attr("by", account_str.to_string())
            .build(),
    );
    Some(append(server, account_str, id, with, stored).await)
}

/// A message a local client sends: archived in its own account's archive. Nothing waits for
/// that commit here: what delivers the message waits for the recipient's archive write,
/// queued after it, and the sender's stream-management answers for the server's latest.
async fn archive_outgoing(server: &Arc<Server>, point: &FromClient, message: &Element) {
    let sender = &point.session;
    let account = sender.jid.bare();
    if sender.anonymous || !enabled_for(server, &account) || !archivable(message) {
        return;
    }
    // The session parsed `to` already (the same parse `bare_of` would do).
    let Some(with) = point.to.as_ref().map(|to| to.bare_str().to_string()) else {
        return;
    };
    if with == account.as_str() {
        // To the account itself: archived once, as it arrives.
        return;
    }
    append(
        server,
        account.as_str(),
        archive::new_stanza_id(),
        with,
        serialized(message),
    )
    .await;
}

fn serialized(message: &Element) -> String {
    salon_xml::serialize_to_string(message)
}

async fn append(
    server: &Arc<Server>,
    account: &str,
    id: String,
    with: String,
    stanza: String,
) -> Commit {
    archive::writer(server.as_ref())
        .append(
            account,
            ArchivedMessage {
                id,
                timestamp: chrono::Utc::now().timestamp_micros(),
                with,
                stanza,
            },
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(xml: &str) -> Element {
        xml.parse().expect("test XML")
    }

    #[test]
    fn chats_with_bodies_are_archived_hints_are_obeyed() {
        let chat = "<message xmlns='jabber:client' type='chat'><body>hi</body></message>";
        assert!(archivable(&message(chat)));
        let normal = "<message xmlns='jabber:client'><body>hi</body></message>";
        assert!(archivable(&message(normal)));
        let state = "<message xmlns='jabber:client' type='chat'><active xmlns='http://jabber.org/protocol/chatstates'/></message>";
        assert!(!archivable(&message(state)));
        let stored =
            "<message xmlns='jabber:client' type='chat'><store xmlns='urn:xmpp:hints'/></message>";
        assert!(archivable(&message(stored)));
        let unstored = "<message xmlns='jabber:client' type='chat'><body>x</body><no-store xmlns='urn:xmpp:hints'/></message>";
        assert!(!archivable(&message(unstored)));
        let groupchat = "<message xmlns='jabber:client' type='groupchat'><body>hi</body></message>";
        assert!(!archivable(&message(groupchat)));
        let error = "<message xmlns='jabber:client' type='error'><body>hi</body></message>";
        assert!(!archivable(&message(error)));
    }
}
