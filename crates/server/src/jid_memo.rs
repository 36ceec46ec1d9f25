//! A per-thread memo of parsed JIDs (RFC 7622 preparation): a stanza's `to` and `from` are
//! parsed by each layer it passes (routing, a service, a room), and preparing a JID
//! (stringprep's nodeprep and resourceprep, UTS #46 for the domain) costs about ten times
//! what finding it here does (callgrind, session 11: five parses, 6 % of a room message).
//!
//! The answers are those of [`jid::Jid::new`] exactly: parsing is a pure function, so a
//! remembered answer never goes stale. Only successes are kept, only for texts of at most
//! [`LONGEST`] bytes, in [`SLOTS`] slots chosen by hash: whatever a peer sends, a thread holds
//! at most that many, and a text that misses is parsed as it would be without the memo.

use std::cell::RefCell;

/// Slots per thread; a text goes to one, and replaces what was there.
const SLOTS: usize = 64;
/// Longer texts are parsed every time (RFC 7622 allows 3,071 bytes; addresses are far shorter).
const LONGEST: usize = 128;

type Slot = Option<(Box<str>, jid::Jid)>;

thread_local! {
    static RECENT: RefCell<Vec<Slot>> = RefCell::new(vec![None; SLOTS]);
}

/// [`jid::Jid::new`], remembered.
pub fn parse(text: &str) -> Result<jid::Jid, jid::Error> {
    if text.len() > LONGEST {
        return jid::Jid::new(text);
    }
    let slot = slot_of(text);
    let known = RECENT.with(|recent| {
        let recent = recent.borrow();
        match &recent[slot] {
            Some((key, parsed)) if **key == *text => Some(parsed.clone()),
            _ => None,
        }
    });
    if let Some(parsed) = known {
        return Ok(parsed);
    }
    let parsed = jid::Jid::new(text)?;
    RECENT.with(|recent| recent.borrow_mut()[slot] = Some((text.into(), parsed.clone())));
    Ok(parsed)
}

/// [`jid::FullJid::new`], remembered.
pub fn parse_full(text: &str) -> Result<jid::FullJid, jid::Error> {
    parse(text)?.try_into()
}

/// A slot for `text`: a multiplicative hash of its bytes. Not keyed: a peer who makes texts
/// collide only makes them miss, which costs what parsing without the memo does.
fn slot_of(text: &str) -> usize {
    let mut hash: u64 = text.len() as u64;
    for chunk in text.as_bytes().chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        hash = (hash.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    (hash >> 58) as usize % SLOTS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_as_the_crate_does_first_time_and_after() {
        let texts = [
            "Alice@Example.COM/Phone",
            "room@rooms.example/nick",
            "example.org",
            "bob@example.org",
            "a@b@c",
            "",
            "x@/r",
            "ﬀ@example.org/Ⅸ",
        ];
        for _ in 0..2 {
            for text in texts {
                assert_eq!(parse(text), jid::Jid::new(text), "{text:?}");
                assert_eq!(parse_full(text), jid::FullJid::new(text), "{text:?}");
            }
        }
    }

    #[test]
    fn colliding_and_long_texts_are_parsed_not_confused() {
        // More texts than slots: every one still gets its own answer.
        let texts: Vec<String> = (0..4 * SLOTS)
            .map(|n| format!("user{n}@example.org/r{n}"))
            .collect();
        for _ in 0..2 {
            for text in &texts {
                assert_eq!(parse(text).unwrap().as_str(), text);
            }
        }
        let long = format!("{}@example.org", "n".repeat(LONGEST));
        assert_eq!(parse(&long), jid::Jid::new(&long));
    }

    #[test]
    fn a_remembered_text_is_found_in_its_slot() {
        let text = "memo@example.org/here";
        parse(text).unwrap();
        let found = RECENT.with(|recent| {
            recent.borrow()[slot_of(text)]
                .as_ref()
                .map(|(key, parsed)| (key.to_string(), parsed.to_string()))
        });
        assert_eq!(found, Some((text.to_string(), text.to_string())));
    }
}
