//! Whether a username may be taken at sign-up (XEP-0077) or through an invitation (XEP-0401):
//! well formed, not reserved, and not a look-alike of an account that exists.

use super::names;
use crate::server::Server;
use crate::stanza::{ErrorType, StanzaCondition, StanzaError};
use std::sync::Arc;

pub(super) fn not_acceptable(text: &str) -> StanzaError {
    StanzaError::new(ErrorType::Modify, StanzaCondition::NotAcceptable).with_text(text)
}

/// The username as it will be stored, unless it is malformed, reserved, or looks like an
/// account that exists.
pub async fn checked_name(
    server: &Arc<Server>,
    host: &str,
    username: &str,
) -> Result<String, StanzaError> {
    let user = match names::check(username, &server.config.admins) {
        Ok(user) => user,
        Err(names::NameProblem::Malformed) => {
            return Err(not_acceptable(&format!(
                "a username is 1 to {} of a-z, 0-9, '.', '-', '_'",
                names::MAX_USERNAME_CHARS
            )))
        }
        Err(names::NameProblem::Reserved) => {
            tracing::info!(username, "sign-up refused: reserved name");
            return Err(not_acceptable("this name is reserved"));
        }
    };
    let existing = server
        .storage_for(host)
        .list_accounts(Some(host))
        .await
        .map_err(|e| StanzaError::storage("listing accounts for sign-up", &e))?;
    let shape = names::skeleton(&user);
    let taken = |bare: &String| bare.split_once('@').map(|(u, _)| u.to_owned());
    for other in existing.iter().filter_map(taken) {
        if other == user {
            return Err(
                StanzaError::new(ErrorType::Cancel, StanzaCondition::Conflict)
                    .with_text("this username is taken"),
            );
        }
        if names::skeleton(&other) == shape {
            tracing::info!(username = %user, like = %other, "sign-up refused: look-alike name");
            return Err(
                StanzaError::new(ErrorType::Cancel, StanzaCondition::Conflict)
                    .with_text("this username is too much like an existing one"),
            );
        }
    }
    Ok(user)
}
