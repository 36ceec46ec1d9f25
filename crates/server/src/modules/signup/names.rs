//! Which names open sign-up accepts: a plain ASCII alphabet (so no homoglyph from another
//! script), no reserved name (the addresses people trust: postmaster, abuse, admin...), and no
//! look-alike of a reserved name or of an existing account (`a1ice` next to `alice`).

/// Longest username accepted at sign-up.
pub const MAX_USERNAME_CHARS: usize = 32;

/// Names that belong to the service or that users would take for it (RFC 2142 roles and the
/// usual staff words).
const RESERVED: &[&str] = &[
    "abuse",
    "admin",
    "administrator",
    "anonymous",
    "api",
    "contact",
    "help",
    "helpdesk",
    "hostmaster",
    "info",
    "invite",
    "jabber",
    "mail",
    "moderator",
    "noc",
    "noreply",
    "official",
    "operator",
    "owner",
    "postmaster",
    "register",
    "root",
    "salon",
    "security",
    "server",
    "service",
    "signup",
    "staff",
    "support",
    "sysadmin",
    "system",
    "team",
    "webmaster",
    "www",
    "xmpp",
];

/// Why a name is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum NameProblem {
    /// Empty, too long, or characters outside `a-z 0-9 . - _`.
    Malformed,
    /// A reserved name or one that looks like it.
    Reserved,
}

/// The name as it will be stored (lower case), or why it is refused.
pub fn check(name: &str, admins: &[String]) -> Result<String, NameProblem> {
    let name = name.trim().to_ascii_lowercase();
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || ".-_".contains(c);
    if name.is_empty()
        || name.chars().count() > MAX_USERNAME_CHARS
        || !name.chars().all(allowed)
        || !name.starts_with(|c: char| c.is_ascii_alphanumeric())
        || !name.ends_with(|c: char| c.is_ascii_alphanumeric())
    {
        return Err(NameProblem::Malformed);
    }
    let shape = skeleton(&name);
    // A reserved word with digits or separators around it still reads as the role.
    let core = skeleton(name.trim_end_matches(|c: char| c.is_ascii_digit() || ".-_".contains(c)));
    let admin_names = admins
        .iter()
        .filter_map(|a| a.split_once('@').map(|(user, _)| user));
    if RESERVED.iter().copied().chain(admin_names).any(|reserved| {
        let reserved = skeleton(reserved);
        reserved == shape || reserved == core
    }) {
        return Err(NameProblem::Reserved);
    }
    Ok(name)
}

/// The name as it looks: separators dropped and characters that read alike folded together,
/// so that two names with the same skeleton are easy to confuse.
pub fn skeleton(name: &str) -> String {
    let folded: String = name
        .to_lowercase()
        .chars()
        .filter(|c| !".-_".contains(*c))
        .map(|c| match c {
            '0' => 'o',
            '1' | 'i' | '|' | '!' => 'l',
            '3' => 'e',
            '4' => 'a',
            '5' => 's',
            '7' => 't',
            '8' => 'b',
            '9' => 'g',
            '2' => 'z',
            other => other,
        })
        .collect();
    folded
        .replace("rn", "m")
        .replace("vv", "w")
        .replace("cl", "d")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_pass_and_are_lower_cased() {
        assert_eq!(check("Alice", &[]), Ok("alice".into()));
        assert_eq!(check("bob.smith-2", &[]), Ok("bob.smith-2".into()));
    }

    #[test]
    fn other_scripts_symbols_and_lengths_are_malformed() {
        for name in [
            "",
            "аlice",
            "a b",
            "a@b",
            "-alice",
            "alice.",
            &"a".repeat(33),
        ] {
            assert_eq!(check(name, &[]), Err(NameProblem::Malformed), "{name}");
        }
    }

    #[test]
    fn reserved_names_and_their_look_alikes_are_refused() {
        for name in [
            "admin",
            "Admin",
            "adm1n",
            "a.dmin",
            "postmaster",
            "p0stmaster",
            "root2",
            "abuse",
            "support_",
            "4dmin",
        ] {
            assert_ne!(check(name, &[]), Ok(name.to_ascii_lowercase()), "{name}");
        }
        let admins = vec!["carol@example.org".to_string()];
        assert_eq!(check("caro1", &admins), Err(NameProblem::Reserved));
        assert!(check("carolyn", &admins).is_ok());
    }

    #[test]
    fn look_alike_skeletons_match() {
        assert_eq!(skeleton("a1ice"), skeleton("alice"));
        assert_eq!(skeleton("rnary"), skeleton("mary"));
        assert_ne!(skeleton("alice"), skeleton("alicia"));
    }
}
