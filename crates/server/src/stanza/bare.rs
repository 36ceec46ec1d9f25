//! The bare form of a JID (RFC 7622 §3.1), without a formatting pass.
//!
//! Why: jid 0.12's `to_bare` builds the bare JID with `format!` from its parts, about a
//! thousand instructions, and a one-to-one message asked for it eleven times on its way
//! (blocking, carbons, archiving, routing; callgrind, bench/RESULTS.md, session 9). The bare
//! JID is the full one's text up to the slash: cutting a copy there, or reading that slice,
//! gives the same normalised JID for a small fraction of that.

use jid::{BareJid, FullJid, Jid};

/// The bare JID of a full or bare JID.
pub trait Bare {
    /// The bare JID as text (a slice of this JID's own text).
    fn bare_str(&self) -> &str;
    /// The bare JID, owned.
    fn bare(&self) -> BareJid;
}

impl Bare for Jid {
    fn bare_str(&self) -> &str {
        let text = self.as_str();
        match self.resource() {
            Some(resource) => &text[..text.len() - resource.as_str().len() - 1],
            None => text,
        }
    }

    fn bare(&self) -> BareJid {
        self.clone().into_bare()
    }
}

impl Bare for FullJid {
    fn bare_str(&self) -> &str {
        let text = self.as_str();
        &text[..text.len() - self.resource().as_str().len() - 1]
    }

    fn bare(&self) -> BareJid {
        self.clone().into_bare()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bare_jid_is_what_jid_computes_without_formatting() {
        for text in [
            "juliet@example.com/balcony/with/slashes",
            "juliet@example.com",
            "example.com/resource@with-at",
            "example.com",
            "Juliet@EXAMPLE.com/Balcony",
        ] {
            let jid = Jid::new(text).expect("a valid JID");
            assert_eq!(jid.bare(), jid.to_bare(), "{text}");
            assert_eq!(jid.bare_str(), jid.to_bare().as_str(), "{text}");
            if let Ok(full) = FullJid::new(text) {
                assert_eq!(full.bare(), full.to_bare(), "{text}");
                assert_eq!(full.bare_str(), full.to_bare().as_str(), "{text}");
            }
        }
    }
}
