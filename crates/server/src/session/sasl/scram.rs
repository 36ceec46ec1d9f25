//! The server side of SCRAM-SHA-1 and SCRAM-SHA-256 and their -PLUS variants (RFC 5802 §5,
//! RFC 7677, channel bindings RFC 5929 / RFC 9266). Done here rather than by rsasl because rsasl
//! draws the server nonce from every printable character, `"` included, which the SCRAM parsers
//! of xmpp.js and StanzaJS take for quoting; our nonce is base64, as other servers send.

use super::common::{Authenticated, ChannelBindings, SaslFailure, StepOutcome};
use crate::storage::{Credentials, Storage};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use std::sync::{Arc, OnceLock};

/// Random bytes in a server nonce; 18 encode to 24 base64 characters without padding.
const NONCE_BYTES: usize = 18;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hash {
    Sha1,
    Sha256,
}

impl Hash {
    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha1 => Sha1::digest(data).to_vec(),
            Hash::Sha256 => Sha256::digest(data).to_vec(),
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        // HMAC takes keys of any length, so `new_from_slice` cannot fail here.
        match self {
            Hash::Sha1 => <Hmac<Sha1> as Mac>::new_from_slice(key)
                .map(|mac| mac.chain_update(data).finalize().into_bytes().to_vec())
                .unwrap_or_default(),
            Hash::Sha256 => <Hmac<Sha256> as Mac>::new_from_slice(key)
                .map(|mac| mac.chain_update(data).finalize().into_bytes().to_vec())
                .unwrap_or_default(),
        }
    }
}

/// What the server-first message committed to, kept for the client's final message.
struct Pending {
    /// The gs2 header followed by the channel-binding data the client must send back in `c=`.
    expected_binding: Vec<u8>,
    /// `client-first-message-bare "," server-first-message`, the start of the AuthMessage.
    auth_message_start: String,
    nonce: String,
    /// The account and its keys; `None` for an unknown account, which fails at the proof.
    account: Option<(String, Credentials)>,
}

/// One SCRAM exchange.
pub struct ScramExchange {
    hash: Hash,
    plus: bool,
    /// Whether -PLUS was offered: then a client saying `y` (it could bind, thinks we cannot)
    /// was shown a list with -PLUS taken out, and must fail (RFC 5802 §6).
    offered_plus: bool,
    bindings: ChannelBindings,
    storage: Arc<dyn Storage>,
    domain: String,
    pending: Option<Pending>,
}

impl ScramExchange {
    /// `None` when `mechanism` is not a SCRAM mechanism handled here.
    pub fn new(
        mechanism: &str,
        offered_plus: bool,
        bindings: ChannelBindings,
        storage: Arc<dyn Storage>,
        domain: &str,
    ) -> Option<ScramExchange> {
        let (hash, plus) = match mechanism {
            "SCRAM-SHA-1" => (Hash::Sha1, false),
            "SCRAM-SHA-1-PLUS" => (Hash::Sha1, true),
            "SCRAM-SHA-256" => (Hash::Sha256, false),
            "SCRAM-SHA-256-PLUS" => (Hash::Sha256, true),
            _ => return None,
        };
        Some(ScramExchange {
            hash,
            plus,
            offered_plus,
            bindings,
            storage,
            domain: domain.to_string(),
            pending: None,
        })
    }

    pub async fn step(&mut self, input: &[u8]) -> Result<StepOutcome, SaslFailure> {
        match self.pending.take() {
            // No initial response: ask for the client-first message with an empty challenge.
            None if input.is_empty() => Ok(StepOutcome::Challenge(Vec::new())),
            None => self.client_first(input).await,
            Some(pending) => self.client_final(input, pending),
        }
    }

    async fn client_first(&mut self, input: &[u8]) -> Result<StepOutcome, SaslFailure> {
        let text = std::str::from_utf8(input).map_err(|_| SaslFailure::MalformedRequest)?;
        let first = ClientFirst::parse(text).ok_or(SaslFailure::MalformedRequest)?;
        let binding_data: &[u8] = match (first.binding, self.plus) {
            (Binding::Used(name), true) => {
                let data = match name {
                    "tls-exporter" => self.bindings.tls_exporter.as_deref(),
                    "tls-server-end-point" => self.bindings.tls_server_end_point.as_deref(),
                    _ => None,
                };
                data.ok_or(SaslFailure::NotAuthorized)?
            }
            (Binding::NotSupported, false) => &[],
            (Binding::SupportedNotUsed, false) if !self.offered_plus => &[],
            _ => return Err(SaslFailure::NotAuthorized),
        };
        let account = match localpart(&first.username, &self.domain) {
            Some(user) => self
                .storage
                .credentials(&user, &self.domain)
                .await
                .inspect_err(|e| tracing::error!(%user, error = %e, "reading credentials"))
                .ok()
                .flatten()
                .filter(|_| authzid_ok(first.authzid.as_deref(), &user, &self.domain))
                .map(|credentials| (user, credentials)),
            None => None,
        };
        // An unknown account gets a salt and count that look like a real one's and stay the same
        // from one try to the next, so that the answer does not tell who has an account.
        let (salt, iterations) = match &account {
            Some((_, credentials)) => (credentials.salt.clone(), credentials.iterations),
            None => (decoy_salt(&first.username), super::common::SCRAM_ITERATIONS),
        };
        let nonce = format!("{}{}", first.nonce, server_nonce());
        let server_first = format!("r={nonce},s={},i={iterations}", B64.encode(salt));
        let mut expected_binding = first.gs2_header.as_bytes().to_vec();
        expected_binding.extend_from_slice(binding_data);
        self.pending = Some(Pending {
            expected_binding,
            auth_message_start: format!("{},{server_first}", first.bare),
            nonce,
            account,
        });
        Ok(StepOutcome::Challenge(server_first.into_bytes()))
    }

    fn client_final(&self, input: &[u8], pending: Pending) -> Result<StepOutcome, SaslFailure> {
        let text = std::str::from_utf8(input).map_err(|_| SaslFailure::MalformedRequest)?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(SaslFailure::MalformedRequest)?;
        let mut attributes = without_proof.split(',');
        let binding = attributes
            .next()
            .and_then(|a| a.strip_prefix("c="))
            .ok_or(SaslFailure::MalformedRequest)?;
        let nonce = attributes
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or(SaslFailure::MalformedRequest)?;
        let proof = B64
            .decode(proof)
            .map_err(|_| SaslFailure::IncorrectEncoding)?;
        let binding = B64
            .decode(binding)
            .map_err(|_| SaslFailure::IncorrectEncoding)?;
        if nonce != pending.nonce || binding != pending.expected_binding {
            return Err(SaslFailure::NotAuthorized);
        }
        let Some((user, credentials)) = pending.account else {
            return Err(SaslFailure::NotAuthorized);
        };
        let keys = match self.hash {
            Hash::Sha1 => &credentials.sha1,
            Hash::Sha256 => &credentials.sha256,
        };
        let auth_message = format!("{},{without_proof}", pending.auth_message_start);
        let client_signature = self.hash.hmac(&keys.stored_key, auth_message.as_bytes());
        if proof.len() != client_signature.len() {
            return Err(SaslFailure::NotAuthorized);
        }
        let client_key: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(p, s)| p ^ s)
            .collect();
        if !constant_time_eq(&self.hash.digest(&client_key), &keys.stored_key) {
            return Err(SaslFailure::NotAuthorized);
        }
        let server_signature = self.hash.hmac(&keys.server_key, auth_message.as_bytes());
        let verifier = format!("v={}", B64.encode(server_signature));
        Ok(StepOutcome::Success(
            Authenticated::User(user),
            verifier.into_bytes(),
        ))
    }
}

/// The user name a client-first message names, for counting failed logins per account.
pub fn claimed_username(client_first: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(client_first).ok()?;
    Some(ClientFirst::parse(text)?.username)
}

/// A fresh server nonce: random bytes in base64, so only letters, digits, `+` and `/`.
fn server_nonce() -> String {
    B64.encode(rand::random::<[u8; NONCE_BYTES]>())
}

/// A salt for a name that has no account: derived from the name and a key made once per run.
fn decoy_salt(username: &str) -> Vec<u8> {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    let key = KEY.get_or_init(rand::random);
    Hash::Sha256.hmac(key, username.as_bytes())[..16].to_vec()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The account's normalised localpart, if `username` is a valid one.
fn localpart(username: &str, domain: &str) -> Option<String> {
    let bare = jid::BareJid::new(&format!("{username}@{domain}")).ok()?;
    Some(bare.node()?.as_str().to_string())
}

/// An authorization identity, if any, must be the account itself.
fn authzid_ok(authzid: Option<&str>, user: &str, domain: &str) -> bool {
    match authzid {
        None | Some("") => true,
        Some(authzid) => {
            jid::BareJid::new(authzid).is_ok_and(|j| j.as_str() == format!("{user}@{domain}"))
        }
    }
}

/// RFC 5802 §5.1 `saslname`: `,` and `=` travel as `=2C` and `=3D`; any other `=` is invalid.
fn decode_saslname(text: &str) -> Option<String> {
    if text.contains('\0') {
        return None;
    }
    let decoded = text.replace("=2C", ",").replace("=3D", "\u{0}");
    if decoded.contains('=') {
        return None;
    }
    Some(decoded.replace('\u{0}', "="))
}

#[derive(Debug, PartialEq, Eq)]
enum Binding<'a> {
    /// `n`: the client cannot bind.
    NotSupported,
    /// `y`: the client could bind but believes the server cannot.
    SupportedNotUsed,
    /// `p=NAME`.
    Used(&'a str),
}

/// RFC 5802 §7 `client-first-message`.
#[derive(Debug)]
struct ClientFirst<'a> {
    gs2_header: &'a str,
    binding: Binding<'a>,
    authzid: Option<String>,
    /// `client-first-message-bare`, as it goes into the AuthMessage.
    bare: &'a str,
    /// The user name with `=2C` and `=3D` decoded.
    username: String,
    nonce: &'a str,
}

impl<'a> ClientFirst<'a> {
    fn parse(text: &'a str) -> Option<ClientFirst<'a>> {
        let mut parts = text.splitn(3, ',');
        let flag = parts.next()?;
        let authzid = parts.next()?;
        let bare = parts.next()?;
        let gs2_header = &text[..flag.len() + authzid.len() + 2];
        let binding = match flag {
            "n" => Binding::NotSupported,
            "y" => Binding::SupportedNotUsed,
            _ => Binding::Used(flag.strip_prefix("p=")?),
        };
        let authzid = match authzid {
            "" => None,
            a => Some(a.strip_prefix("a=")?),
        };
        let mut attributes = bare.split(',');
        // A mandatory extension (`m=`) we do not know must fail the exchange (RFC 5802 §5.1).
        let username = decode_saslname(attributes.next()?.strip_prefix("n=")?)?;
        let nonce = attributes.next()?.strip_prefix("r=")?;
        if username.is_empty() || nonce.is_empty() {
            return None;
        }
        let authzid = match authzid {
            Some(a) => Some(decode_saslname(a)?),
            None => None,
        };
        Some(ClientFirst {
            gs2_header,
            binding,
            authzid,
            bare,
            username,
            nonce,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_nonces_are_base64_only() {
        for _ in 0..1000 {
            let nonce = server_nonce();
            assert_eq!(nonce.len(), 24);
            assert!(
                nonce
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/'),
                "{nonce}"
            );
        }
    }

    #[test]
    fn client_first_message_parts() {
        let first = ClientFirst::parse("n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL").unwrap();
        assert_eq!(first.gs2_header, "n,,");
        assert_eq!(first.binding, Binding::NotSupported);
        assert_eq!(first.bare, "n=user,r=fyko+d2lbbFgONRv9qkxdawL");
        assert_eq!(first.username, "user");
        assert_eq!(first.nonce, "fyko+d2lbbFgONRv9qkxdawL");
        let first = ClientFirst::parse("p=tls-exporter,a=user@localhost,n=user,r=abc").unwrap();
        assert_eq!(first.gs2_header, "p=tls-exporter,a=user@localhost,");
        assert_eq!(first.binding, Binding::Used("tls-exporter"));
        assert_eq!(first.authzid.as_deref(), Some("user@localhost"));
        let first = ClientFirst::parse("y,,n=a=2Cb=3Dc,r=abc").unwrap();
        assert_eq!(first.username, "a,b=c");
        assert!(ClientFirst::parse("n,,n=a=b,r=abc").is_none());
        assert!(ClientFirst::parse("n,,m=ext,n=user,r=abc").is_none());
        assert!(ClientFirst::parse("x,,n=user,r=abc").is_none());
        assert!(ClientFirst::parse("n,,n=user").is_none());
    }

    /// RFC 5802 §5's example exchange (SCRAM-SHA-1, user "user", password "pencil"), with our
    /// keys derived from its salt and count.
    #[test]
    fn rfc5802_example_proof_checks_out() {
        let hash = Hash::Sha1;
        let salt = B64.decode("QSXCR+Q6sek8bf92").unwrap();
        let credentials = crate::session::sasl::common::derive_with_salt("pencil", &salt, 4096);
        let auth_message = "n=user,r=fyko+d2lbbFgONRv9qkxdawL,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096,c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j";
        let client_signature = hash.hmac(&credentials.sha1.stored_key, auth_message.as_bytes());
        let proof = B64.decode("v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=").unwrap();
        let client_key: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(p, s)| p ^ s)
            .collect();
        assert_eq!(hash.digest(&client_key), credentials.sha1.stored_key);
        let server_signature = hash.hmac(&credentials.sha1.server_key, auth_message.as_bytes());
        assert_eq!(B64.encode(server_signature), "rmF9pqV8S7suAoZWja4dJRkFsKQ=");
    }
}
