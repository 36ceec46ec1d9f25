//! What every SASL mechanism shares (RFC 6120 §6): who logged in, the channel-binding data a
//! transport can offer (RFC 5929, RFC 9266), the failure conditions, and SCRAM credentials as
//! stored (RFC 5802, RFC 7677: passwords are only ever kept as SCRAM keys).

use crate::storage::{Credentials, ScramKeys};
use rsasl::prelude::*;
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// Iterations used for new passwords (RFC 7677 recommends at least 4096).
pub const SCRAM_ITERATIONS: u32 = 4096;

/// Derive the stored SCRAM keys for a password (RFC 5802 §3), for both hash functions.
pub fn derive_credentials(password: &str) -> Credentials {
    let salt: [u8; 16] = rand::random();
    derive_with_salt(password, &salt, SCRAM_ITERATIONS)
}

pub(crate) fn derive_with_salt(password: &str, salt: &[u8], iterations: u32) -> Credentials {
    use rsasl::mechanisms::scram::tools::{derive_keys, hash_password};
    // SASLprep (RFC 4013) the password as SCRAM clients do; fall back to the raw text for
    // strings SASLprep rejects so that such a password still works with PLAIN.
    let prepared = stringprep::saslprep(password)
        .map(|p| p.into_owned())
        .unwrap_or_else(|_| password.to_string());
    let mut salted1 = Default::default();
    hash_password::<Sha1>(prepared.as_bytes(), iterations, salt, &mut salted1);
    let (client1, server1) = derive_keys::<Sha1>(salted1.as_slice());
    let mut salted256 = Default::default();
    hash_password::<Sha256>(prepared.as_bytes(), iterations, salt, &mut salted256);
    let (client256, server256) = derive_keys::<Sha256>(salted256.as_slice());
    Credentials {
        iterations,
        salt: salt.to_vec(),
        sha1: ScramKeys {
            stored_key: Sha1::digest(client1).to_vec(),
            server_key: server1.to_vec(),
        },
        sha256: ScramKeys {
            stored_key: Sha256::digest(client256).to_vec(),
            server_key: server256.to_vec(),
        },
    }
}

/// Check a plaintext password (from PLAIN) against stored credentials, in constant time.
pub fn verify_password(credentials: &Credentials, password: &str) -> bool {
    let candidate = derive_with_salt(password, &credentials.salt, credentials.iterations);
    constant_time_eq(&candidate.sha256.stored_key, &credentials.sha256.stored_key)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Who logged in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Authenticated {
    /// Localpart of an account on the host.
    User(String),
    Anonymous,
}

/// Channel-binding data of the current TLS connection.
#[derive(Clone, Default)]
pub struct ChannelBindings {
    pub tls_exporter: Option<Vec<u8>>,
    pub tls_server_end_point: Option<Vec<u8>>,
}

impl ChannelBindingCallback for ChannelBindings {
    fn get_cb_data(&self, cbname: &str) -> Option<&[u8]> {
        match cbname {
            "tls-exporter" => self.tls_exporter.as_deref(),
            "tls-server-end-point" => self.tls_server_end_point.as_deref(),
            _ => None,
        }
    }
}

impl ChannelBindings {
    /// Whether SCRAM-…-PLUS can work: there is at least one binding to check.
    pub fn can_bind(&self) -> bool {
        self.tls_exporter.is_some() || self.tls_server_end_point.is_some()
    }

    /// The binding types offered in XEP-0440 `<sasl-channel-binding/>`.
    pub fn offered(&self) -> Vec<&'static str> {
        let mut types = Vec::new();
        if self.tls_exporter.is_some() {
            types.push("tls-exporter");
        }
        if self.tls_server_end_point.is_some() {
            types.push("tls-server-end-point");
        }
        types
    }
}

/// Why an exchange ended without success; each is an RFC 6120 §6.5 condition.
#[derive(Debug)]
pub enum SaslFailure {
    InvalidMechanism,
    IncorrectEncoding,
    NotAuthorized,
    MalformedRequest,
}

impl SaslFailure {
    pub fn condition(&self) -> &'static str {
        match self {
            SaslFailure::InvalidMechanism => "invalid-mechanism",
            SaslFailure::IncorrectEncoding => "incorrect-encoding",
            SaslFailure::NotAuthorized => "not-authorized",
            SaslFailure::MalformedRequest => "malformed-request",
        }
    }
}

/// What one step produced.
pub enum StepOutcome {
    /// Send a `<challenge/>` with these bytes and wait for a `<response/>`.
    Challenge(Vec<u8>),
    /// Send `<success/>` with these additional-data bytes (may be empty).
    Success(Authenticated, Vec<u8>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7677_test_vector() {
        // RFC 7677 §3: user "user", password "pencil", salt W22ZaJ0SNY7soEsUEjb6gQ==, i=4096.
        use base64::Engine as _;
        let salt = base64::engine::general_purpose::STANDARD
            .decode("W22ZaJ0SNY7soEsUEjb6gQ==")
            .unwrap();
        let credentials = derive_with_salt("pencil", &salt, 4096);
        // ServerKey derived from the published server signature's inputs is not given
        // directly; check the stored key round-trips through verification instead.
        assert!(verify_password(&credentials, "pencil"));
        assert!(!verify_password(&credentials, "pencil2"));
        assert_eq!(credentials.sha256.stored_key.len(), 32);
        assert_eq!(credentials.sha1.stored_key.len(), 20);
    }
}
