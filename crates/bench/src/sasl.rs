//! The client side of the SASL mechanisms the benchmark uses: ANONYMOUS (RFC 4505), PLAIN
//! (RFC 4616) and SCRAM-SHA-1 without channel binding (RFC 5802). Pure functions on strings, so
//! they are tested without a server.

use anyhow::{anyhow, bail, Context, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::{Digest, Sha1};

type HmacSha1 = Hmac<Sha1>;

/// The initial response of PLAIN: `\0user\0password`, base64-encoded.
pub fn plain_initial(user: &str, password: &str) -> String {
    B64.encode(format!("\0{user}\0{password}"))
}

/// SCRAM-SHA-1 client state between the client-first and client-final messages.
pub struct ScramClient {
    password: String,
    client_first_bare: String,
    cnonce: String,
    /// ServerSignature expected in the server-final message, once computed.
    server_signature: Option<Vec<u8>>,
}

/// RFC 5802 §5.1 `saslname`: `=` and `,` are escaped.
fn saslname(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

impl ScramClient {
    /// Start an exchange; `cnonce` must be printable ASCII without `,`.
    pub fn new(user: &str, password: &str, cnonce: &str) -> ScramClient {
        ScramClient {
            password: password.to_string(),
            client_first_bare: format!("n={},r={cnonce}", saslname(user)),
            cnonce: cnonce.to_string(),
            server_signature: None,
        }
    }

    /// A random client nonce (24 base64 characters).
    pub fn random_nonce() -> String {
        let bytes: [u8; 18] = rand::random();
        B64.encode(bytes)
    }

    /// The client-first message (`n,,n=user,r=nonce`), not base64-encoded.
    pub fn client_first(&self) -> String {
        format!("n,,{}", self.client_first_bare)
    }

    /// Given the server-first message, the client-final message with the proof.
    pub fn client_final(&mut self, server_first: &str) -> Result<String> {
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for part in server_first.split(',') {
            if let Some(v) = part.strip_prefix("r=") {
                nonce = Some(v);
            } else if let Some(v) = part.strip_prefix("s=") {
                salt = Some(B64.decode(v).context("SCRAM salt is not base64")?);
            } else if let Some(v) = part.strip_prefix("i=") {
                iterations = Some(v.parse::<u32>().context("SCRAM iteration count")?);
            } else if part.starts_with("m=") {
                bail!("SCRAM server-first has a mandatory extension: {server_first}");
            }
        }
        let nonce = nonce.ok_or_else(|| anyhow!("SCRAM server-first without r="))?;
        let salt = salt.ok_or_else(|| anyhow!("SCRAM server-first without s="))?;
        let iterations = iterations.ok_or_else(|| anyhow!("SCRAM server-first without i="))?;
        if !nonce.starts_with(&self.cnonce) || nonce.len() == self.cnonce.len() {
            bail!("SCRAM server nonce does not extend the client nonce");
        }
        if iterations == 0 {
            bail!("SCRAM iteration count 0");
        }
        let mut salted = [0u8; 20];
        pbkdf2::pbkdf2_hmac::<Sha1>(self.password.as_bytes(), &salt, iterations, &mut salted);
        let client_key = hmac(&salted, b"Client Key");
        let stored_key = Sha1::digest(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let client_signature = hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&client_signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = hmac(&salted, b"Server Key");
        self.server_signature = Some(hmac(&server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", B64.encode(proof)))
    }

    /// Check the server-final message (`v=…`), which proves the server knew the password.
    pub fn verify_server_final(&self, server_final: &str) -> Result<()> {
        if let Some(e) = server_final.strip_prefix("e=") {
            bail!("SCRAM server error: {e}");
        }
        let v = server_final
            .split(',')
            .find_map(|p| p.strip_prefix("v="))
            .ok_or_else(|| anyhow!("SCRAM server-final without v=: {server_final}"))?;
        let got = B64
            .decode(v)
            .context("SCRAM server signature is not base64")?;
        match &self.server_signature {
            Some(expected) if *expected == got => Ok(()),
            Some(_) => bail!("SCRAM server signature does not match"),
            None => bail!("SCRAM server-final before client-final"),
        }
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = HmacSha1::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 5802 §5: the SCRAM-SHA-1 example exchange.
    #[test]
    fn scram_sha1_rfc5802_vector() {
        let mut client = ScramClient::new("user", "pencil", "fyko+d2lbbFgONRv9qkxdawL");
        assert_eq!(
            client.client_first(),
            "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL"
        );
        let server_first = "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096";
        let client_final = client.client_final(server_first).unwrap();
        assert_eq!(
            client_final,
            "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
        );
        client
            .verify_server_final("v=rmF9pqV8S7suAoZWja4dJRkFsKQ=")
            .unwrap();
        assert!(client
            .verify_server_final("v=AAAAAAAAAAAAAAAAAAAAAAAAAAA=")
            .is_err());
        assert!(client.verify_server_final("e=invalid-proof").is_err());
    }

    #[test]
    fn scram_refuses_a_nonce_that_does_not_extend_ours() {
        let mut client = ScramClient::new("user", "pencil", "abc");
        assert!(client
            .client_final("r=xyz123,s=QSXCR+Q6sek8bf92,i=4096")
            .is_err());
        assert!(client
            .client_final("r=abc,s=QSXCR+Q6sek8bf92,i=4096")
            .is_err());
    }

    #[test]
    fn scram_escapes_the_user_name() {
        let client = ScramClient::new("a=b,c", "p", "n");
        assert_eq!(client.client_first(), "n,,n=a=3Db=2Cc,r=n");
    }

    #[test]
    fn plain_encoding() {
        assert_eq!(
            B64.decode(plain_initial("bench0", "secret")).unwrap(),
            b"\0bench0\0secret"
        );
    }

    #[test]
    fn random_nonces_differ_and_have_no_comma() {
        let a = ScramClient::random_nonce();
        let b = ScramClient::random_nonce();
        assert_ne!(a, b);
        assert!(!a.contains(','));
    }
}
