//! Making, changing and removing accounts from inside the server, shared by in-band sign-up
//! and password change (XEP-0077), the admin commands (XEP-0133) and invitations (XEP-0401):
//! one place for the password rule, hashing off the async workers, and the log line.

use crate::im::roster;
use crate::server::Server;
use crate::stanza::{ErrorType, StanzaCondition, StanzaError, StreamCondition};
use crate::storage::StorageError;
use std::sync::Arc;

/// Longest password accepted, in bytes; SCRAM hashes any length, but nobody needs more.
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// How long a removed account's sessions stay, so that an IQ result reaches the requester
/// before the stream error.
const REMOVAL_GRACE: std::time::Duration = std::time::Duration::from_millis(250);

/// XEP-0077 §3.1: a password the server will not take is `<not-acceptable/>`.
pub fn check_password(password: &str) -> Result<(), StanzaError> {
    if password.is_empty() || password.len() > MAX_PASSWORD_BYTES {
        return Err(
            StanzaError::new(ErrorType::Modify, StanzaCondition::NotAcceptable).with_text(format!(
                "the password must be 1 to {MAX_PASSWORD_BYTES} bytes"
            )),
        );
    }
    Ok(())
}

async fn credentials_for(password: String) -> Result<crate::storage::Credentials, StanzaError> {
    tokio::task::spawn_blocking(move || crate::session::sasl::derive_credentials(&password))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "deriving credentials");
            StanzaError::internal()
        })
}

/// Make `user@domain` with `password`; `<conflict/>` if it exists. `how` says in the log who
/// made it (sign-up from an address, an admin, an invitation).
pub async fn create(
    server: &Arc<Server>,
    user: &str,
    domain: &str,
    password: &str,
    how: &str,
) -> Result<jid::BareJid, StanzaError> {
    check_password(password)?;
    let account = jid::BareJid::new(&format!("{user}@{domain}"))
        .map_err(|_| StanzaError::jid_malformed().with_text("not a valid username"))?;
    let credentials = credentials_for(password.to_owned()).await?;
    match server
        .storage_for(domain)
        .create_account(user, domain, &credentials)
        .await
    {
        Ok(()) => {
            tracing::info!(%account, how, "account created");
            Ok(account)
        }
        Err(StorageError::AlreadyExists) => Err(StanzaError::new(
            ErrorType::Cancel,
            StanzaCondition::Conflict,
        )
        .with_text("this username is taken")),
        Err(e) => Err(StanzaError::storage(&format!("creating {account}"), &e)),
    }
}

/// Give `account` a new password.
pub async fn set_password(
    server: &Arc<Server>,
    account: &jid::BareJid,
    password: &str,
) -> Result<(), StanzaError> {
    check_password(password)?;
    let credentials = credentials_for(password.to_owned()).await?;
    let (user, domain) = roster::account_key(account);
    match server
        .storage_for(&domain)
        .set_credentials(&user, &domain, &credentials)
        .await
    {
        Ok(()) => Ok(()),
        Err(StorageError::NotFound) => {
            Err(StanzaError::item_not_found().with_text(format!("no account {account}")))
        }
        Err(e) => Err(StanzaError::storage(
            &format!("changing password of {account}"),
            &e,
        )),
    }
}

/// XEP-0077 §3.2: cancel the account's subscriptions (RFC 6121 §2.5.2), delete it with
/// everything stored for it, and close its sessions with `<not-authorized/>`.
pub async fn remove(server: &Arc<Server>, account: &jid::BareJid) -> Result<(), StanzaError> {
    let (user, domain) = roster::account_key(account);
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
    // Messages still on their way into the archive go in first, so they go with it.
    crate::archive::writer(server.as_ref()).flush().await;
    match server
        .storage_for(&domain)
        .delete_account(&user, &domain)
        .await
    {
        Ok(()) => {}
        Err(StorageError::NotFound) => {
            return Err(StanzaError::item_not_found().with_text(format!("no account {account}")))
        }
        Err(e) => {
            return Err(StanzaError::storage(
                &format!("removing account {account}"),
                &e,
            ))
        }
    }
    // Storage dropped its push registrations and avatar with it; so do the copies in memory.
    crate::im::push::forget_account(server, account);
    crate::muc::push::forget_account(&server.extensions, account);
    crate::pep::avatar_hash::forget_account(server, account);
    tracing::info!(%account, "account removed");
    end_sessions(server, account, "the account was removed");
    Ok(())
}

/// Close every session of `account` with `<not-authorized/>`, after a short grace.
pub fn end_sessions(server: &Arc<Server>, account: &jid::BareJid, why: &'static str) -> usize {
    let sessions = server.router.sessions_of(account.as_str());
    let count = sessions.len();
    tokio::spawn(async move {
        tokio::time::sleep(REMOVAL_GRACE).await;
        for session in sessions {
            session.kick(StreamCondition::NotAuthorized, why);
        }
    });
    count
}
