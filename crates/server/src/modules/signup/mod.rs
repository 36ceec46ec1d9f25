//! Sign-up before login (XEP-0077 §3.1, with the XEP-0004 form of §6): offered when
//! `registration` is `open` (rate-limited per address, reserved and look-alike names refused)
//! or `invite` (a token is needed, XEP-0445); never on the anonymous host. Each account made is
//! logged with how it was made.

pub mod available;
pub mod names;

use available::{checked_name, not_acceptable};

use super::accounts;
use crate::config::Registration;
use crate::extensions::LocalExtensions;
use crate::hooks::{priority, PreAuthHook, PreAuthStream, StreamHook, StreamInfo};
use crate::limits::{address_key, RateWindow};
use crate::registry::Registry;
use crate::server::Server;
use crate::stanza::forms::{DataForm, Field, FieldType, FormType};
use crate::stanza::{self, ns, Build, ErrorType, StanzaCondition, StanzaError};
use minidom::Element;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The stream feature announcing in-band registration (XEP-0077 §4).
const NS_FEATURE: &str = "http://jabber.org/features/iq-register";

pub fn register(registry: &mut Registry<Server>) {
    registry
        .hooks
        .on_pre_auth(priority::DELIVER, Arc::new(SignUp));
    registry
        .hooks
        .on_stream(priority::DELIVER, Arc::new(SignUpFeature));
}

/// Whether `host` lets clients sign up at all.
fn offered(server: &Server, host: &str) -> bool {
    server.config.registration != Registration::Closed && !server.is_anonymous_host(host)
}

struct SignUpFeature;

impl StreamHook<Server> for SignUpFeature {
    fn features(&self, server: &Server, stream: &StreamInfo<'_>) -> Vec<Element> {
        if stream.authenticated || !offered(server, stream.host) {
            return Vec::new();
        }
        vec![Element::bare("register", NS_FEATURE)]
    }
}

/// Open sign-ups per address (an IPv6 /64) in the last hour, made on first use.
#[derive(Default)]
struct SignUpWindow(OnceLock<RateWindow<IpAddr>>);

/// Sign-up attempts per address (an IPv6 /64) in the last hour.
#[derive(Default)]
struct AttemptWindow(OnceLock<RateWindow<IpAddr>>);
/// Attempts allowed per account allowed.
const ATTEMPTS_PER_ACCOUNT: usize = 10;

/// Per connection: the account this stream made, so that one stream makes at most one.
#[derive(Default)]
pub struct SignedUp(pub Option<jid::BareJid>);

/// What a client asks for: the form, or an account.
pub struct Request {
    pub username: String,
    pub password: String,
}

struct SignUp;

#[async_trait::async_trait]
impl PreAuthHook<Server> for SignUp {
    async fn iq(
        &self,
        server: &Arc<Server>,
        stream: &PreAuthStream<'_>,
        local: &mut LocalExtensions,
        iq: &Element,
    ) -> Option<Element> {
        let query = stanza::first_child(iq)?;
        if !query.is("query", ns::REGISTER) {
            return None;
        }
        if iq.attr("to").is_some_and(|to| to != stream.host) {
            return None;
        }
        let answer = match iq.attr("type") {
            Some("get") => form(server, stream.host).map(Some),
            Some("set") => sign_up(server, stream, local, query).await.map(|()| None),
            _ => return None,
        };
        Some(match answer {
            Ok(payload) => stanza::iq_result(iq, payload),
            Err(error) => stanza::error_reply(iq, &error),
        })
    }
}

/// XEP-0077 §3.1 and §6: the fields, both as plain elements and as a data form.
fn form(server: &Server, host: &str) -> Result<Element, StanzaError> {
    if !offered(server, host) {
        return Err(StanzaError::service_unavailable().with_text("sign-up is closed here"));
    }
    let instructions = match server.config.registration {
        Registration::Invite => format!(
            "Choose a username and a password for an account on {host}. \
             Signing up here needs an invitation."
        ),
        _ => format!("Choose a username and a password for an account on {host}."),
    };
    let data = DataForm::new(FormType::Form)
        .title(format!("Sign up on {host}"))
        .instructions(instructions.clone())
        .field(Field::form_type(ns::REGISTER))
        .field(
            Field::new("username", FieldType::TextSingle)
                .label("Username")
                .required(),
        )
        .field(
            Field::new("password", FieldType::TextPrivate)
                .label("Password")
                .required(),
        );
    Ok(Build::new("query", ns::REGISTER)
        .child(
            Build::new("instructions", ns::REGISTER)
                .text(instructions)
                .build(),
        )
        .child(Element::bare("username", ns::REGISTER))
        .child(Element::bare("password", ns::REGISTER))
        .child(data.to_element())
        .build())
}

/// The username and password of a submission, from the form if there is one.
fn read_request(query: &Element) -> Result<Request, StanzaError> {
    if query.get_child("remove", ns::REGISTER).is_some() {
        return Err(StanzaError::not_allowed().with_text("log in to remove an account"));
    }
    let (username, password) = match query.get_child("x", ns::DATA_FORMS) {
        Some(x) => {
            let form = DataForm::parse(x).map_err(|e| StanzaError::bad_request(e.to_string()))?;
            (
                form.value("username").map(str::to_owned),
                form.value("password").map(str::to_owned),
            )
        }
        None => (
            query.get_child("username", ns::REGISTER).map(Element::text),
            query.get_child("password", ns::REGISTER).map(Element::text),
        ),
    };
    match (username, password) {
        (Some(username), Some(password)) => Ok(Request { username, password }),
        _ => Err(not_acceptable("a username and a password are needed")),
    }
}

async fn sign_up(
    server: &Arc<Server>,
    stream: &PreAuthStream<'_>,
    local: &mut LocalExtensions,
    query: &Element,
) -> Result<(), StanzaError> {
    if !offered(server, stream.host) {
        return Err(StanzaError::service_unavailable().with_text("sign-up is closed here"));
    }
    if local.get_mut::<SignedUp>().0.is_some() {
        return Err(StanzaError::not_allowed().with_text("this stream made an account already"));
    }
    let request = read_request(query)?;
    // Each attempt reads the account list (look-alikes); attempts per address are bounded
    // too, more loosely than accounts made, so that a typo or a taken name costs little.
    let attempts = server.extensions.get_or_default::<AttemptWindow>();
    let attempts = attempts.0.get_or_init(|| {
        let accounts = server.config.limits.registrations_per_hour as usize;
        RateWindow::new(
            accounts.saturating_mul(ATTEMPTS_PER_ACCOUNT),
            Duration::from_secs(3600),
        )
    });
    if !attempts.try_take(&address_key(stream.peer_ip)) {
        tracing::info!(peer = %stream.peer_ip, "sign-up refused: too many attempts from this address");
        return Err(
            StanzaError::new(ErrorType::Wait, StanzaCondition::ResourceConstraint)
                .with_text("too many sign-up attempts from this address; try again later"),
        );
    }
    let user = checked_name(server, stream.host, &request.username).await?;
    let account = if let Some(token) = super::invites::presented_token(local) {
        // XEP-0445: the token made earlier on this stream; its uses bound it, not the address.
        let from = format!("sign-up from {}", stream.peer_ip);
        super::invites::redeem(server, &token, &user, &request.password, &from).await?
    } else {
        if server.config.registration != Registration::Open {
            return Err(StanzaError::not_allowed().with_text("signing up here needs an invitation"));
        }
        let window = server.extensions.get_or_default::<SignUpWindow>();
        let window = window.0.get_or_init(|| {
            RateWindow::new(
                server.config.limits.registrations_per_hour as usize,
                Duration::from_secs(3600),
            )
        });
        if !window.try_take(&address_key(stream.peer_ip)) {
            tracing::info!(peer = %stream.peer_ip, "sign-up refused: too many from this address");
            return Err(
                StanzaError::new(ErrorType::Wait, StanzaCondition::ResourceConstraint)
                    .with_text("too many accounts made from this address; try again later"),
            );
        }
        let how = format!("open sign-up from {}", stream.peer_ip);
        accounts::create(server, &user, stream.host, &request.password, &how).await?
    };
    local.get_mut::<SignedUp>().0 = Some(account);
    Ok(())
}
