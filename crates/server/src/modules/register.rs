//! In-band account management for logged-in users (XEP-0077 §3.2, §3.3): change the password
//! or delete the account from the client. Sign-up before login is `signup/`.

use super::accounts;
use crate::im::roster;
use crate::registry::{IqHandler, IqKind, IqRequest, IqResponse, IqScope, Registry};
use crate::server::Server;
use crate::stanza::Bare;
use crate::stanza::{ns, Build, StanzaError};
use minidom::Element;
use std::sync::Arc;

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
        let account = request.from.bare();
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
                accounts::remove(server, &account).await?;
                tracing::info!(%account, "account removed in-band");
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
                accounts::set_password(server, &account, &password).await?;
                tracing::info!(%account, "password changed in-band");
                Ok(None)
            }
        }
    }
}
