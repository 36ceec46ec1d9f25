//! Fuzz target for `salon_xml::StreamParser`.
//!
//! Input layout: `[split seed] [limits selector] [stream bytes…]`.
//!
//! * split seed: 0 feeds the stream in one call; otherwise it seeds a small PRNG that cuts the
//!   stream into chunks of 1..=2^(seed & 7) bytes, so splits land anywhere, including inside
//!   tags, entities and multi-byte UTF-8 characters.
//! * limits selector: below 0x80 uses `ParserLimits::default()`; from 0x80 up derives tiny limits
//!   from its bits so that every policy-violation path is reachable with short inputs.
//!
//! Checks (a failed check panics, which libFuzzer reports as a crash):
//! 1. nothing panics in the parser or the serialiser;
//! 2. split invariance: after `reset()`, feeding the whole stream at once gives the same events
//!    and the same error condition as the chunked feed;
//! 3. round trip: every stanza, serialised with `salon_xml::serialize`, wrapped in a fresh stream
//!    header and parsed again, comes back as one stanza with the same name and namespace and,
//!    more strictly, the same tree (names, namespaces, attributes, text);
//! 4. the serialiser's fast path writes the same bytes as minidom's writer;
//! 5. the parser's fast path reads what rxml reads: the stream fed whole (and in the same chunks)
//!    to a parser with the fast path off gives the same events and the same error condition.
#![no_main]

use libfuzzer_sys::fuzz_target;
use salon_xml::minidom::{Element, Node};
use salon_xml::{
    serialize, serialize_with_minidom, ParserLimits, StreamCondition, StreamEvent, StreamParseError, StreamParser,
};

/// Stream header for the re-parse. It declares no default namespace, so the serialised stanza
/// must carry its own `xmlns` (as it would when routed into another stream).
const ROUNDTRIP_HEADER: &[u8] =
    b"<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let split_seed = data[0];
    let limits = limits_from(data[1]);
    let stream = &data[2..];

    // Chunked feed.
    let mut parser = StreamParser::new(limits.clone());
    let (chunked_events, chunked_result) = feed_in_chunks(&mut parser, stream, split_seed);
    // Once the stream is over (error or `</stream:stream>`), feeding more is a harmless no-op.
    let ended =
        chunked_result.is_err() || matches!(chunked_events.last(), Some(StreamEvent::StreamClose));
    if ended {
        let mut after = Vec::new();
        assert_eq!(parser.feed(b"<x/></stream:stream>", &mut after), Ok(()));
        assert!(after.is_empty(), "events after the stream ended: {after:?}");
    }

    // Same bytes in one call, on the same parser after reset().
    parser.reset();
    let mut whole_events = Vec::new();
    let whole_result = parser.feed(stream, &mut whole_events);

    let chunked = normalise_events(&chunked_events);
    let whole = normalise_events(&whole_events);

    for split in [0, split_seed] {
        let mut reference = StreamParser::new(limits.clone()).with_fast_path(false);
        let (reference_events, reference_result) = feed_in_chunks(&mut reference, stream, split);
        assert_eq!(
            condition(&reference_result),
            condition(&whole_result),
            "the fast path changed the outcome: rxml alone {reference_result:?}, with it {whole_result:?}"
        );
        assert_eq!(
            normalise_events(&reference_events),
            whole,
            "the fast path read the stream differently from rxml"
        );
    }
    assert_eq!(
        condition(&chunked_result),
        condition(&whole_result),
        "split changed the outcome: chunked {chunked_result:?}, whole {whole_result:?}"
    );
    assert_eq!(chunked, whole, "split changed the events");

    for event in &chunked_events {
        if let StreamEvent::Stanza(element) = event {
            round_trip(element, &limits);
        }
    }
});

/// Feeds `stream` cut as `split_seed` says (see [`Chunks`]) until the end or an error.
fn feed_in_chunks(
    parser: &mut StreamParser,
    stream: &[u8],
    split_seed: u8,
) -> (Vec<StreamEvent>, Result<(), StreamParseError>) {
    let mut events = Vec::new();
    for chunk in Chunks::new(stream, split_seed) {
        let result = parser.feed(chunk, &mut events);
        if result.is_err() {
            return (events, result);
        }
    }
    (events, Ok(()))
}

fn limits_from(selector: u8) -> ParserLimits {
    if selector < 0x80 {
        return ParserLimits::default();
    }
    let b = selector as usize;
    ParserLimits {
        max_stanza_bytes: 32 << (b & 7),      // 32..=4096
        max_depth: 1 + ((b >> 3) & 7),        // 1..=8
        max_attributes: (b >> 2) & 7,         // 0..=7
        max_token_bytes: 2 << ((b >> 4) & 7), // 2..=256
    }
}

/// Splits `data` into chunks whose sizes come from a xorshift PRNG seeded by `seed`.
struct Chunks<'a> {
    rest: &'a [u8],
    state: u32,
    max: usize,
}

impl<'a> Chunks<'a> {
    fn new(data: &'a [u8], seed: u8) -> Self {
        Chunks {
            rest: data,
            state: 0x9E37_79B9 ^ u32::from(seed).wrapping_mul(0x0101_0101),
            max: if seed == 0 {
                usize::MAX
            } else {
                1 << (seed & 7)
            },
        }
    }
}

impl<'a> Iterator for Chunks<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        let len = if self.max == usize::MAX {
            self.rest.len()
        } else {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 17;
            self.state ^= self.state << 5;
            1 + (self.state as usize) % self.max
        };
        let (chunk, rest) = self.rest.split_at(len.min(self.rest.len()));
        self.rest = rest;
        Some(chunk)
    }
}

fn condition(result: &Result<(), StreamParseError>) -> Option<StreamCondition> {
    result.as_ref().err().map(StreamParseError::condition)
}

/// A comparable view of an element tree: adjacent text nodes merged and empty ones dropped, since
/// how text is cut into nodes depends on where the input was split and is not significant.
#[derive(Debug, PartialEq)]
enum Tree {
    Element {
        name: String,
        ns: String,
        attrs: Vec<(String, String, String)>,
        children: Vec<Tree>,
    },
    Text(String),
}

fn tree(element: &Element) -> Tree {
    let mut attrs: Vec<(String, String, String)> = element
        .attrs()
        .iter()
        .map(|((ns, name), value)| (ns.to_string(), name.to_string(), value.clone()))
        .collect();
    attrs.sort();
    let mut children: Vec<Tree> = Vec::new();
    for node in element.nodes() {
        match node {
            Node::Element(child) => children.push(tree(child)),
            Node::Text(text) if text.is_empty() => {}
            Node::Text(text) => match children.last_mut() {
                Some(Tree::Text(previous)) => previous.push_str(text),
                _ => children.push(Tree::Text(text.clone())),
            },
        }
    }
    Tree::Element {
        name: element.name().to_string(),
        ns: element.ns(),
        attrs,
        children,
    }
}

#[derive(Debug, PartialEq)]
enum Ev {
    Open(String, String, Vec<(String, String)>),
    Stanza(Tree),
    Close,
}

fn normalise_events(events: &[StreamEvent]) -> Vec<Ev> {
    events
        .iter()
        .map(|event| match event {
            StreamEvent::StreamOpen {
                namespace,
                name,
                attributes,
                ..
            } => Ev::Open(namespace.clone(), name.clone(), attributes.clone()),
            StreamEvent::Stanza(element) => Ev::Stanza(tree(element)),
            StreamEvent::StreamClose => Ev::Close,
        })
        .collect()
}

fn depth(element: &Element) -> usize {
    1 + element.children().map(depth).max().unwrap_or(0)
}

fn round_trip(element: &Element, limits: &ParserLimits) {
    let bytes = serialize(element);
    let shown = String::from_utf8_lossy(&bytes);
    assert!(
        !bytes.is_empty(),
        "serialize() failed on a stanza the parser produced: {element:?}"
    );
    assert_eq!(
        shown,
        String::from_utf8_lossy(&serialize_with_minidom(element)),
        "the fast path and minidom disagree on {element:?}"
    );

    let mut input = ROUNDTRIP_HEADER.to_vec();
    input.extend_from_slice(&bytes);
    // Serialising may legitimately grow the stanza (escaping, CDATA turned into text), so the
    // re-parse gets limits that fit what was written; nesting and attribute counts do not grow.
    // The stanza-size budget covers the whole input: the parser counts the XML declaration and
    // the stream header against it too (they are consumed before the counter resets at the
    // header's start event).
    let reparse_limits = ParserLimits {
        max_stanza_bytes: input.len() + 64,
        max_depth: limits.max_depth.max(depth(element)),
        max_attributes: usize::MAX,
        // rxml reserves this much up front, so keep it bounded.
        max_token_bytes: bytes.len() + ROUNDTRIP_HEADER.len() + 64,
    };
    let mut parser = StreamParser::new(reparse_limits);
    let mut events = Vec::new();
    if let Err(e) = parser.feed(&input, &mut events) {
        panic!("re-parsing the serialised stanza failed: {e}\nserialised: {shown}\nelement: {element:?}");
    }
    let stanzas: Vec<&Element> = events
        .iter()
        .filter_map(|event| match event {
            StreamEvent::Stanza(el) => Some(el),
            _ => None,
        })
        .collect();
    assert_eq!(
        stanzas.len(),
        1,
        "serialised stanza did not re-parse as exactly one stanza\nserialised: {shown}\nevents: {events:?}"
    );
    let again = stanzas[0];
    assert_eq!(
        (again.name(), again.ns()),
        (element.name(), element.ns()),
        "round trip changed the stanza's name or namespace\nserialised: {shown}"
    );
    assert_eq!(
        tree(again),
        tree(element),
        "round trip changed the stanza's content\nserialised: {shown}"
    );
}
