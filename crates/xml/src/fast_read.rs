//! The stream parser's fast path (RFC 6120 §11's restricted XML, read the way rxml reads it): a
//! stanza that arrived whole and uses only plain markup (names without prefixes, the five
//! predefined entities and character references, no CDATA, comments, carriage returns or tabs
//! and newlines inside attribute values) is read in one pass straight into its element. Anything
//! else, and anything near a limit, is left to rxml, which stays the reference: this path never
//! rejects input, it only declines it, so what the server accepts and refuses is rxml's decision.
//!
//! Why: rxml spends about 150 instructions per byte on a chat message (its lexer validates and
//! copies each character through a scratchpad, then the namespace resolver allocates per name);
//! one pass over the bytes costs a few. The stream parser's fuzz target compares both paths on
//! every input.

use minidom::rxml::{AttrMap, Namespace, NcName};
use minidom::Element;

use crate::{element_cost, text_cost, ParserLimits, TreeLimits};

/// Nesting the fast path reads, whatever the configured limit: it recurses per element, and a
/// deeper stanza (rare) goes to rxml, which keeps its open elements on the heap.
const DEEPEST: usize = 32;

/// What the fast path may take: limits it stays well inside, since it declines rather than
/// reports.
pub(crate) struct Bounds<'a> {
    pub limits: &'a ParserLimits,
    pub tree: &'a TreeLimits,
    /// Bytes the stanza may still take before the size limit.
    pub bytes_left: usize,
}

/// Reads the stanza `input` begins with (at a `<`), if it is complete in `input` and plain:
/// the element (in `default_namespace` unless it declares its own) and the bytes it took.
/// `None` declines: rxml reads it instead, from the same position.
pub(crate) fn read_stanza(
    input: &[u8],
    default_namespace: &str,
    bounds: &Bounds<'_>,
) -> Option<(Element, usize)> {
    let mut reader = Reader {
        input,
        at: 0,
        elements: 0,
        memory: 0,
        bounds,
    };
    let stanza = reader.element(default_namespace, 1)?;
    Some((stanza, reader.at))
}

struct Reader<'a, 'b> {
    input: &'a [u8],
    at: usize,
    elements: usize,
    memory: usize,
    bounds: &'b Bounds<'b>,
}

impl<'a> Reader<'a, '_> {
    fn peek(&self) -> Option<u8> {
        self.input.get(self.at).copied()
    }

    /// The element starting at `self.at` (a `<`), at `depth` (the stanza is 1), and everything
    /// in it, up to and including its end tag.
    fn element(&mut self, parent_namespace: &str, depth: usize) -> Option<Element> {
        if depth > self.bounds.limits.max_depth.min(DEEPEST) || self.peek()? != b'<' {
            return None;
        }
        self.at += 1;
        let name = self.name().filter(|name| *name != "xmlns")?;
        let mut attributes = AttrMap::new();
        let mut namespace = None;
        let empty = loop {
            let spaced = self.skip_space();
            match self.peek()? {
                b'>' => {
                    self.at += 1;
                    break false;
                }
                b'/' => {
                    self.at += 1;
                    if self.peek()? != b'>' {
                        return None;
                    }
                    self.at += 1;
                    break true;
                }
                _ if !spaced => return None,
                _ => {}
            }
            let attribute = self.name()?;
            self.skip_space();
            if self.peek()? != b'=' {
                return None;
            }
            self.at += 1;
            self.skip_space();
            let value = self.attribute_value()?;
            if attribute == "xmlns" {
                // An empty one undeclares the default namespace: rare, left to rxml.
                if value.is_empty() || namespace.is_some() {
                    return None;
                }
                namespace = Some(value);
                continue;
            }
            let key = NcName::try_from(attribute).ok()?;
            if attributes.insert(Namespace::NONE, key, value).is_some() {
                return None;
            }
            if attributes.len() > self.bounds.limits.max_attributes {
                return None;
            }
        };
        let namespace = namespace.unwrap_or_else(|| parent_namespace.to_string());
        self.elements += 1;
        self.memory += element_cost(name, &namespace, &attributes);
        if self.elements > self.bounds.tree.max_elements
            || self.memory > self.bounds.tree.max_memory
            || self.at > self.bounds.bytes_left
        {
            return None;
        }
        let mut element = Element::bare(name, namespace.as_str());
        *element.attrs_mut() = attributes;
        if empty {
            return Some(element);
        }
        loop {
            let text = self.text()?;
            if !text.is_empty() {
                self.memory += text_cost(&text);
                if self.memory > self.bounds.tree.max_memory {
                    return None;
                }
                element.append_text_node(text);
            }
            // At a `<`: a child, or this element's end tag.
            if self.input.get(self.at + 1) == Some(&b'/') {
                self.at += 2;
                if self.name()? != name {
                    return None;
                }
                self.skip_space();
                if self.peek()? != b'>' {
                    return None;
                }
                self.at += 1;
                return (self.at <= self.bounds.bytes_left).then_some(element);
            }
            let child = self.element(&namespace, depth + 1)?;
            element.append_child(child);
        }
    }

    /// A name without a prefix, ASCII only (`[A-Za-z_][A-Za-z0-9._-]*`), not starting with the
    /// reserved `xml` (bar the `xmlns` attribute, which the caller tells apart); others go to
    /// rxml.
    fn name(&mut self) -> Option<&'a str> {
        let input: &'a [u8] = self.input;
        let start = self.at;
        let first = self.peek()?;
        if !(first.is_ascii_alphabetic() || first == b'_') {
            return None;
        }
        self.at += 1;
        while let Some(b) = self.peek() {
            if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_') {
                self.at += 1;
            } else {
                break;
            }
        }
        if self.at - start > self.bounds.limits.max_token_bytes {
            return None;
        }
        let name = std::str::from_utf8(&input[start..self.at]).ok()?;
        let reserved = name.len() >= 3 && name[..3].eq_ignore_ascii_case("xml");
        (!reserved || name == "xmlns").then_some(name)
    }

    /// Spaces and newlines between markup parts; whether there were any. A tab or a carriage
    /// return is left to rxml (so is any whitespace rule this path does not need).
    fn skip_space(&mut self) -> bool {
        let start = self.at;
        while matches!(self.peek(), Some(b' ' | b'\n')) {
            self.at += 1;
        }
        self.at > start
    }

    /// A quoted attribute value, its references resolved.
    fn attribute_value(&mut self) -> Option<String> {
        let quote = self.peek()?;
        if quote != b'\'' && quote != b'"' {
            return None;
        }
        self.at += 1;
        let value = self.characters(Some(quote))?;
        self.at += 1;
        Some(value)
    }

    /// Character data up to the next `<` (which must come).
    fn text(&mut self) -> Option<String> {
        self.characters(None)
    }

    /// Characters up to `quote` (an attribute value) or `<` (text), references resolved;
    /// stops at that byte without taking it.
    fn characters(&mut self, quote: Option<u8>) -> Option<String> {
        let mut out = String::new();
        let mut run = self.at;
        loop {
            let byte = *self.input.get(self.at)?;
            match byte {
                b'<' if quote.is_none() => break,
                b'<' => return None,
                b'&' => {
                    out.push_str(checked(&self.input[run..self.at])?);
                    out.push(self.reference()?);
                    run = self.at;
                    continue;
                }
                b'>' if quote.is_none()
                    && self.at >= 2
                    && &self.input[self.at - 2..self.at] == b"]]" =>
                {
                    // `]]>` may not appear in text.
                    return None;
                }
                b'\n' if quote.is_some() => return None,
                b'\t' | b'\r' => return None,
                0..=0x1f if byte != b'\n' => return None,
                _ if Some(byte) == quote => break,
                _ => {}
            }
            self.at += 1;
        }
        out.push_str(checked(&self.input[run..self.at])?);
        if out.len() > self.bounds.limits.max_token_bytes {
            return None;
        }
        Some(out)
    }

    /// An entity or character reference at `&`, resolved.
    fn reference(&mut self) -> Option<char> {
        let rest = &self.input[self.at + 1..];
        let end = rest.iter().take(12).position(|&b| b == b';')?;
        let body = &rest[..end];
        let resolved = match body {
            b"lt" => '<',
            b"gt" => '>',
            b"amp" => '&',
            b"apos" => '\'',
            b"quot" => '"',
            [b'#', b'x', digits @ ..] => char_from(digits, 16)?,
            [b'#', digits @ ..] => char_from(digits, 10)?,
            _ => return None,
        };
        self.at += end + 2;
        Some(resolved)
    }
}

/// A character reference's character, if XML 1.0 allows it (§2.2 Char); others go to rxml.
fn char_from(digits: &[u8], radix: u32) -> Option<char> {
    if digits.is_empty() || !digits.iter().all(|b| (*b as char).is_digit(radix)) {
        return None;
    }
    let code = u32::from_str_radix(std::str::from_utf8(digits).ok()?, radix).ok()?;
    let c = char::from_u32(code)?;
    let allowed =
        matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}');
    allowed.then_some(c)
}

/// `bytes` as UTF-8 text XML can carry: not U+FFFE or U+FFFF (the only non-characters valid
/// UTF-8 can hold that §2.2 excludes; control bytes were refused while scanning).
fn checked(bytes: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(bytes).ok()?;
    if !text.is_ascii() && text.contains(['\u{FFFE}', '\u{FFFF}']) {
        return None;
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use crate::{ParserLimits, StreamEvent, StreamParser};

    const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
        xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";

    /// The stanzas of `HEADER` + `stanzas` (serialised, since rxml cuts text into a node per
    /// reference where this path keeps one), with the fast path on or off, and the outcome.
    fn parse(stanzas: &str, fast: bool) -> (Vec<Vec<u8>>, bool) {
        let mut parser = StreamParser::new(ParserLimits::default()).with_fast_path(fast);
        let mut events = Vec::new();
        // The first stanza of a stream is always rxml's; the ones after it are the fast path's.
        let header = parser.feed(format!("{HEADER}<presence/>").as_bytes(), &mut events);
        assert!(header.is_ok() && events.len() == 2);
        let ok = parser.feed(stanzas.as_bytes(), &mut events).is_ok();
        let elements = events
            .into_iter()
            .skip(2)
            .filter_map(|e| match e {
                StreamEvent::Stanza(element) => Some(crate::serialize(&element)),
                _ => None,
            })
            .collect();
        (elements, ok)
    }

    /// Whether the fast path reads `stanza` itself (rather than declining it).
    fn taken(stanza: &str) -> bool {
        let limits = ParserLimits::default();
        let bounds = super::Bounds {
            limits: &limits,
            tree: &crate::TreeLimits::default(),
            bytes_left: limits.max_stanza_bytes,
        };
        super::read_stanza(stanza.as_bytes(), "jabber:client", &bounds).is_some()
    }

    #[test]
    fn plain_stanzas_are_read_as_rxml_reads_them() {
        let plain = [
            "<message to='bob@localhost/r' type='chat' id='m1'><body>hi</body></message>",
            "<message to=\"a@b\" id='x'><body>a &lt;b&gt; &amp; &apos;c&apos; &quot;d&quot; &#65;&#x42;</body></message>",
            "<presence/>",
            "<iq type='get' id='1'><query xmlns='jabber:iq:roster'/></iq>",
            "<iq type='set' id='2'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='n'><item id='i'><x xmlns='jabber:x:data' type='submit'/></item></publish></pubsub></iq>",
            "<message id='a&amp;b' to='x@y'>\n  <body>two\nlines, ünïcödé and 😀</body>\n  <active xmlns='http://jabber.org/protocol/chatstates'/>\n</message>",
            "<message xmlns='jabber:client' to = 'x@y' ><body >]] ]&gt; > </body ></message >",
            "<r xmlns='urn:xmpp:sm:3'/>",
        ];
        for stanza in plain {
            assert!(taken(stanza), "declined: {stanza}");
            let (fast, fast_ok) = parse(stanza, true);
            let (reference, reference_ok) = parse(stanza, false);
            assert!(fast_ok && reference_ok, "{stanza}");
            assert_eq!(fast, reference, "{stanza}");
            assert_eq!(fast.len(), 1);
        }
        // One read holding several stanzas, whitespace between them.
        let several =
            "<presence/> <message to='a@b'><body>1</body></message>\n<iq id='3' type='get'/>";
        assert_eq!(parse(several, true), parse(several, false));
        assert_eq!(parse(several, true).0.len(), 3);
    }

    #[test]
    fn anything_unusual_is_left_to_rxml() {
        let unusual = [
            // Incomplete: the rest has not arrived.
            "<message to='a@b'><body>hi</body>",
            "<message to='a@b'><body>hi",
            // Prefixes, the xml: attributes, reserved names.
            "<message xml:lang='en'><body>hi</body></message>",
            "<foo:message xmlns:foo='jabber:client'/>",
            "<xmlthing/>",
            "<message xmlns=''/>",
            // What XML normalises, or forbids, or other markup.
            "<message to='a\tb'/>",
            "<message to='a\nb'/>",
            "<message><body>a\r\nb</body></message>",
            "<message><body><![CDATA[x]]></body></message>",
            "<message><!-- c --></message>",
            "<message><?pi x?></message>",
            "<message><body>]]></body></message>",
            "<message><body>&nbsp;</body></message>",
            "<message><body>&#0;</body></message>",
            "<message><body>&#xFFFE;</body></message>",
            "<message><body>\u{1}</body></message>",
            "<message><body>\u{FFFF}</body></message>",
            "<message to='a<b'/>",
            "<message to='a' to='b'/>",
            "<message xmlns='a' xmlns='b'/>",
            "<message to='a'from='b'/>",
            "<message to=a/>",
            "<message><body>x</bodx></message>",
            "<message></message >x",
            "<ü/>",
        ];
        for stanza in unusual {
            if stanza == "<message></message >x" {
                // Taken, and only up to its end: the stray text after it is rxml's.
                assert!(taken(stanza));
                continue;
            }
            assert!(!taken(stanza), "taken: {stanza:?}");
            assert_eq!(parse(stanza, true), parse(stanza, false), "{stanza:?}");
        }
    }

    #[test]
    fn limits_are_rxmls_to_enforce() {
        let deep = "<a>".repeat(40) + &"</a>".repeat(40);
        assert!(!taken(&deep));
        // Under a limit raised past the fast path's own, rxml reads it.
        let mut parser = StreamParser::new(ParserLimits {
            max_depth: 100,
            ..ParserLimits::default()
        });
        let mut events = Vec::new();
        let stream = format!("{HEADER}<presence/>{deep}");
        assert!(parser.feed(stream.as_bytes(), &mut events).is_ok());
        assert_eq!(events.len(), 3);
        let (_, ok) = parse(&deep, true);
        assert!(!ok, "nesting past the limit still refused");
        let many = format!(
            "<a {}/>",
            (0..70)
                .map(|n| format!("a{n}='x'"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        assert!(!taken(&many));
        assert!(!parse(&many, true).1);
    }
}
