//! The names an upload goes by (XEP-0363 §5): slot ids, the client's file name as kept and put
//! in URLs, and content types as requested, matched against `allowed_types` and served.

/// Longest file name kept (in bytes, cut at a character boundary).
const MAX_FILENAME: usize = 200;

/// Whether `id` looks like a slot id; anything else never reaches the file system.
pub fn is_valid_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The client's file name as kept: its last path component, without control characters, at most
/// [`MAX_FILENAME`] bytes, `file` if nothing is left. Never used on disk.
pub fn sanitize_filename(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = last.chars().filter(|c| !c.is_control()).collect();
    let mut cleaned = cleaned.trim().to_string();
    if cleaned.len() > MAX_FILENAME {
        let mut end = MAX_FILENAME;
        while !cleaned.is_char_boundary(end) {
            end -= 1;
        }
        cleaned.truncate(end);
    }
    if cleaned.is_empty() || cleaned == "." || cleaned == ".." {
        "file".to_string()
    } else {
        cleaned
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// The lower-case `type/subtype` of a content type, if it is one.
pub fn media_type(content_type: &str) -> Option<String> {
    let essence = content_type.split(';').next()?.trim().to_ascii_lowercase();
    let (kind, subtype) = essence.split_once('/')?;
    (is_token(kind) && is_token(subtype)).then_some(essence)
}

/// A content type from a slot request, normalised to `type/subtype` plus a `charset` if one
/// was given; other parameters are dropped. `None` if it is not a content type.
pub(super) fn normalise_content_type(content_type: &str) -> Option<String> {
    let essence = media_type(content_type)?;
    let charset = content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        let value = value.trim().trim_matches('"');
        (name.trim().eq_ignore_ascii_case("charset") && is_token(value))
            .then(|| value.to_ascii_lowercase())
    });
    Some(match charset {
        Some(charset) => format!("{essence}; charset={charset}"),
        None => essence,
    })
}

/// Whether a media type matches an `allowed_types` pattern (`image/png`, `image/*`, `*/*`).
pub(super) fn type_allowed(media_type: &str, pattern: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    match (media_type.split_once('/'), pattern.split_once('/')) {
        (Some((kind, sub)), Some((pkind, psub))) => {
            (pkind == "*" || pkind == kind) && (psub == "*" || psub == sub)
        }
        _ => false,
    }
}

/// Percent-encode a file name for one URL path segment (RFC 3986 unreserved characters stay).
pub(super) fn encode_segment(segment: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(segment, SET).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filenames_never_carry_a_path() {
        assert_eq!(sanitize_filename("../../etc/passwd"), "passwd");
        assert_eq!(sanitize_filename("..\\..\\boot.ini"), "boot.ini");
        assert_eq!(sanitize_filename(".."), "file");
        assert_eq!(sanitize_filename("a/"), "file");
        assert_eq!(sanitize_filename("très\ncool.jpg"), "trèscool.jpg");
        let long = "é".repeat(150);
        assert!(sanitize_filename(&long).len() <= MAX_FILENAME);
        assert_eq!(encode_segment("très cool.jpg"), "tr%C3%A8s%20cool.jpg");
        assert_eq!(encode_segment("a/b?c#d"), "a%2Fb%3Fc%23d");
    }

    #[test]
    fn content_types() {
        assert_eq!(
            normalise_content_type("Text/Plain; Charset=UTF-8; x=y").as_deref(),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(
            normalise_content_type("image/png").as_deref(),
            Some("image/png")
        );
        assert_eq!(normalise_content_type("image"), None);
        assert_eq!(normalise_content_type("image/png\r\nX: y"), None);
        assert!(type_allowed("image/png", "image/*"));
        assert!(type_allowed("image/png", "*/*"));
        assert!(type_allowed("image/png", "IMAGE/PNG"));
        assert!(!type_allowed("text/html", "image/*"));
    }

    #[test]
    fn ids() {
        assert!(is_valid_id(&format!("{:032x}", 7u128)));
        assert!(!is_valid_id("../../../../../../../etc/passwd"));
        assert!(!is_valid_id(&"A".repeat(32)));
    }
}
