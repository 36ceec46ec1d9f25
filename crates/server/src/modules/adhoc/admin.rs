//! The XEP-0133 service administration commands operators use, for the accounts listed in
//! `admins` only: add a user, delete users, change a user's password, list online users,
//! announce to online users, end users' sessions.

use super::{Command, Step};
use crate::modules::accounts;
use crate::server::Server;
use crate::stanza::forms::{DataForm, Field, FieldType, FormType};
use crate::stanza::Bare;
use crate::stanza::{ns, Build, StanzaError};
use std::sync::Arc;

pub const NS_ADMIN: &str = "http://jabber.org/protocol/admin";
/// Most accounts one command acts on, and most online users one list shows.
const MAX_ACCOUNTS: usize = 100;
const MAX_LISTED: usize = 1000;

pub fn commands() -> Vec<Arc<dyn Command>> {
    [
        Admin::AddUser,
        Admin::DeleteUser,
        Admin::ChangePassword,
        Admin::OnlineUsers,
        Admin::Announce,
        Admin::EndSessions,
    ]
    .into_iter()
    .map(|c| Arc::new(c) as Arc<dyn Command>)
    .collect()
}

#[derive(Clone, Copy)]
enum Admin {
    AddUser,
    DeleteUser,
    ChangePassword,
    OnlineUsers,
    Announce,
    EndSessions,
}

fn form(title: &str, fields: Vec<Field>) -> DataForm {
    DataForm::new(FormType::Form)
        .title(title)
        .field(Field::form_type(NS_ADMIN))
        .fields(fields)
}

/// An account on this server's main host named in a form.
fn local_account(server: &Server, value: &str) -> Result<jid::BareJid, StanzaError> {
    let account = jid::BareJid::new(value.trim())
        .map_err(|_| StanzaError::jid_malformed().with_text(format!("`{value}` is not a JID")))?;
    if account.node().is_none() || account.domain().as_str() != server.config.domain {
        return Err(StanzaError::not_allowed().with_text(format!(
            "{account} is not an account of {}",
            server.config.domain
        )));
    }
    Ok(account)
}

fn accounts_of(server: &Server, form: &DataForm) -> Result<Vec<jid::BareJid>, StanzaError> {
    let values = form.values("accountjids");
    if values.is_empty() || values.len() > MAX_ACCOUNTS {
        return Err(StanzaError::bad_request(format!(
            "name 1 to {MAX_ACCOUNTS} accounts"
        )));
    }
    values.iter().map(|v| local_account(server, v)).collect()
}

fn required<'a>(form: &'a DataForm, var: &str) -> Result<&'a str, StanzaError> {
    form.value(var)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| StanzaError::bad_request(format!("`{var}` is required")))
}

#[async_trait::async_trait]
impl Command for Admin {
    fn node(&self) -> &'static str {
        match self {
            Admin::AddUser => "http://jabber.org/protocol/admin#add-user",
            Admin::DeleteUser => "http://jabber.org/protocol/admin#delete-user",
            Admin::ChangePassword => "http://jabber.org/protocol/admin#change-user-password",
            Admin::OnlineUsers => "http://jabber.org/protocol/admin#get-online-users-list",
            Admin::Announce => "http://jabber.org/protocol/admin#announce",
            Admin::EndSessions => "http://jabber.org/protocol/admin#end-user-session",
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Admin::AddUser => "Add a user",
            Admin::DeleteUser => "Delete users",
            Admin::ChangePassword => "Change a user's password",
            Admin::OnlineUsers => "List online users",
            Admin::Announce => "Send an announcement to online users",
            Admin::EndSessions => "End users' sessions",
        }
    }

    fn allowed(&self, _server: &Server, _requester: &jid::FullJid, admin: bool) -> bool {
        admin
    }

    async fn start(
        &self,
        _server: &Arc<Server>,
        _requester: &jid::FullJid,
    ) -> Result<Step, StanzaError> {
        let jid = |var: &str, label: &str| {
            Field::new(var, FieldType::JidSingle)
                .label(label)
                .required()
        };
        let jids = |label: &str| {
            Field::new("accountjids", FieldType::JidMulti)
                .label(label)
                .required()
        };
        let password = |var: &str, label: &str| {
            Field::new(var, FieldType::TextPrivate)
                .label(label)
                .required()
        };
        Ok(Step::Form(match self {
            Admin::AddUser => form(
                "Add a user",
                vec![
                    jid("accountjid", "The address of the account to add"),
                    password("password", "The password"),
                    password("password-verify", "The password again"),
                ],
            ),
            Admin::DeleteUser => form("Delete users", vec![jids("The accounts to delete")]),
            Admin::ChangePassword => form(
                "Change a user's password",
                vec![
                    jid("accountjid", "The account"),
                    password("password", "The new password"),
                ],
            ),
            Admin::OnlineUsers => form(
                "List online users",
                vec![Field::new("max_items", FieldType::ListSingle)
                    .label("Most users to list")
                    .option("25", "25")
                    .option("50", "50")
                    .option("75", "75")
                    .option("100", "100")
                    .option("150", "150")
                    .option("200", "200")
                    .option("none", "none")],
            ),
            Admin::Announce => form(
                "Send an announcement to online users",
                vec![
                    Field::new("subject", FieldType::TextSingle).label("Subject"),
                    Field::new("body", FieldType::TextMulti)
                        .label("Announcement")
                        .required(),
                ],
            ),
            Admin::EndSessions => form(
                "End users' sessions",
                vec![jids("The accounts whose sessions to end")],
            ),
        }))
    }

    async fn submit(
        &self,
        server: &Arc<Server>,
        requester: &jid::FullJid,
        form: &DataForm,
    ) -> Result<Step, StanzaError> {
        let by = requester.bare();
        match self {
            Admin::AddUser => {
                let account = local_account(server, required(form, "accountjid")?)?;
                let password = required(form, "password")?;
                if form.value("password-verify").is_some_and(|v| v != password) {
                    return Err(StanzaError::bad_request("the passwords differ"));
                }
                let user = account.node().map(|n| n.to_string()).unwrap_or_default();
                let how = format!("added by admin {by}");
                accounts::create(server, &user, &server.config.domain, password, &how).await?;
                Ok(Step::done(format!("{account} was added")))
            }
            Admin::DeleteUser => {
                for account in accounts_of(server, form)? {
                    accounts::remove(server, &account).await?;
                    tracing::info!(%account, admin = %by, "account deleted by an admin");
                }
                Ok(Step::done("deleted"))
            }
            Admin::ChangePassword => {
                let account = local_account(server, required(form, "accountjid")?)?;
                accounts::set_password(server, &account, required(form, "password")?).await?;
                tracing::info!(%account, admin = %by, "password changed by an admin");
                Ok(Step::done(format!("the password of {account} was changed")))
            }
            Admin::OnlineUsers => {
                let most = match form.value("max_items") {
                    Some("none") | None => MAX_LISTED,
                    Some(n) => n
                        .parse::<usize>()
                        .map_err(|_| StanzaError::bad_request("max_items is a number"))?
                        .min(MAX_LISTED),
                };
                let mut online: Vec<String> = server
                    .router
                    .all_sessions()
                    .iter()
                    .filter(|s| !s.anonymous)
                    .map(|s| s.jid.bare().to_string())
                    .collect();
                online.sort();
                online.dedup();
                online.truncate(most);
                let result = DataForm::new(FormType::Result)
                    .field(Field::form_type(NS_ADMIN))
                    .field(
                        Field::new("onlineuserjids", FieldType::JidMulti)
                            .label("The online users")
                            .values(online),
                    );
                Ok(Step::Done {
                    note: None,
                    form: Some(result),
                })
            }
            Admin::Announce => {
                let body = required(form, "body")?;
                let subject = form.value("subject").filter(|s| !s.is_empty());
                let mut sent = 0;
                for session in server.router.all_sessions() {
                    let mut message = Build::new("message", ns::CLIENT)
                        .attr("from", server.config.domain.clone())
                        .attr("to", session.jid.to_string())
                        .attr("type", "headline");
                    if let Some(subject) = subject {
                        message =
                            message.child(Build::new("subject", ns::CLIENT).text(subject).build());
                    }
                    let message = message
                        .child(Build::new("body", ns::CLIENT).text(body).build())
                        .build();
                    server.route(message).await;
                    sent += 1;
                }
                tracing::info!(admin = %by, sessions = sent, "announcement sent");
                Ok(Step::done(format!("sent to {sent} sessions")))
            }
            Admin::EndSessions => {
                let mut ended = 0;
                for account in accounts_of(server, form)? {
                    ended += accounts::end_sessions(server, &account, "an admin ended the session");
                    tracing::info!(%account, admin = %by, "sessions ended by an admin");
                }
                Ok(Step::done(format!("{ended} sessions ended")))
            }
        }
    }
}
