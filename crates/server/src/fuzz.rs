//! Entry points for the fuzz targets in `crates/xml/fuzz` (`scripts/fuzz.sh`): JIDs, SCRAM
//! messages and data forms as they arrive from the network. Each takes arbitrary bytes and must
//! not panic; the fuzzer's memory limit catches one that allocates out of proportion to its
//! input. The unit tests feed them the committed seeds, so they build and run in the normal test
//! suite too.

use crate::session::sasl::{ChannelBindings, Exchange, StepOutcome};
use crate::storage::memory::MemoryStorage;
use crate::storage::{AccountStore, Storage};
use salon_xml::{ParserLimits, StreamEvent, StreamParser, TreeLimits};
use std::sync::{Arc, OnceLock};

/// A JID (RFC 7622) as it comes in a `to` (`stanza::parse_jid`): if it parses, its string form
/// parses back to the same JID (the `jid` crate alone does not hold to this; see
/// `parse_jid`); and `jid_memo::parse` answers as `jid::Jid::new` does.
pub fn jid(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The memo answers as the crate does, first time (parsed) and after (remembered).
    for _ in 0..2 {
        assert_eq!(crate::jid_memo::parse(text), jid::Jid::new(text));
    }
    if let Ok(parsed) = crate::stanza::parse_jid(text) {
        let again =
            crate::stanza::parse_jid(parsed.as_str()).expect("a JID's own string form parses");
        assert_eq!(again, parsed, "a JID's string form parses to another JID");
    }
}

/// A SCRAM-SHA-256 exchange (RFC 5802, RFC 7677) against an account `user` (password
/// `pencil`): the bytes up to the first NUL are the client-first message, the rest the
/// client-final message.
pub fn scram(data: &[u8]) {
    let (first, last) = match data.iter().position(|b| *b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let (runtime, storage) = scram_fixture();
    runtime.block_on(async {
        let Ok(mut exchange) = Exchange::start(
            "SCRAM-SHA-256",
            storage.clone(),
            "localhost",
            false,
            false,
            ChannelBindings::default(),
        ) else {
            panic!("SCRAM-SHA-256 is offered");
        };
        if let Ok(StepOutcome::Challenge(_)) = exchange.step(first.to_vec()).await {
            let _ = exchange.step(last.to_vec()).await;
        }
    });
}

fn scram_fixture() -> &'static (tokio::runtime::Runtime, Arc<dyn Storage>) {
    static FIXTURE: OnceLock<(tokio::runtime::Runtime, Arc<dyn Storage>)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let storage = Arc::new(MemoryStorage::new());
        let credentials = crate::session::sasl::derive_credentials("pencil");
        runtime
            .block_on(storage.create_account("user", "localhost", &credentials))
            .expect("the account is created");
        (runtime, storage as Arc<dyn Storage>)
    })
}

/// A submitted data form (XEP-0004) as a room owner sends it: the bytes are the children of
/// `<x xmlns='jabber:x:data' type='submit'>`, applied to a room's configuration.
pub fn data_form(data: &[u8]) {
    let mut parser =
        StreamParser::new(ParserLimits::default()).with_tree_limits(TreeLimits::default());
    let mut events = Vec::new();
    let opened = parser.feed(
        b"<stream xmlns='jabber:client'><x xmlns='jabber:x:data' type='submit'>",
        &mut events,
    );
    assert!(opened.is_ok());
    if parser.feed(data, &mut events).is_err() || parser.feed(b"</x>", &mut events).is_err() {
        return;
    }
    for event in events {
        if let StreamEvent::Stanza(element) = event {
            // The generic XEP-0004 reader first, then the room configuration on top of it.
            if let Ok(form) = crate::stanza::forms::DataForm::parse(&element) {
                let current = crate::muc::config::RoomConfig::default();
                let _ = crate::muc::config::apply(&form, &current, 100);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// Every committed seed of `target` (crates/xml/fuzz/corpus/TARGET/), fed to `run`.
    fn seeds(target: &str, run: fn(&[u8])) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../xml/fuzz/corpus")
            .join(target);
        let mut fed = 0;
        for entry in std::fs::read_dir(&dir).expect("the seed directory exists") {
            let path = entry.expect("a directory entry").path();
            run(&std::fs::read(&path).expect("a readable seed"));
            fed += 1;
        }
        assert!(fed > 0, "no seeds in {}", dir.display());
    }

    #[test]
    fn jid_seeds() {
        seeds("jid", super::jid);
    }

    #[test]
    fn scram_seeds() {
        seeds("scram", super::scram);
    }

    #[test]
    fn data_form_seeds() {
        seeds("data_form", super::data_form);
    }
}
