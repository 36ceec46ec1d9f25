//! Invitations as Snikket and Prosody make them: a token (XEP-0445 pre-authenticated
//! registration) that makes an account, from an `xmpp:` URI or the landing page `/invite/TOKEN`;
//! the XEP-0401 ad-hoc commands that make them (`commands.rs`); and XEP-0379 pre-authenticated
//! roster subscription, so that the inviter and the new account are contacts at once.

pub mod commands;
pub mod roster_preauth;

use super::accounts;
use super::signup::available::checked_name;
use crate::config::Registration;
use crate::extensions::LocalExtensions;
use crate::hooks::{priority, PreAuthHook, PreAuthStream};
use crate::im::roster;
use crate::registry::Registry;
use crate::server::Server;
use crate::stanza::{self, ErrorType, StanzaCondition, StanzaError};
use crate::storage::{Invite, Subscription};
use minidom::Element;
use std::sync::Arc;

/// XEP-0445 (and the `preauth` of XEP-0379).
pub const NS_PARS: &str = "urn:xmpp:pars:0";
/// How long an invitation made from a client works, and how many accounts it makes.
pub const CLIENT_INVITE_SECONDS: i64 = 7 * 24 * 3600;
pub const CLIENT_INVITE_USES: u32 = 1;
/// Most uses one invitation may have.
pub const MAX_USES: u32 = 1000;

pub fn register(registry: &mut Registry<Server>) {
    registry
        .hooks
        .on_pre_auth(priority::POLICY, Arc::new(PreAuth));
    roster_preauth::register(registry);
}

/// Whether invitations work at all on this server.
pub fn enabled(server: &Server) -> bool {
    server.config.registration != Registration::Closed
}

/// A new invitation record (not stored yet): at least one use and one second.
pub fn new_invite(
    domain: &str,
    inviter: Option<&jid::BareJid>,
    uses: u32,
    seconds: i64,
    now: i64,
) -> Invite {
    Invite {
        token: crate::stanza::random_token(),
        domain: domain.to_string(),
        inviter: inviter.map(|j| j.to_string()),
        uses_left: uses.clamp(1, MAX_USES),
        created: now,
        expires: now.saturating_add(seconds.max(1)),
        admin: false,
    }
}

/// Make and store an invitation to `domain`, by `inviter` (an account) or by the operator (`None`).
pub async fn create(
    server: &Server,
    domain: &str,
    inviter: Option<&jid::BareJid>,
    uses: u32,
    seconds: i64,
) -> Result<Invite, StanzaError> {
    let invite = new_invite(domain, inviter, uses, seconds, stanza::now_unix());
    server
        .storage_for(domain)
        .create_invite(&invite)
        .await
        .map_err(|e| StanzaError::storage("storing an invitation", &e))?;
    tracing::info!(
        inviter = invite.inviter.as_deref().unwrap_or("operator"),
        uses = invite.uses_left,
        expires = invite.expires,
        "invitation made"
    );
    Ok(invite)
}

/// The `xmpp:` URI of an invitation (XEP-0401 §5.1): the inviter's address for a roster
/// invitation, the host's for an account-only one.
pub fn uri(invite: &Invite) -> String {
    match &invite.inviter {
        Some(inviter) => format!("xmpp:{inviter}?roster;preauth={};ibr=y", invite.token),
        None => format!("xmpp:{}?register;preauth={}", invite.domain, invite.token),
    }
}

/// Where a browser opens the invitation, when the server has a web side.
pub fn landing_url(config: &crate::config::Config, invite: &Invite) -> Option<String> {
    config
        .web_base_url()
        .map(|base| format!("{base}/invite/{}", invite.token))
}

/// Make an account with an invitation: the name rules of sign-up, one use of the token, and
/// the inviter and the new account as mutual contacts (XEP-0379). `from` says in the log where
/// the request came from.
pub async fn redeem(
    server: &Arc<Server>,
    token: &str,
    username: &str,
    password: &str,
    from: &str,
) -> Result<jid::BareJid, StanzaError> {
    if !enabled(server) {
        return Err(StanzaError::not_allowed().with_text("invitations are closed here"));
    }
    accounts::check_password(password)?;
    let domain = server.config.domain.clone();
    let user = checked_name(server, &domain, username).await?;
    let storage = server.storage_for(&domain);
    let invite = storage
        .take_invite_use(token, stanza::now_unix())
        .await
        .map_err(|e| StanzaError::storage("using an invitation", &e))?
        .filter(|invite| invite.domain == domain)
        .ok_or_else(|| {
            StanzaError::new(ErrorType::Cancel, StanzaCondition::NotAllowed)
                .with_text("this invitation has expired or been used up")
        })?;
    let how = format!(
        "invitation from {} ({from})",
        invite.inviter.as_deref().unwrap_or("the operator")
    );
    let account = match accounts::create(server, &user, &domain, password, &how).await {
        Ok(account) => account,
        Err(error) => {
            if let Err(e) = storage.return_invite_use(token).await {
                tracing::error!(error = %e, "giving back an invitation's use");
            }
            return Err(error);
        }
    };
    if invite.admin {
        // `salon invite create --admin`: the new account may run the XEP-0133 commands.
        let (user, domain) = roster::account_key(&account);
        match storage.set_admin(&user, &domain, true).await {
            Ok(()) => tracing::info!(%account, "account made an administrator by its invitation"),
            Err(e) => tracing::error!(error = %e, %account, "flagging an administrator"),
        }
    }
    if let Some(inviter) = invite
        .inviter
        .as_deref()
        .and_then(|i| jid::BareJid::new(i).ok())
    {
        befriend(server, &inviter, &account).await;
    }
    Ok(account)
}

/// XEP-0379: the inviter approved the invitee in advance, and the invitee asked for the
/// inviter by following the link; both subscriptions are in place from the start.
async fn befriend(server: &Arc<Server>, inviter: &jid::BareJid, invitee: &jid::BareJid) {
    let inviter_exists = server
        .storage_for(inviter.domain().as_str())
        .credentials(
            inviter.node().map(|n| n.as_str()).unwrap_or_default(),
            inviter.domain().as_str(),
        )
        .await
        .is_ok_and(|c| c.is_some());
    if !inviter_exists {
        return;
    }
    for (account, contact) in [(inviter, invitee), (invitee, inviter)] {
        roster::update_item(server, account, contact.as_str(), |item| {
            item.subscription = Subscription::Both;
            item.ask_out = false;
            item.pending_in = false;
        })
        .await;
    }
    tracing::info!(%inviter, %invitee, "invitation made the accounts contacts");
}

/// Per connection: a token the client presented before signing up (XEP-0445 §4).
#[derive(Default)]
pub struct PreAuthToken(pub Option<String>);

/// The token this stream presented, if any.
pub fn presented_token(local: &mut LocalExtensions) -> Option<String> {
    local.existing::<PreAuthToken>().and_then(|t| t.0.clone())
}

struct PreAuth;

#[async_trait::async_trait]
impl PreAuthHook<Server> for PreAuth {
    async fn iq(
        &self,
        server: &Arc<Server>,
        stream: &PreAuthStream<'_>,
        local: &mut LocalExtensions,
        iq: &Element,
    ) -> Option<Element> {
        let preauth = stanza::first_child(iq).filter(|p| p.is("preauth", NS_PARS))?;
        if iq.attr("type") != Some("set") {
            return None;
        }
        let token = preauth.attr("token").unwrap_or_default();
        let usable = match server.storage_for(stream.host).invite(token).await {
            Ok(found) => found.is_some_and(|i| {
                i.usable(stanza::now_unix()) && i.domain == stream.host && enabled(server)
            }),
            Err(e) => {
                let _ = StanzaError::storage("reading an invitation", &e);
                false
            }
        };
        if !usable || stream.anonymous_host {
            tracing::info!(peer = %stream.peer_ip, "pre-authentication refused: unknown, expired or used-up token");
            // XEP-0445 §4: an invalid token is item-not-found.
            let error = StanzaError::item_not_found()
                .with_text("this invitation has expired or been used up");
            return Some(stanza::error_reply(iq, &error));
        }
        local.get_mut::<PreAuthToken>().0 = Some(token.to_string());
        Some(stanza::iq_result(iq, None))
    }
}

/// Read a duration such as `7d`, `12h`, `30m`, `90s` or `3600` (seconds).
pub fn parse_duration(text: &str) -> Option<i64> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let number: i64 = number.parse().ok()?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return None,
    };
    number.checked_mul(scale).filter(|s| *s > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("7d"), Some(7 * 86_400));
        assert_eq!(parse_duration("12h"), Some(43_200));
        assert_eq!(parse_duration("90"), Some(90));
        assert_eq!(parse_duration("0s"), None);
        assert_eq!(parse_duration("x"), None);
        assert_eq!(parse_duration("5y"), None);
    }

    #[test]
    fn tokens_are_long_and_url_safe() {
        let token = crate::stanza::random_token();
        assert_eq!(token.len(), 24);
        assert!(token.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(token, crate::stanza::random_token());
    }
}
