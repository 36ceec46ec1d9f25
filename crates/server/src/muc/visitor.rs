//! Browser ids for returning guests: Salon's `urn:salon:visitor:0`, spoken by the built-in web
//! client. A guest (a session of the anonymous host) whose join presence carries no valid
//! secret gets `<visitor xmlns='urn:salon:visitor:0' secret='S'/>` in the room's self-presence;
//! the client keeps S (localStorage) and puts the same element in later join presences, to any
//! room of the service. S is `ID.TAG`: a random id and an HMAC-SHA256 of it under a key kept in
//! `data_dir/visitor-secret`, so it needs no table and survives restarts; a forged or damaged S
//! is ignored (logged at debug) as if there were none.
//!
//! The id serves two rules of the rooms (muc/room/occupants.rs, address_bans.rs): a guest's ban
//! also bans its browser in that room, and a returning guest whose browser id matches an
//! occupant whose sessions all wait for XEP-0198 resumption gets that occupant's place back
//! (a page reload that could not resume). An address is never such proof.

use crate::stanza::{ns, Build};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use minidom::Element;
use sha2::Sha256;

/// Random bytes of a browser id, and bytes of the HMAC kept in the secret.
const ID_BYTES: usize = 16;
const TAG_BYTES: usize = 16;
/// Longer than any secret made here; a longer one is not even looked at.
const MAX_SECRET_LEN: usize = 128;

const ENGINE: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Issues and checks browser secrets under one server key.
pub struct VisitorSecrets {
    key: Vec<u8>,
}

impl VisitorSecrets {
    pub fn new(key: Vec<u8>) -> VisitorSecrets {
        VisitorSecrets { key }
    }

    /// The key in `data_dir/visitor-secret`, made on first start.
    pub fn load_or_create(data_dir: &std::path::Path) -> anyhow::Result<VisitorSecrets> {
        let key = crate::secret_file::load_or_create(&data_dir.join("visitor-secret"))?;
        Ok(VisitorSecrets::new(key))
    }

    fn tag(&self, id: &str) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(b"salon visitor 0\n");
        mac.update(id.as_bytes());
        mac
    }

    /// A new browser id, with its secret.
    pub fn issue(&self) -> (String, String) {
        let id = ENGINE.encode(rand::random::<[u8; ID_BYTES]>());
        let secret = self.secret_for(&id);
        (id, secret)
    }

    /// The secret of an id issued here.
    pub fn secret_for(&self, id: &str) -> String {
        let tag = self.tag(id).finalize().into_bytes();
        format!("{id}.{}", ENGINE.encode(&tag[..TAG_BYTES]))
    }

    /// The browser id in `secret`, if the server issued it.
    pub fn verify(&self, secret: &str) -> Option<String> {
        if secret.len() > MAX_SECRET_LEN {
            return None;
        }
        let (id, tag) = secret.split_once('.')?;
        let id_bytes = ENGINE.decode(id).ok()?;
        let tag = ENGINE.decode(tag).ok()?;
        if id_bytes.len() != ID_BYTES || tag.len() != TAG_BYTES {
            return None;
        }
        // Compared in constant time.
        self.tag(id).verify_truncated_left(&tag).ok()?;
        Some(id.to_string())
    }
}

/// The browser id a guest session was given or proved, kept in the session's slots: a page
/// that joins several rooms at once, before it has stored any secret, gets one id for all.
pub struct SessionBrowser(pub String);

/// The secret a presence offers, if any.
pub fn offered(presence: &Element) -> Option<&str> {
    presence
        .get_child("visitor", ns::SALON_VISITOR)
        .and_then(|v| v.attr("secret"))
}

/// The element that hands a guest its secret.
pub fn element(secret: String) -> Element {
    Build::new("visitor", ns::SALON_VISITOR)
        .attr("secret", secret)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_secrets_issued_under_the_key_verify() {
        let secrets = VisitorSecrets::new(vec![7; 32]);
        let (id, secret) = secrets.issue();
        assert_eq!(secrets.verify(&secret), Some(id.clone()));
        assert_eq!(secrets.secret_for(&id), secret);
        // Another server's key, a changed id or tag, garbage: none.
        assert_eq!(VisitorSecrets::new(vec![8; 32]).verify(&secret), None);
        let (other_id, _) = secrets.issue();
        let tag = secret.split_once('.').unwrap().1;
        assert_eq!(secrets.verify(&format!("{other_id}.{tag}")), None);
        assert_eq!(secrets.verify(&format!("{id}.{}", &tag[1..])), None);
        for junk in ["", ".", "abc", &"a.".repeat(100), "é.é"] {
            assert_eq!(secrets.verify(junk), None, "{junk}");
        }
    }
}
