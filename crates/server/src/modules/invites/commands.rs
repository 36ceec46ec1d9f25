//! The XEP-0401 ad-hoc commands: `urn:xmpp:invite#invite` (any account of the main host, when
//! invitations are open: the link makes an account and a contact of the inviter) and
//! `urn:xmpp:invite#create-account` (admins: an account-only link).

use super::{create, enabled, landing_url, uri, CLIENT_INVITE_SECONDS, CLIENT_INVITE_USES};
use crate::modules::adhoc::{Command, Step};
use crate::server::Server;
use crate::stanza::forms::{DataForm, Field, FieldType, FormType};
use crate::stanza::Bare;
use crate::stanza::{self, StanzaError};
use std::sync::Arc;

pub fn commands() -> Vec<Arc<dyn Command>> {
    vec![Arc::new(Invitation::Contact), Arc::new(Invitation::Account)]
}

#[derive(Clone, Copy)]
enum Invitation {
    /// `#invite`: the new account and the inviter become contacts.
    Contact,
    /// `#create-account`: just an account.
    Account,
}

#[async_trait::async_trait]
impl Command for Invitation {
    fn node(&self) -> &'static str {
        match self {
            Invitation::Contact => "urn:xmpp:invite#invite",
            Invitation::Account => "urn:xmpp:invite#create-account",
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Invitation::Contact => "Invite someone to join this server",
            Invitation::Account => "Create an account invitation",
        }
    }

    fn allowed(&self, server: &Server, requester: &jid::FullJid, admin: bool) -> bool {
        let own_host = requester.domain().as_str() == server.config.domain;
        match self {
            Invitation::Contact => enabled(server) && own_host,
            Invitation::Account => enabled(server) && admin,
        }
    }

    async fn start(
        &self,
        server: &Arc<Server>,
        requester: &jid::FullJid,
    ) -> Result<Step, StanzaError> {
        let inviter = requester.bare();
        let inviter = match self {
            Invitation::Contact => Some(&inviter),
            Invitation::Account => None,
        };
        let domain = server.config.domain.clone();
        let invite = create(
            server,
            &domain,
            inviter,
            CLIENT_INVITE_USES,
            CLIENT_INVITE_SECONDS,
        )
        .await?;
        // XEP-0401 §5.3: the URI, the landing page, and when it expires.
        let mut form = DataForm::new(FormType::Result).title("Invitation").field(
            Field::new("uri", FieldType::TextSingle)
                .label("Invitation URI")
                .value(uri(&invite)),
        );
        if let Some(url) = landing_url(&server.config, &invite) {
            form = form.field(
                Field::new("landing-url", FieldType::TextSingle)
                    .label("Invitation web page")
                    .value(url),
            );
        }
        form = form.field(
            Field::new("expire", FieldType::TextSingle)
                .label("Valid until")
                .value(stanza::xep82_datetime(invite.expires)),
        );
        Ok(Step::Done {
            note: Some("Send this link to the person you are inviting.".into()),
            form: Some(form),
        })
    }

    async fn submit(
        &self,
        _server: &Arc<Server>,
        _requester: &jid::FullJid,
        _form: &DataForm,
    ) -> Result<Step, StanzaError> {
        // Done in one step; a session is never left open for it.
        Err(StanzaError::bad_request("this command has no second step"))
    }
}
