//! In-band account management for logged-in users (XEP-0077 §3.2, §3.3): change the password
//! or delete the account from the client. Creating accounts in-band is not offered; operators
//! create them with `salon user add`.

use crate::im::roster;
use crate::registry::{IqHandler, IqKind, IqRequest, IqResponse, IqScope, Registry};
use crate::server::Server;
use crate::stanza::{ns, Build, ErrorType, StanzaCondition, StanzaError, StreamCondition};
use minidom::Element;
use std::sync::Arc;

/// Longest password accepted, in bytes; SCRAM hashes any length, but nobody needs more.
const MAX_PASSWORD_BYTES: usize = 1024;
/// How long the requester's session stays after its account is removed, so that the IQ
/// result reaches it before the stream error.
const REMOVAL_GRACE: std::time::Duration = std::time::Duration::from_millis(250);

pub fn register(registry: &mut Registry<Server>) {
    let handler = Arc::new(Register);
    for scope in [IqScope::Server, IqScope::Account] {
        registry.iq(scope, IqKind::Get, ns::REGISTER, handler.clone());
        registry.iq(scope, IqKind::Set, ns::REGISTER, handler.clone());
    }
    registry.feature(IqScope::Server, ns::REGISTER);
}

struct Register;

#[async_trait::async_trait]
impl IqHandler<Server> for Register {
    async fn handle(&self, server: &Arc<Server>, request: IqRequest) -> IqResponse {
        // Addressed to the server or to the account itself: either way about the sender's own
        // account, on its own host.
        let account = request.from.to_bare();
        if request.to != account && request.to.as_str() != account.domain().as_str() {
            return Err(StanzaError::forbidden());
        }
        if server.is_anonymous_host(account.domain().as_str()) {
            // Not offered on the anonymous host at all: there is no account to manage.
            return Err(
                StanzaError::service_unavailable().with_text("guests have no account to manage")
            );
        }
        let query = request
            .payload()
            .ok_or_else(|| StanzaError::bad_request("missing query"))?;
        let (user, domain) = roster::account_key(&account);
        match request.kind {
            IqKind::Get => Ok(Some(
                Build::new("query", ns::REGISTER)
                    .child(Element::bare("registered", ns::REGISTER))
                    .child(Build::new("username", ns::REGISTER).text(user).build())
                    .build(),
            )),
            IqKind::Set if query.get_child("remove", ns::REGISTER).is_some() => {
                if query.children().count() != 1 {
                    return Err(StanzaError::bad_request("<remove/> must be alone"));
                }
                remove(server, &account, &user, &domain).await?;
                Ok(None)
            }
            IqKind::Set => {
                let username = query.get_child("username", ns::REGISTER).map(Element::text);
                let password = query.get_child("password", ns::REGISTER).map(Element::text);
                let (Some(username), Some(password)) = (username, password) else {
                    return Err(StanzaError::bad_request(
                        "a password change carries <username/> and <password/>",
                    ));
                };
                let named = jid::BareJid::new(&format!("{username}@{domain}")).ok();
                if named.as_ref() != Some(&account) {
                    return Err(StanzaError::not_allowed()
                        .with_text("only the logged-in account's password can be changed"));
                }
                if password.is_empty() || password.len() > MAX_PASSWORD_BYTES {
                    return Err(StanzaError::new(
                        ErrorType::Modify,
                        StanzaCondition::NotAcceptable,
                    )
                    .with_text(format!(
                        "the password must be 1 to {MAX_PASSWORD_BYTES} bytes"
                    )));
                }
                let credentials = tokio::task::spawn_blocking(move || {
                    crate::session::sasl::derive_credentials(&password)
                })
                .await
                .map_err(|e| {
                    tracing::error!(%account, error = %e, "deriving credentials");
                    StanzaError::internal()
                })?;
                server
                    .storage_for(&domain)
                    .set_credentials(&user, &domain, &credentials)
                    .await
                    .map_err(|e| {
                        StanzaError::storage(&format!("changing password of {account}"), &e)
                    })?;
                tracing::info!(%account, "password changed in-band");
                Ok(None)
            }
        }
    }
}

/// XEP-0077 §3.2: cancel the account's subscriptions (RFC 6121 §2.5.2), delete it with
/// everything stored for it, and close its sessions with `<not-authorized/>`.
async fn remove(
    server: &Arc<Server>,
    account: &jid::BareJid,
    user: &str,
    domain: &str,
) -> Result<(), StanzaError> {
    let from = account.to_string();
    for item in roster::items(server, account).await {
        let Ok(contact) = jid::BareJid::new(&item.jid) else {
            continue;
        };
        if item.subscription.has_to() || item.ask_out {
            roster::send_subscription(server, &from, &contact, "unsubscribe").await;
        }
        if item.subscription.has_from() || item.pending_in {
            roster::send_subscription(server, &from, &contact, "unsubscribed").await;
        }
    }
    server
        .storage_for(domain)
        .delete_account(user, domain)
        .await
        .map_err(|e| StanzaError::storage(&format!("removing account {account}"), &e))?;
    tracing::info!(%account, "account removed in-band");
    let sessions = server.router.sessions_of(account.as_str());
    tokio::spawn(async move {
        tokio::time::sleep(REMOVAL_GRACE).await;
        for session in sessions {
            session.kick(StreamCondition::NotAuthorized, "the account was removed");
        }
    });
    Ok(())
}
