//! Incremental parsing of an XMPP XML stream (RFC 6120 §4 and §11) into top-level stanzas, with
//! the limits a server needs against hostile peers. No I/O: bytes go in, events come out, so every
//! transport (TCP, TLS, WebSocket, BOSH) and the fuzzer drive the same code.
//!
//! XML restrictions of RFC 6120 §11.1 (no DTDs, entity declarations, processing instructions or
//! comments) are enforced by `rxml`, which implements exactly that restricted profile.

use minidom::rxml::{self, Event, Parse, WithOptions};
use minidom::Element;

mod condition;

pub use condition::StreamCondition;
pub use minidom;

/// Limits applied while parsing one stream. Every breach is reported as
/// [`StreamParseError::PolicyViolation`], which maps to the `<policy-violation/>` stream error.
#[derive(Clone, Debug)]
pub struct ParserLimits {
    /// Largest serialised size of one top-level stanza, in bytes.
    pub max_stanza_bytes: usize,
    /// Deepest element nesting inside a stanza (the stanza itself is depth 1).
    pub max_depth: usize,
    /// Most attributes on one element.
    pub max_attributes: usize,
    /// Longest single name, attribute value or text token.
    pub max_token_bytes: usize,
}

impl Default for ParserLimits {
    fn default() -> Self {
        ParserLimits {
            max_stanza_bytes: 256 * 1024,
            max_depth: 32,
            max_attributes: 64,
            max_token_bytes: 64 * 1024,
        }
    }
}

/// Limits on the parsed tree of the stanza being read, kept apart from [`ParserLimits`] so that
/// callers that only set those get these safe defaults.
///
/// Bytes alone do not bound memory: an empty element costs four bytes on the wire (`<a/>`) but a
/// few hundred once parsed, so a 256 KiB stanza of them became ≈ 13 MiB of tree. The parser counts
/// the elements of the stanza being read and estimates the memory its tree holds; since one
/// connection parses one stanza at a time, `max_memory` bounds the parser's memory per
/// connection (plus its fixed buffers). A breach is [`StreamParseError::PolicyViolation`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreeLimits {
    /// Most elements in one stanza, the stanza itself included.
    pub max_elements: usize,
    /// Largest estimated memory of one stanza's parsed tree, in bytes.
    pub max_memory: usize,
}

impl Default for TreeLimits {
    fn default() -> Self {
        TreeLimits {
            max_elements: 4096,
            max_memory: 1024 * 1024,
        }
    }
}

/// Estimated heap cost of one parsed element: the element itself in its parent's child vector
/// (half again for the vector's growth slack), its name and namespace strings, and per
/// attribute a map entry with two strings. Allocator overhead is counted as 16 bytes per
/// allocation. An estimate, deliberately on the high side, not an exact figure.
fn element_cost(name: &str, namespace: &str, attributes: &minidom::rxml::AttrMap) -> usize {
    const ALLOCATION: usize = 16;
    let node = std::mem::size_of::<minidom::Node>();
    let attribute_entry = 2 * std::mem::size_of::<String>() + 32;
    let attributes: usize = attributes
        .iter()
        .map(|((_, attr), value)| attribute_entry + attr.len() + value.len() + 2 * ALLOCATION)
        .sum();
    node * 3 / 2 + name.len() + namespace.len() + 2 * ALLOCATION + attributes
}

/// Estimated heap cost of one text node.
fn text_cost(text: &str) -> usize {
    std::mem::size_of::<minidom::Node>() * 3 / 2 + text.len() + 16
}

/// What the parser found in the stream.
#[derive(Debug)]
pub enum StreamEvent {
    /// The stream header (`<stream:stream …>`, or `<open/>` on WebSocket when the transport
    /// feeds framed elements): its qualified name and attributes.
    StreamOpen {
        namespace: String,
        name: String,
        attributes: Vec<(String, String)>,
        /// The default namespace declared on the header (`xmlns='jabber:client'`), which
        /// decides the content namespace of the stream (RFC 6120 §4.8.2).
        default_namespace: Option<String>,
    },
    /// One complete top-level element.
    Stanza(Element),
    /// The peer closed its stream (`</stream:stream>`).
    StreamClose,
}

/// Why the stream cannot go on; each maps to one RFC 6120 §4.9.3 stream error condition.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StreamParseError {
    /// Not well-formed XML (`<not-well-formed/>`), including invalid UTF-8 and bad namespaces.
    #[error("not well-formed: {0}")]
    NotWellFormed(String),
    /// Forbidden XML features: DTD, entity declarations, processing instructions, comments
    /// (`<restricted-xml/>`).
    #[error("restricted XML: {0}")]
    RestrictedXml(String),
    /// A configured limit was exceeded (`<policy-violation/>`, RFC 6120 §4.9.3.14: "a stanza
    /// exceeds a configured size limit"; the text names the limit).
    #[error("policy violation: {0}")]
    PolicyViolation(String),
}

impl StreamParseError {
    /// The RFC 6120 stream error condition to close the stream with.
    pub fn condition(&self) -> StreamCondition {
        match self {
            StreamParseError::NotWellFormed(_) => StreamCondition::NotWellFormed,
            StreamParseError::RestrictedXml(_) => StreamCondition::RestrictedXml,
            StreamParseError::PolicyViolation(_) => StreamCondition::PolicyViolation,
        }
    }
}

/// Incremental stream parser: feed it whatever bytes arrived, get back whole stanzas.
///
/// A stanza may be split across reads at any byte, including inside a multi-byte UTF-8
/// character; the parser keeps the partial state until the rest arrives.
pub struct StreamParser {
    parser: rxml::Parser,
    limits: ParserLimits,
    tree_limits: TreeLimits,
    /// Elements of the stanza being read so far, and the estimated memory of its tree.
    stanza_elements: usize,
    stanza_memory: usize,
    /// Elements currently open inside a stanza; `stack[0]` is the stanza itself.
    stack: Vec<Element>,
    /// Whether the stream root (`<stream:stream>`) has been opened.
    root_open: bool,
    /// Bytes consumed since the last complete stanza; bounded by `max_stanza_bytes`.
    stanza_bytes: usize,
    /// Every byte fed since the parser was made, stream restarts included: what a connection
    /// has sent in all, for limits on unauthenticated peers.
    fed: u64,
    /// Set once an error or the end of stream has been reported; nothing more is parsed.
    finished: bool,
    /// Raw bytes before the stream header has been parsed, to read its default namespace,
    /// which the namespace-resolving parser does not report.
    header_bytes: Vec<u8>,
}

impl StreamParser {
    pub fn new(limits: ParserLimits) -> Self {
        let options = rxml::Options {
            max_token_length: limits.max_token_bytes,
            ..Default::default()
        };
        StreamParser {
            parser: rxml::Parser::with_options(options),
            limits,
            tree_limits: TreeLimits::default(),
            stanza_elements: 0,
            stanza_memory: 0,
            stack: Vec::new(),
            root_open: false,
            stanza_bytes: 0,
            fed: 0,
            finished: false,
            header_bytes: Vec::new(),
        }
    }

    /// Forget everything about the current stream; used for the stream restarts after STARTTLS
    /// and SASL (RFC 6120 §5.4.3.3, §6.4.6).
    pub fn reset(&mut self) {
        let tree_limits = self.tree_limits;
        let fed = self.fed;
        *self = StreamParser::new(self.limits.clone()).with_tree_limits(tree_limits);
        self.fed = fed;
    }

    /// Bytes fed in all, across stream restarts.
    pub fn bytes_fed(&self) -> u64 {
        self.fed
    }

    /// Replace the default [`TreeLimits`].
    pub fn with_tree_limits(mut self, tree_limits: TreeLimits) -> Self {
        self.tree_limits = tree_limits;
        self
    }

    pub fn limits(&self) -> &ParserLimits {
        &self.limits
    }

    pub fn tree_limits(&self) -> &TreeLimits {
        &self.tree_limits
    }

    /// Count a new element or text node of the stanza being read against [`TreeLimits`].
    fn account(&mut self, elements: usize, memory: usize) -> Result<(), StreamParseError> {
        self.stanza_elements += elements;
        self.stanza_memory += memory;
        if self.stanza_elements > self.tree_limits.max_elements {
            return Err(StreamParseError::PolicyViolation(format!(
                "more than {} elements in one stanza",
                self.tree_limits.max_elements
            )));
        }
        if self.stanza_memory > self.tree_limits.max_memory {
            return Err(StreamParseError::PolicyViolation(format!(
                "stanza needs more than {} bytes of memory once parsed",
                self.tree_limits.max_memory
            )));
        }
        Ok(())
    }

    /// Free the parser's scratch buffers; worth it between stanzas on connections that will
    /// probably stay idle for a while.
    pub fn release_temporaries(&mut self) {
        self.parser.release_temporaries();
        self.stack.shrink_to_fit();
    }

    /// Whether part of a stanza has been read but not its end.
    pub fn in_stanza(&self) -> bool {
        !self.stack.is_empty()
    }

    /// Parse `data` and append every complete event to `out`. On error the stream is over: the
    /// caller sends the matching stream error and closes.
    pub fn feed(
        &mut self,
        mut data: &[u8],
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), StreamParseError> {
        if self.finished {
            return Ok(());
        }
        self.fed = self.fed.saturating_add(data.len() as u64);
        if !self.root_open && self.header_bytes.is_empty() {
            // Whitespace before the stream header is dropped as it comes: nothing to keep and
            // nothing to count against the stanza limit, so the check below sees the header's
            // first byte however the bytes were split (found by fuzzing: whitespace split off
            // ahead of stray text was a policy violation, in one piece a malformed stream).
            let start = data
                .iter()
                .position(|b| !b" \t\r\n".contains(b))
                .unwrap_or(data.len());
            data = &data[start..];
        }
        if !self.root_open && self.header_bytes.len() < self.limits.max_stanza_bytes {
            self.header_bytes.extend_from_slice(data);
            if let Err(e) = check_prolog_start(&self.header_bytes) {
                self.finished = true;
                return Err(e);
            }
        }
        loop {
            let before = data.len();
            let result = self.parser.parse(&mut data, false);
            self.stanza_bytes += before - data.len();
            if self.stanza_bytes > self.limits.max_stanza_bytes {
                self.finished = true;
                return Err(StreamParseError::PolicyViolation(format!(
                    "stanza larger than {} bytes",
                    self.limits.max_stanza_bytes
                )));
            }
            match result {
                Ok(Some(event)) => {
                    if let Err(e) = self.handle_event(event, out) {
                        self.finished = true;
                        return Err(e);
                    }
                    if self.finished {
                        return Ok(());
                    }
                }
                Ok(None) => {
                    self.finished = true;
                    return Ok(());
                }
                Err(rxml::error::EndOrError::NeedMoreData) => return Ok(()),
                Err(rxml::error::EndOrError::Error(e)) => {
                    self.finished = true;
                    return Err(classify(e));
                }
            }
        }
    }

    fn handle_event(
        &mut self,
        event: Event,
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), StreamParseError> {
        match event {
            Event::XmlDeclaration(..) => Ok(()),
            Event::StartElement(_, (namespace, name), attributes) => {
                if attributes.len() > self.limits.max_attributes {
                    return Err(StreamParseError::PolicyViolation(format!(
                        "more than {} attributes on <{}>",
                        self.limits.max_attributes, name
                    )));
                }
                if !self.root_open {
                    self.root_open = true;
                    self.stanza_bytes = 0;
                    let default_namespace = default_namespace_of(&self.header_bytes, &name);
                    self.header_bytes = Vec::new();
                    out.push(StreamEvent::StreamOpen {
                        default_namespace,
                        namespace: namespace.to_string(),
                        name: name.to_string(),
                        attributes: attributes
                            .into_iter()
                            .map(|((ns, attr), value)| {
                                let key = if ns.is_none() {
                                    attr.to_string()
                                } else if ns.as_str() == "http://www.w3.org/XML/1998/namespace" {
                                    format!("xml:{attr}")
                                } else {
                                    format!("{{{}}}{attr}", ns.as_str())
                                };
                                (key, value)
                            })
                            .collect(),
                    });
                    return Ok(());
                }
                if self.stack.len() >= self.limits.max_depth {
                    return Err(StreamParseError::PolicyViolation(format!(
                        "elements nested deeper than {}",
                        self.limits.max_depth
                    )));
                }
                self.account(1, element_cost(&name, namespace.as_str(), &attributes))?;
                let mut element = Element::bare(name.to_string(), namespace.to_string());
                *element.attrs_mut() = attributes;
                self.stack.push(element);
                Ok(())
            }
            Event::Text(_, text) => {
                // Whitespace between stanzas is allowed keep-alive; other text at stream level
                // has no meaning and is dropped, as servers commonly do.
                if !self.stack.is_empty() {
                    self.account(0, text_cost(&text))?;
                }
                if let Some(top) = self.stack.last_mut() {
                    top.append_text_node(text);
                }
                Ok(())
            }
            Event::EndElement(_) => {
                match self.stack.pop() {
                    Some(element) => {
                        if let Some(parent) = self.stack.last_mut() {
                            parent.append_child(element);
                        } else {
                            self.stanza_bytes = 0;
                            self.stanza_elements = 0;
                            self.stanza_memory = 0;
                            out.push(StreamEvent::Stanza(element));
                        }
                    }
                    None => {
                        // The root element closed: end of stream.
                        self.finished = true;
                        out.push(StreamEvent::StreamClose);
                    }
                }
                Ok(())
            }
        }
    }
}

/// A stream starts with markup (after whitespace). `rxml` rejects text there only once the text
/// ends at the next `<`, so an HTTP request sent to the XMPP port (`GET / HTTP/1.1`) would keep
/// the connection open until a timeout; this rejects it at its first byte.
fn check_prolog_start(header: &[u8]) -> Result<(), StreamParseError> {
    match header.iter().find(|b| !b" \t\r\n".contains(b)) {
        None | Some(b'<') => Ok(()),
        Some(_) => {
            let line = header.split(|b| *b == b'\n').next().unwrap_or_default();
            let hint = if line.windows(5).any(|w| w == b"HTTP/") {
                " (an HTTP request on the XMPP port?)"
            } else {
                ""
            };
            Err(StreamParseError::NotWellFormed(format!(
                "text before the stream header{hint}"
            )))
        }
    }
}

/// Find `xmlns='…'` on the first element named `local` (possibly prefixed) in `header`, which
/// the parser has already found well-formed.
fn default_namespace_of(header: &[u8], local: &str) -> Option<String> {
    let text = String::from_utf8_lossy(header);
    let start = text.match_indices('<').find_map(|(i, _)| {
        let rest = &text[i + 1..];
        let name_end = rest.find(|c: char| c.is_whitespace() || c == '>' || c == '/')?;
        let name = &rest[..name_end];
        let bare = name.rsplit(':').next().unwrap_or(name);
        (bare == local && !name.starts_with('?') && !name.starts_with('!'))
            .then_some(i + 1 + name_end)
    })?;
    let tag = &text[start..];
    let tag = &tag[..tag.find('>').unwrap_or(tag.len())];
    let mut rest = tag;
    while let Some(position) = rest.find("xmlns") {
        let after = rest[position + 5..].trim_start();
        rest = &rest[position + 5..];
        let Some(after) = after.strip_prefix('=') else {
            continue;
        };
        let after = after.trim_start();
        let quote = after.chars().next()?;
        if quote != '\'' && quote != '"' {
            continue;
        }
        let value = &after[1..];
        return Some(value[..value.find(quote)?].to_string());
    }
    None
}

fn classify(error: rxml::Error) -> StreamParseError {
    match error {
        rxml::Error::RestrictedXml(what) => {
            if what.contains("long") {
                StreamParseError::PolicyViolation(format!("XML token too long ({what})"))
            } else {
                StreamParseError::RestrictedXml(what.to_string())
            }
        }
        // `<!DOCTYPE` and `<!ENTITY` reach the lexer as a `<!` that starts neither CDATA nor a
        // comment: markup declarations, which RFC 6120 §11.1 forbids.
        rxml::Error::InvalidSyntax(what) if what.contains("cdata or comment") => {
            StreamParseError::RestrictedXml("DTD or markup declaration".into())
        }
        rxml::Error::UndeclaredEntity => {
            StreamParseError::RestrictedXml("undeclared entity reference".into())
        }
        other => StreamParseError::NotWellFormed(other.to_string()),
    }
}

/// Parse one element that Salon stored itself (an archived message, an offline message, a
/// vCard), in the namespace `default_namespace` when it has no `xmlns` of its own. Stored
/// text was checked when it arrived, so only the depth limit applies.
pub fn parse_stored(text: &str, default_namespace: &str) -> Option<Element> {
    let mut parser = StreamParser::new(ParserLimits {
        max_stanza_bytes: usize::MAX / 2,
        max_token_bytes: 16 * 1024 * 1024,
        ..ParserLimits::default()
    });
    let mut events = Vec::new();
    let wrapper = format!("<stream xmlns='{}'>", escape(default_namespace));
    parser.feed(wrapper.as_bytes(), &mut events).ok()?;
    parser.feed(text.as_bytes(), &mut events).ok()?;
    events.into_iter().find_map(|event| match event {
        StreamEvent::Stanza(element) => Some(element),
        _ => None,
    })
}

/// Serialise one element to bytes, as it goes on the wire inside a stream.
pub fn serialize(element: &Element) -> Vec<u8> {
    let mut buffer = Vec::with_capacity(256);
    // Writing to a Vec cannot fail on I/O; an error here would mean an element we built
    // ourselves is invalid, which is a bug worth surfacing in logs rather than a panic.
    if let Err(e) = element.write_to(&mut buffer) {
        eprintln!("salon-xml: cannot serialise <{}>: {e}", element.name());
        buffer.clear();
    }
    buffer
}

/// Escape text for use in XML character data or a single/double-quoted attribute value.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &[u8] = b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";

    fn parse_all(chunks: &[&[u8]]) -> (Vec<StreamEvent>, Result<(), StreamParseError>) {
        let mut parser = StreamParser::new(ParserLimits::default());
        let mut out = Vec::new();
        for chunk in chunks {
            if let Err(e) = parser.feed(chunk, &mut out) {
                return (out, Err(e));
            }
        }
        (out, Ok(()))
    }

    /// Fuzzing regression (fuzz/regressions/stream_parser-whitespace-then-text): 126 bytes of
    /// whitespace and then text, under a 32-byte stanza limit, gave a policy violation when
    /// the whitespace came in small chunks and a malformed stream in one piece. Whitespace
    /// before the header is dropped now: text there is a malformed stream either way.
    #[test]
    fn whitespace_before_the_header_does_not_change_the_outcome_of_a_split() {
        let limits = ParserLimits {
            max_stanza_bytes: 32,
            max_depth: 6,
            max_attributes: 2,
            max_token_bytes: 128,
        };
        let mut input = vec![b'\t'; 126];
        input.push(b'x');
        let mut whole = StreamParser::new(limits.clone());
        let whole = whole.feed(&input, &mut Vec::new());
        let mut chunked = StreamParser::new(limits);
        let mut result = Ok(());
        for chunk in input.chunks(5) {
            result = chunked.feed(chunk, &mut Vec::new());
            if result.is_err() {
                break;
            }
        }
        for outcome in [whole, result] {
            assert!(
                matches!(outcome, Err(StreamParseError::NotWellFormed(_))),
                "{outcome:?}"
            );
        }
        // Whitespace ahead of a real header still opens the stream.
        let mut input = b"\n\n  ".to_vec();
        input.extend_from_slice(HEADER);
        let (events, result) = parse_all(&[&input[..3], &input[3..]]);
        assert_eq!(result, Ok(()));
        assert!(matches!(events[0], StreamEvent::StreamOpen { .. }));
    }

    #[test]
    fn stanza_split_at_every_byte() {
        let mut input = HEADER.to_vec();
        input.extend_from_slice(
            "<message to='a@b'><body>héllo ✓ &amp; bye</body></message></stream:stream>".as_bytes(),
        );
        let chunks: Vec<&[u8]> = input.chunks(1).collect();
        let (events, result) = parse_all(&chunks);
        result.unwrap();
        assert!(
            matches!(&events[0], StreamEvent::StreamOpen { name, attributes, default_namespace, .. } if name == "stream" && attributes.iter().any(|(k, v)| k == "to" && v == "localhost") && default_namespace.as_deref() == Some("jabber:client"))
        );
        match &events[1] {
            StreamEvent::Stanza(el) => {
                assert_eq!(el.name(), "message");
                assert_eq!(el.ns(), "jabber:client");
                assert_eq!(el.attr("to"), Some("a@b"));
                assert_eq!(
                    el.get_child("body", "jabber:client").unwrap().text(),
                    "héllo ✓ & bye"
                );
            }
            other => panic!("expected stanza, got {other:?}"),
        }
        assert!(matches!(events[2], StreamEvent::StreamClose));
    }

    #[test]
    fn oversized_stanza_is_policy_violation() {
        let mut parser = StreamParser::new(ParserLimits {
            max_stanza_bytes: 1000,
            ..ParserLimits::default()
        });
        let mut out = Vec::new();
        parser.feed(HEADER, &mut out).unwrap();
        let big = format!("<message><body>{}</body></message>", "x".repeat(2000));
        let err = parser.feed(big.as_bytes(), &mut out).unwrap_err();
        assert_eq!(err.condition(), "policy-violation");
    }

    /// 60,000 empty elements fit in 240 KB but became ≈ 13 MiB of tree: the element cap ends the
    /// stream long before the byte limit would.
    #[test]
    fn empty_element_flood_is_policy_violation() {
        let mut parser = StreamParser::new(ParserLimits::default());
        let mut out = Vec::new();
        parser.feed(HEADER, &mut out).unwrap();
        parser.feed(b"<message to='a@b'>", &mut out).unwrap();
        let flood = "<a/>".repeat(60_000);
        let err = parser.feed(flood.as_bytes(), &mut out).unwrap_err();
        assert_eq!(err.condition(), "policy-violation");
        assert!(err.to_string().contains("elements"), "{err}");
        assert!(out.iter().all(|e| !matches!(e, StreamEvent::Stanza(_))));
    }

    /// Elements with many attributes stay under the element cap but not under the memory cap.
    #[test]
    fn attribute_flood_hits_the_memory_cap() {
        let mut parser = StreamParser::new(ParserLimits::default());
        let mut out = Vec::new();
        parser.feed(HEADER, &mut out).unwrap();
        parser.feed(b"<message to='a@b'>", &mut out).unwrap();
        let attributes: String = (0..60).map(|i| format!(" b{i}=''")).collect();
        let element = format!("<a{attributes}/>");
        let flood = element.repeat(600);
        assert!(flood.len() < ParserLimits::default().max_stanza_bytes);
        assert!(600 < TreeLimits::default().max_elements);
        let err = parser.feed(flood.as_bytes(), &mut out).unwrap_err();
        assert_eq!(err.condition(), "policy-violation");
        assert!(err.to_string().contains("memory"), "{err}");
    }

    /// The counts are per stanza: many stanzas, each under the caps, pass; and a stream restart
    /// keeps the configured caps.
    #[test]
    fn tree_limits_apply_per_stanza_and_survive_reset() {
        let limits = TreeLimits {
            max_elements: 10,
            max_memory: 64 * 1024,
        };
        let mut parser = StreamParser::new(ParserLimits::default()).with_tree_limits(limits);
        let mut out = Vec::new();
        parser.feed(HEADER, &mut out).unwrap();
        let stanza = format!("<message>{}</message>", "<a/>".repeat(9));
        for _ in 0..100 {
            parser.feed(stanza.as_bytes(), &mut out).unwrap();
        }
        assert_eq!(
            out.iter()
                .filter(|e| matches!(e, StreamEvent::Stanza(_)))
                .count(),
            100
        );
        parser.reset();
        assert_eq!(parser.tree_limits(), &limits);
        parser.feed(HEADER, &mut out).unwrap();
        let over = format!("<message>{}</message>", "<a/>".repeat(10));
        let err = parser.feed(over.as_bytes(), &mut out).unwrap_err();
        assert_eq!(err.condition(), "policy-violation");
    }

    /// A large text body (an avatar, a long message) is accounted by its length and passes.
    #[test]
    fn large_text_within_the_caps_passes() {
        let mut parser = StreamParser::new(ParserLimits::default());
        let mut out = Vec::new();
        parser.feed(HEADER, &mut out).unwrap();
        let body = format!("<message><body>{}</body></message>", "x".repeat(250_000));
        parser.feed(body.as_bytes(), &mut out).unwrap();
        assert!(matches!(out.last(), Some(StreamEvent::Stanza(_))));
    }

    #[test]
    fn deep_nesting_is_policy_violation() {
        let mut input = HEADER.to_vec();
        input.extend_from_slice("<a>".repeat(100).as_bytes());
        let (_, result) = parse_all(&[&input]);
        assert_eq!(result.unwrap_err().condition(), "policy-violation");
    }

    #[test]
    fn doctype_and_entities_are_restricted() {
        for bad in [
            &b"<?xml version='1.0'?><!DOCTYPE foo [<!ENTITY x 'y'>]><stream:stream xmlns:stream='http://etherx.jabber.org/streams'>"[..],
            &b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'><?php echo 1 ?>"[..],
            &b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'><message>&xxe;</message>"[..],
        ] {
            let (_, result) = parse_all(&[bad]);
            let err = result.unwrap_err();
            assert_eq!(
                err.condition(),
                "restricted-xml",
                "input {:?}: {err:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn invalid_utf8_is_not_well_formed() {
        let mut input = HEADER.to_vec();
        input.extend_from_slice(b"<message><body>\xff\xfe</body></message>");
        let (_, result) = parse_all(&[&input]);
        assert_eq!(result.unwrap_err().condition(), "not-well-formed");
    }

    #[test]
    fn http_request_is_not_well_formed_at_once() {
        for request in [
            &b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\n",
            b"\r\nPOST /http-bind HTTP/1.1\r\n",
        ] {
            let (_, result) = parse_all(&[request]);
            let err = result.unwrap_err();
            assert_eq!(err.condition(), "not-well-formed", "{request:?}");
        }
        let (_, result) = parse_all(&[b"GET / HTTP/1.1\r\n"]);
        assert!(result.unwrap_err().to_string().contains("HTTP"));
        // Byte by byte: the first byte is enough.
        let (_, result) = parse_all(&[b"G"]);
        assert_eq!(result.unwrap_err().condition(), "not-well-formed");
    }

    #[test]
    fn mismatched_tags_are_not_well_formed() {
        let mut input = HEADER.to_vec();
        input.extend_from_slice(b"<message><body></message>");
        let (_, result) = parse_all(&[&input]);
        assert_eq!(result.unwrap_err().condition(), "not-well-formed");
    }

    #[test]
    fn reset_allows_a_new_stream_header() {
        let mut parser = StreamParser::new(ParserLimits::default());
        let mut out = Vec::new();
        parser.feed(HEADER, &mut out).unwrap();
        parser.reset();
        parser.feed(HEADER, &mut out).unwrap();
        assert_eq!(
            out.iter()
                .filter(|e| matches!(e, StreamEvent::StreamOpen { .. }))
                .count(),
            2
        );
    }

    #[test]
    fn stored_elements_parse_back_in_their_namespace() {
        let element = parse_stored(
            "<message to='a@b'><body>x &amp; y</body></message>",
            "jabber:client",
        )
        .unwrap();
        assert_eq!(element.ns(), "jabber:client");
        assert_eq!(
            element.get_child("body", "jabber:client").unwrap().text(),
            "x & y"
        );
        let vcard = parse_stored(
            "<vCard xmlns='vcard-temp'><FN>Al</FN></vCard>",
            "jabber:client",
        );
        assert_eq!(vcard.unwrap().ns(), "vcard-temp");
        assert!(parse_stored("<broken>", "jabber:client").is_none());
    }

    #[test]
    fn serialize_round_trips() {
        let mut input = HEADER.to_vec();
        input.extend_from_slice(b"<iq type='get' id='1'><query xmlns='jabber:iq:roster'/></iq>");
        let (events, result) = parse_all(&[&input]);
        result.unwrap();
        let StreamEvent::Stanza(el) = &events[1] else {
            panic!("no stanza")
        };
        let text = String::from_utf8(serialize(el)).unwrap();
        assert!(text.contains("jabber:iq:roster"), "{text}");
        assert!(text.starts_with("<iq"), "{text}");
    }
}
