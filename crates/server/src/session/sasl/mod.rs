//! SASL authentication on a client stream (RFC 6120 §6): `<auth/>`, challenges and responses,
//! success or failure, with the failed-login accounting of RFC 6120 §13.8. The mechanisms are in
//! [`exchange`] and [`scram`], what they share in [`common`].

pub mod common;
pub mod exchange;
mod scram;

pub use common::{
    derive_credentials, verify_password, Authenticated, ChannelBindings, SaslFailure, StepOutcome,
    SCRAM_ITERATIONS,
};
pub use exchange::{offered_mechanisms, Exchange};

use super::{Session, Stage, Stop, MAX_SASL_FAILURES};
use crate::stanza::{ns, StreamCondition};
use base64::Engine as _;
use minidom::Element;

/// The SASL exchange on a client stream (RFC 6120 §6.4).
impl Session {
    pub(super) async fn sasl_failure(
        &mut self,
        condition: &str,
        text: Option<&str>,
    ) -> Result<(), Stop> {
        let text = text
            .map(|t| format!("<text>{}</text>", salon_xml::escape(t)))
            .unwrap_or_default();
        self.send_raw(&format!(
            "<failure xmlns='{}'><{condition}/>{text}</failure>",
            ns::SASL
        ))
        .await
    }

    pub(super) async fn sasl_auth(&mut self, element: &Element) -> Result<(), Stop> {
        let secure = self.transport.is_secure();
        let require_tls = self.server.config.c2s.require_encryption;
        if self.authenticated.is_some() {
            return Err(Stop::StreamError(
                StreamCondition::PolicyViolation,
                "already authenticated".into(),
            ));
        }
        if !secure && require_tls {
            return self
                .sasl_failure("encryption-required", Some("use STARTTLS first"))
                .await;
        }
        let peer = self.transport.peer_ip();
        // Every per-address limit counts an IPv6 /64 as one address.
        let ip = crate::limits::address_key(peer);
        if self.server.bans.refuses_address(peer).await {
            return self
                .sasl_failure("account-disabled", Some("this address is banned"))
                .await;
        }
        if !self.server.logins.try_take(&ip) {
            tracing::warn!(peer = %ip, "login refused: too many logins from this address");
            return self
                .sasl_failure(
                    "temporary-auth-failure",
                    Some("too many logins from this address; try again later"),
                )
                .await;
        }
        if !self.server.login_failures.may_try(ip) {
            tracing::warn!(peer = %ip, "login refused: too many failed logins from this address");
            return self
                .sasl_failure(
                    "temporary-auth-failure",
                    Some("too many failed logins; try again later"),
                )
                .await;
        }
        let mechanism = element.attr("mechanism").unwrap_or_default();
        let anonymous = self.server.is_anonymous_host(&self.host);
        let storage = self.server.storage_for(&self.host).clone();
        let exchange = Exchange::start(
            mechanism,
            storage,
            &self.host,
            anonymous,
            secure,
            self.transport.channel_bindings(),
        );
        match exchange {
            Ok(exchange) => {
                self.sasl = Some(exchange);
                self.sasl_step(element).await
            }
            Err(failure) => self.sasl_failure(failure.condition(), None).await,
        }
    }

    pub(super) async fn sasl_response(&mut self, element: &Element) -> Result<(), Stop> {
        if self.sasl.is_none() {
            return self
                .sasl_failure("malformed-request", Some("no exchange in progress"))
                .await;
        }
        self.sasl_step(element).await
    }

    async fn sasl_step(&mut self, element: &Element) -> Result<(), Stop> {
        let text = element.text();
        let text = text.trim();
        let data = if text == "=" || text.is_empty() {
            Vec::new()
        } else {
            match base64::engine::general_purpose::STANDARD.decode(text) {
                Ok(data) => data,
                Err(_) => {
                    self.sasl = None;
                    return self.sasl_failure("incorrect-encoding", None).await;
                }
            }
        };
        let ip = crate::limits::address_key(self.transport.peer_ip());
        let account = self.sasl.as_mut().and_then(|e| e.account(&data));
        if let Some(account) = &account {
            if !self
                .server
                .account_login_failures
                .may_try((ip, account.clone()))
            {
                self.sasl = None;
                tracing::warn!(peer = %ip, account, "login refused: too many failed logins on this account from this address");
                return self
                    .sasl_failure(
                        "temporary-auth-failure",
                        Some("too many failed logins; try again later"),
                    )
                    .await;
            }
        }
        let Some(exchange) = self.sasl.as_mut() else {
            return Ok(());
        };
        match exchange.step(data).await {
            Ok(StepOutcome::Challenge(challenge)) => {
                let encoded = base64::engine::general_purpose::STANDARD.encode(challenge);
                self.send_raw(&format!(
                    "<challenge xmlns='{}'>{encoded}</challenge>",
                    ns::SASL
                ))
                .await
            }
            Ok(StepOutcome::Success(who, additional)) => {
                self.sasl = None;
                let account = match &who {
                    Authenticated::User(user) => format!("{user}@{}", self.host),
                    Authenticated::Anonymous => self.host.clone(),
                };
                let banned = match jid::BareJid::new(&account) {
                    Ok(account) => self.server.bans.refuses_account(&account).await,
                    Err(_) => false,
                };
                if banned {
                    tracing::info!(peer = %self.transport.peer_ip(), account, "login refused: banned");
                    return self
                        .sasl_failure("account-disabled", Some("this account is banned"))
                        .await;
                }
                let additional = if additional.is_empty() {
                    String::new()
                } else {
                    base64::engine::general_purpose::STANDARD.encode(additional)
                };
                tracing::info!(peer = %self.transport.peer_ip(), host = %self.host, who = ?who, "authenticated");
                self.server.metrics.login(true);
                self.authenticated = Some(who);
                self.send_raw(&format!(
                    "<success xmlns='{}'>{additional}</success>",
                    ns::SASL
                ))
                .await?;
                self.transport.restart();
                self.stage = Stage::AwaitingHeader;
                Ok(())
            }
            Err(failure) => {
                self.sasl = None;
                self.server.login_failures.failed(ip);
                if let Some(account) = account {
                    self.server.account_login_failures.failed((ip, account));
                }
                self.server.metrics.login(false);
                self.sasl_failures += 1;
                tracing::info!(peer = %ip, host = %self.host, condition = failure.condition(), "failed login");
                self.sasl_failure(failure.condition(), None).await?;
                if self.sasl_failures >= MAX_SASL_FAILURES {
                    return Err(Stop::StreamError(
                        StreamCondition::PolicyViolation,
                        "too many failed authentication attempts".into(),
                    ));
                }
                Ok(())
            }
        }
    }
}
