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

mod fast_read;
mod write;
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
    /// Whether markup (anything but whitespace) has come since the last complete stanza while
    /// no stanza element is open yet: a start tag still arriving (see [`Self::stanza_begun`]).
    markup_pending: bool,
    /// Every byte fed since the parser was made, stream restarts included: what a connection
    /// has sent in all, for limits on unauthenticated peers.
    fed: u64,
    /// Set once an error or the end of stream has been reported; nothing more is parsed.
    finished: bool,
    /// Raw bytes before the stream header has been parsed, to read its default namespace,
    /// which the namespace-resolving parser does not report.
    header_bytes: Vec<u8>,
    /// The namespace stanzas without an `xmlns` of their own are in (the stream header's
    /// default one), for the fast path; `None` turns the fast path off.
    content_namespace: Option<String>,
    /// rxml has read nothing since the last stanza (or the header) ended: the fast path may
    /// read the next one instead, from the same position.
    at_boundary: bool,
    /// Whether the fast path is used at all (off to compare it with rxml alone).
    fast_path: bool,
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
            markup_pending: false,
            fed: 0,
            finished: false,
            header_bytes: Vec::new(),
            content_namespace: None,
            at_boundary: false,
            fast_path: true,
        }
    }

    /// Forget everything about the current stream; used for the stream restarts after STARTTLS
    /// and SASL (RFC 6120 §5.4.3.3, §6.4.6).
    pub fn reset(&mut self) {
        let tree_limits = self.tree_limits;
        let fed = self.fed;
        let fast_path = self.fast_path;
        *self = StreamParser::new(self.limits.clone())
            .with_tree_limits(tree_limits)
            .with_fast_path(fast_path);
        self.fed = fed;
    }

    /// Whether whole plain stanzas are read by the fast path (`fast_read.rs`; on by default)
    /// rather than by rxml. Off, every byte goes through rxml: what the fuzz target compares
    /// the fast path with.
    pub fn with_fast_path(mut self, on: bool) -> Self {
        self.fast_path = on;
        self
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

    /// Whether a stanza has begun and not ended: like [`Self::in_stanza`], but also while its
    /// start tag is still arriving (or stray text at stream level is). Whitespace between
    /// stanzas (keepalives, RFC 6120 §4.6.4) does not begin one. What a transport reads to
    /// bound how long a started stanza may take to arrive.
    pub fn stanza_begun(&self) -> bool {
        !self.finished && self.root_open && (!self.stack.is_empty() || self.markup_pending)
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
            let start = data.iter().position(is_markup).unwrap_or(data.len());
            data = &data[start..];
        }
        if !self.root_open && self.header_bytes.len() < self.limits.max_stanza_bytes {
            self.header_bytes.extend_from_slice(data);
            if let Err(e) = check_prolog_start(&self.header_bytes) {
                self.finished = true;
                return Err(e);
            }
        }
        // Where the bytes after the last stanza (or the stream header) begin in `input`, when
        // one ended in this call: what comes after it tells whether another has begun.
        let input = data;
        let mut boundary = None;
        loop {
            if self.at_boundary && self.read_plain_stanza(&mut data, out) {
                boundary = Some(input.len() - data.len());
                continue;
            }
            if self.at_boundary && data.is_empty() {
                // At a boundary rxml holds nothing back, so parsing nothing would only make
                // its lexer reserve a scratch buffer of the longest token allowed (a large
                // allocation, freed again by `release_temporaries`): 4–5 k instructions per
                // message read by the fast path.
                self.note_pending_markup(input, boundary);
                return Ok(());
            }
            let before = data.len();
            let result = self.parser.parse(&mut data, false);
            if data.len() != before {
                self.at_boundary = false;
            }
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
                    let emitted = out.len();
                    if let Err(e) = self.handle_event(event, out) {
                        self.finished = true;
                        return Err(e);
                    }
                    if self.finished {
                        return Ok(());
                    }
                    // A stanza or the stream header ended with the byte just consumed (the
                    // lexer emits a tag at its `>`, reading nothing past it).
                    if out.len() > emitted {
                        boundary = Some(input.len() - data.len());
                        // After a stanza's end tag rxml holds nothing back. After the stream
                        // header it may: the end of a self-closed root (`<open/>`, found by
                        // fuzzing), so the first stanza of a stream is always rxml's.
                        self.at_boundary = matches!(out.last(), Some(StreamEvent::Stanza(_)));
                    }
                }
                Ok(None) => {
                    self.finished = true;
                    return Ok(());
                }
                Err(rxml::error::EndOrError::NeedMoreData) => {
                    self.note_pending_markup(input, boundary);
                    return Ok(());
                }
                Err(rxml::error::EndOrError::Error(e)) => {
                    self.finished = true;
                    return Err(classify(e));
                }
            }
        }
    }

    /// The fast path: when `data` holds (after whitespace) a whole stanza that
    /// [`fast_read`] can read, emit it and move `data` past it. `false` leaves `data` to rxml,
    /// which has read nothing since the last boundary, so it goes on from the same byte.
    fn read_plain_stanza(&mut self, data: &mut &[u8], out: &mut Vec<StreamEvent>) -> bool {
        let Some(namespace) = self.content_namespace.as_deref().filter(|_| self.fast_path) else {
            return false;
        };
        let Some(start) = data.iter().position(is_markup) else {
            return false;
        };
        let Some(bytes_left) = self
            .limits
            .max_stanza_bytes
            .checked_sub(self.stanza_bytes + start)
        else {
            return false;
        };
        let bounds = fast_read::Bounds {
            limits: &self.limits,
            tree: &self.tree_limits,
            bytes_left,
        };
        let Some((stanza, length)) = fast_read::read_stanza(&data[start..], namespace, &bounds)
        else {
            return false;
        };
        *data = &data[start + length..];
        self.stanza_bytes = 0;
        out.push(StreamEvent::Stanza(stanza));
        true
    }

    /// After `input` has been consumed, whether a stanza's start tag (or stray text) is under
    /// way: non-whitespace after the last boundary (in `input` if one was there, else since
    /// the previous call). Scans only what follows the last stanza, once.
    fn note_pending_markup(&mut self, input: &[u8], boundary: Option<usize>) {
        if !self.root_open || !self.stack.is_empty() {
            self.markup_pending = false;
            return;
        }
        match boundary {
            Some(end) => self.markup_pending = input[end..].iter().any(is_markup),
            None if self.markup_pending => {}
            None => self.markup_pending = input.iter().any(is_markup),
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
                    // Written with a reference, it is left to rxml to resolve.
                    self.content_namespace = default_namespace
                        .clone()
                        .filter(|namespace| !namespace.is_empty() && !namespace.contains('&'));
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

/// Whether `byte` is anything but XML whitespace (§2.3 S) between stanzas or before the header.
fn is_markup(byte: &u8) -> bool {
    !b" \t\r\n".contains(byte)
}

/// A stream starts with markup (after whitespace). `rxml` rejects text there only once the text
/// ends at the next `<`, so an HTTP request sent to the XMPP port (`GET / HTTP/1.1`) would keep
/// the connection open until a timeout; this rejects it at its first byte.
fn check_prolog_start(header: &[u8]) -> Result<(), StreamParseError> {
    match header.iter().find(|b| is_markup(b)) {
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

/// The `xmlns='…'` attribute of the root start tag in `header` (after an XML declaration), if
/// the root's local name is `local`. The parser has found the tag well-formed, so it is read
/// attribute by attribute: a value is quoted and holds neither its quote nor `<`, so
/// `xmlns` inside another attribute's value is not taken for the declaration. The value is
/// as written (entity references unresolved).
fn default_namespace_of(header: &[u8], local: &str) -> Option<String> {
    let text = std::str::from_utf8(header).ok()?.trim_start();
    let text = match text.strip_prefix("<?") {
        Some(declaration) => declaration[declaration.find("?>")? + 2..].trim_start(),
        None => text,
    };
    let tag = text.strip_prefix('<')?;
    let is_space = |c: char| matches!(c, ' ' | '\t' | '\r' | '\n');
    let name_end = tag.find(|c: char| is_space(c) || c == '>' || c == '/')?;
    let name = &tag[..name_end];
    if name.rsplit(':').next() != Some(local) {
        return None;
    }
    let mut rest = &tag[name_end..];
    loop {
        rest = rest.trim_start_matches(is_space);
        if rest.is_empty() || rest.starts_with('>') || rest.starts_with('/') {
            return None;
        }
        let equals = rest.find('=')?;
        let attribute = rest[..equals].trim_end_matches(is_space);
        let after = rest[equals + 1..].trim_start_matches(is_space);
        let quote = after.chars().next().filter(|q| *q == '\'' || *q == '"')?;
        let value_end = after[1..].find(quote)? + 1;
        if attribute == "xmlns" {
            return Some(after[1..value_end].to_string());
        }
        rest = &after[value_end + 1..];
    }
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
    if write::write_element(element, "", &mut buffer) {
        return buffer;
    }
    serialize_with_minidom(element)
}

/// [`serialize`] with the value of the top element's unqualified `attribute` left out (set or
/// not): the bytes, and where the value goes. How a room serialises a message once for all its
/// occupants, each copy with the occupant's own `to`, without copying the stanza to change it.
pub fn serialize_around_attribute(element: &Element, attribute: &str) -> Option<(Vec<u8>, usize)> {
    let mut buffer = Vec::with_capacity(256);
    let mut gap = write::Gap {
        attribute,
        at: None,
    };
    if write::write_element_with(element, "", Some(&mut gap), &mut buffer) {
        return Some((buffer, gap.at?));
    }
    None
}

/// [`serialize`] as a `String`, for storage: the bytes are taken over without a copy (they are
/// UTF-8, written from strings).
pub fn serialize_to_string(element: &Element) -> String {
    String::from_utf8(serialize(element))
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// [`serialize`] by minidom's own writer: what the fast path falls back to, and what the
/// fuzzing checks it against.
pub fn serialize_with_minidom(element: &Element) -> Vec<u8> {
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
mod tests;
