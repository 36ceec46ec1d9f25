//! One SASL exchange in progress: the mechanisms a connection may use, SCRAM-SHA-1/256 and
//! their -PLUS variants through [`super::scram`], PLAIN (RFC 4616) and, on anonymous hosts
//! only, ANONYMOUS (RFC 4505) through `rsasl`.

use super::common::{verify_password, Authenticated, ChannelBindings, SaslFailure, StepOutcome};
use crate::storage::{Credentials, Storage};
use rsasl::callback::{Context, Request, SessionCallback, SessionData};
use rsasl::mechanisms::scram::properties::ScramStoredPassword;
use rsasl::prelude::*;
use rsasl::property::{AuthId, AuthzId, Password};
use rsasl::validate::{Validate, ValidationError};
use std::io::Cursor;
use std::sync::Arc;
use tokio::runtime::Handle;

/// The outcome rsasl hands back from our validation callback.
pub struct SalonValidation;
impl Validation for SalonValidation {
    type Value = Authenticated;
}

static WITH_CHANNEL_BINDING: [Mechanism; 5] = [
    rsasl::mechanisms::scram::SCRAM_SHA256_PLUS,
    rsasl::mechanisms::scram::SCRAM_SHA1_PLUS,
    rsasl::mechanisms::scram::SCRAM_SHA256,
    rsasl::mechanisms::scram::SCRAM_SHA1,
    rsasl::mechanisms::plain::PLAIN,
];
static WITHOUT_CHANNEL_BINDING: [Mechanism; 3] = [
    rsasl::mechanisms::scram::SCRAM_SHA256,
    rsasl::mechanisms::scram::SCRAM_SHA1,
    rsasl::mechanisms::plain::PLAIN,
];

static ANONYMOUS_ONLY: [Mechanism; 1] = [rsasl::mechanisms::anonymous::ANONYMOUS];

/// Looks up credentials and validates logins for one authentication attempt.
struct Callback {
    storage: Arc<dyn Storage>,
    domain: String,
    runtime: Handle,
}

impl Callback {
    /// The account's normalised localpart, if `authid` is a valid one.
    fn localpart(&self, authid: &str) -> Option<String> {
        let bare = jid::BareJid::new(&format!("{authid}@{}", self.domain)).ok()?;
        Some(bare.node()?.as_str().to_string())
    }

    fn credentials(&self, authid: &str) -> Option<Credentials> {
        let user = self.localpart(authid)?;
        // rsasl callbacks are synchronous; every SASL step runs on a blocking thread (see
        // `Exchange::step`), where waiting for the async storage is allowed.
        self.runtime
            .block_on(self.storage.credentials(&user, &self.domain))
            .ok()
            .flatten()
    }

    fn authzid_ok(&self, context: &Context, user: &str) -> bool {
        match context.get_ref::<AuthzId>() {
            None | Some("") => true,
            Some(authzid) => {
                let expected = format!("{user}@{}", self.domain);
                jid::BareJid::new(authzid).is_ok_and(|j| j.as_str() == expected)
            }
        }
    }
}

impl SessionCallback for Callback {
    fn callback(
        &self,
        session_data: &SessionData,
        context: &Context,
        request: &mut Request,
    ) -> Result<(), SessionError> {
        if !request.is::<ScramStoredPassword>() {
            return Ok(());
        }
        let Some(authid) = context.get_ref::<AuthId>() else {
            return Ok(());
        };
        if let Some(credentials) = self.credentials(authid) {
            let keys = if session_data
                .mechanism()
                .mechanism
                .as_str()
                .starts_with("SCRAM-SHA-256")
            {
                &credentials.sha256
            } else {
                &credentials.sha1
            };
            request.satisfy::<ScramStoredPassword>(&ScramStoredPassword::new(
                credentials.iterations,
                &credentials.salt,
                &keys.stored_key,
                &keys.server_key,
            ))?;
        }
        Ok(())
    }

    fn validate(
        &self,
        session_data: &SessionData,
        context: &Context,
        validate: &mut Validate<'_>,
    ) -> Result<(), ValidationError> {
        let mechanism = session_data.mechanism().mechanism.as_str();
        let outcome = match mechanism {
            "ANONYMOUS" => Some(Authenticated::Anonymous),
            "PLAIN" => {
                let authid = context.get_ref::<AuthId>().unwrap_or_default();
                let password = context.get_ref::<Password>().unwrap_or_default();
                let password = std::str::from_utf8(password).unwrap_or_default();
                match (self.localpart(authid), self.credentials(authid)) {
                    (Some(user), Some(credentials))
                        if verify_password(&credentials, password)
                            && self.authzid_ok(context, &user) =>
                    {
                        Some(Authenticated::User(user))
                    }
                    _ => None,
                }
            }
            // rsasl calls validate for SCRAM only after the client proof checked out.
            _ => {
                let authid = context.get_ref::<AuthId>().unwrap_or_default();
                self.localpart(authid)
                    .filter(|user| self.authzid_ok(context, user))
                    .map(Authenticated::User)
            }
        };
        if let Some(outcome) = outcome {
            validate.with::<SalonValidation, _>(|| Ok(outcome))?;
        }
        Ok(())
    }
}

/// Which mechanisms a connection may use. Sessions offer SASL only once the connection is
/// encrypted, or when `c2s.require_encryption = false` allows plaintext (tests, loopback).
/// SCRAM-…-PLUS only where there is a TLS session to bind to: not on WebSocket or BOSH, which
/// count as secure behind a proxy or on loopback but whose TLS, if any, is not the session's.
pub fn offered_mechanisms(anonymous_host: bool, bindings: &ChannelBindings) -> Vec<&'static str> {
    registry_for(anonymous_host, bindings.can_bind())
        .iter()
        .map(|m| m.mechanism.as_str())
        .collect()
}

fn registry_for(anonymous_host: bool, can_bind: bool) -> &'static [Mechanism] {
    if anonymous_host {
        &ANONYMOUS_ONLY
    } else if can_bind {
        &WITH_CHANNEL_BINDING
    } else {
        &WITHOUT_CHANNEL_BINDING
    }
}

/// One SASL exchange in progress.
pub struct Exchange {
    session: Option<Session<SalonValidation, ChannelBindings>>,
    /// SCRAM goes through [`super::scram`] instead of rsasl (see there why).
    scram: Option<super::scram::ScramExchange>,
    mechanism: String,
    domain: String,
    /// The account the client named in its first message, once seen.
    account: Option<String>,
}

impl Exchange {
    /// Start `mechanism` if it is one this connection may use.
    pub fn start(
        mechanism: &str,
        storage: Arc<dyn Storage>,
        domain: &str,
        anonymous_host: bool,
        secure: bool,
        bindings: ChannelBindings,
    ) -> Result<Exchange, SaslFailure> {
        let registry = registry_for(anonymous_host, secure && bindings.can_bind());
        if !registry.iter().any(|m| m.mechanism.as_str() == mechanism) {
            return Err(SaslFailure::InvalidMechanism);
        }
        let offered_plus = registry
            .iter()
            .any(|m| m.mechanism.as_str().ends_with("-PLUS"));
        if let Some(scram) = super::scram::ScramExchange::new(
            mechanism,
            offered_plus,
            bindings.clone(),
            storage.clone(),
            domain,
        ) {
            return Ok(Exchange {
                session: None,
                scram: Some(scram),
                mechanism: mechanism.to_string(),
                domain: domain.to_string(),
                account: None,
            });
        }
        let callback = Callback {
            storage,
            domain: domain.to_string(),
            runtime: Handle::current(),
        };
        let config = SASLConfig::builder()
            .with_registry(Registry::with_mechanisms(registry))
            .with_callback(callback)
            .map_err(|_| SaslFailure::InvalidMechanism)?;
        let server = SASLServer::<SalonValidation, ChannelBindings>::with_cb(config, bindings);
        let name =
            Mechname::parse(mechanism.as_bytes()).map_err(|_| SaslFailure::InvalidMechanism)?;
        let session = server
            .start_suggested(name)
            .map_err(|_| SaslFailure::InvalidMechanism)?;
        Ok(Exchange {
            session: Some(session),
            scram: None,
            mechanism: mechanism.to_string(),
            domain: domain.to_string(),
            account: None,
        })
    }

    /// The account (normalised localpart) this exchange tries to log in to, from the client's
    /// first message (`data` when none was seen yet), so failures count against it as well as
    /// against the address (see `LoginLimiter`).
    pub fn account(&mut self, data: &[u8]) -> Option<String> {
        if self.account.is_none() {
            let named = match self.mechanism.as_str() {
                "PLAIN" => data
                    .split(|b| *b == 0)
                    .nth(1)
                    .and_then(|authcid| std::str::from_utf8(authcid).ok())
                    .map(str::to_string),
                "ANONYMOUS" => None,
                _ => super::scram::claimed_username(data),
            };
            self.account = named.and_then(|name| {
                let bare = jid::BareJid::new(&format!("{name}@{}", self.domain)).ok()?;
                Some(bare.node()?.as_str().to_string())
            });
        }
        self.account.clone()
    }

    /// Feed the client's data (already base64-decoded). Runs on a blocking thread because the
    /// callbacks wait for storage and PLAIN hashes the password.
    pub async fn step(&mut self, input: Vec<u8>) -> Result<StepOutcome, SaslFailure> {
        if let Some(scram) = self.scram.as_mut() {
            return scram.step(&input).await;
        }
        let Some(mut session) = self.session.take() else {
            return Err(SaslFailure::MalformedRequest);
        };
        let result = tokio::task::spawn_blocking(move || {
            let mut out = Cursor::new(Vec::new());
            let state = session.step(Some(&input), &mut out);
            (session, state, out.into_inner())
        })
        .await;
        let Ok((mut session, state, output)) = result else {
            return Err(SaslFailure::NotAuthorized);
        };
        match state {
            Ok(State::Running) => {
                self.session = Some(session);
                Ok(StepOutcome::Challenge(output))
            }
            Ok(State::Finished(_)) => match session.validation() {
                Some(who) => Ok(StepOutcome::Success(who, output)),
                None => Err(SaslFailure::NotAuthorized),
            },
            Err(e) => {
                tracing::debug!(error = %e, "SASL step failed");
                Err(SaslFailure::NotAuthorized)
            }
        }
    }
}
