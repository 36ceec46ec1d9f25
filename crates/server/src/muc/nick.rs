//! Room nicknames: RFC 8266 (PRECIS nickname profile) enforcement, and a comparison key that
//! also folds Unicode confusables (UTS #39 skeletons) so that look-alikes of an occupant's
//! nick are refused (XEP-0045 §7.2.9 lets the service refuse nicks by its own policy).

use precis_core::profile::PrecisFastInvocation;
use precis_profiles::Nickname;

/// Why a nick was refused, with the XEP-0045 error it maps to.
#[derive(Debug, PartialEq, Eq)]
pub enum NickError {
    /// Empty, or only invisible/control characters: `<jid-malformed/>`.
    Empty,
    /// Not a valid PRECIS nickname, or too long: `<not-acceptable/>`.
    NotAcceptable(&'static str),
}

/// Longest nick accepted, in bytes (a resourcepart is at most 1023 bytes, RFC 7622 §3.4).
pub const MAX_NICK_BYTES: usize = 1023;

/// Enforce the nickname profile: the form shown to everyone.
pub fn enforce(nick: &str) -> Result<String, NickError> {
    if nick.len() > MAX_NICK_BYTES {
        return Err(NickError::NotAcceptable(
            "nicknames are limited to 1023 bytes",
        ));
    }
    let visible = nick
        .chars()
        .any(|c| !c.is_whitespace() && !c.is_control() && !is_invisible(c));
    if !visible {
        return Err(NickError::Empty);
    }
    if nick.chars().any(|c| c.is_control() || is_invisible(c)) {
        return Err(NickError::NotAcceptable(
            "nicknames must not contain control or invisible characters",
        ));
    }
    let enforced = Nickname::enforce(nick)
        .map_err(|_| NickError::NotAcceptable("not a valid nickname (RFC 8266)"))?;
    if enforced.is_empty() || enforced.len() > MAX_NICK_BYTES {
        return Err(NickError::Empty);
    }
    Ok(enforced.into_owned())
}

/// The key two nicks are compared by: RFC 8266 comparison (case and width folded) plus the
/// confusable skeleton, so "Alice", "alice" and "Аlice" (Cyrillic А) collide.
pub fn comparison_key(nick: &str) -> String {
    let prepared = Nickname::prepare(nick)
        .map(|p| p.to_lowercase())
        .unwrap_or_else(|_| nick.to_lowercase());
    let folded: String = unicode_security::skeleton(&prepared).collect();
    folded.to_lowercase()
}

/// Format characters that render as nothing (zero-width spaces and joiners, bidi controls…).
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFA0}' | '\u{FFF0}'..='\u{FFF8}' | '\u{E0000}'..='\u{E007F}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_nicks_pass() {
        assert_eq!(enforce("Alice").unwrap(), "Alice");
        assert_eq!(enforce("Zoë the 2nd").unwrap(), "Zoë the 2nd");
    }

    #[test]
    fn empty_and_invisible_nicks_are_refused() {
        assert_eq!(enforce(""), Err(NickError::Empty));
        assert_eq!(enforce("   "), Err(NickError::Empty));
        assert_eq!(enforce("\u{200B}\u{200D}"), Err(NickError::Empty));
        assert!(matches!(
            enforce("bo\u{200B}b"),
            Err(NickError::NotAcceptable(_))
        ));
        assert!(matches!(
            enforce(&"x".repeat(1024)),
            Err(NickError::NotAcceptable(_))
        ));
    }

    #[test]
    fn look_alikes_collide() {
        assert_eq!(comparison_key("Alice"), comparison_key("alice"));
        assert_eq!(comparison_key("alice"), comparison_key("\u{0430}lice"));
        assert_eq!(comparison_key("ALICE"), comparison_key("ａｌｉｃｅ"));
        assert_ne!(comparison_key("alice"), comparison_key("bob"));
    }
}
