//! Serialisation of stanzas (XML 1.0 with Namespaces in XML, as RFC 6120 §11 restricts it):
//! the bytes minidom's writer produces, written straight into one buffer.
//!
//! Why not minidom's `write_to`: it encodes every start tag, attribute and text node into a
//! fresh growable buffer and copies that into the output, and tracks namespaces through
//! shared strings. A one-to-one message was serialised three times on its way (the recipient's
//! copy and the two archive copies), and that was a third of the instructions a server spent
//! on it (callgrind, bench/RESULTS.md, session 9). This writer walks the tree once, escaping
//! as rxml's encoder does, and gives the same bytes (`tests`, and the stream parser's fuzz
//! target compares the two on every input).
//!
//! What it leaves to minidom: elements with declared prefixes, attributes in a namespace
//! other than `xml:`, names that are not NCNames and characters XML cannot carry. Stanzas read
//! from the network never have the first (the stream parser builds unprefixed elements); the
//! others are rare enough that the slow path's cost does not matter.

use minidom::{Element, Node};

const XML_NAMESPACE: &str = "http://www.w3.org/XML/1998/namespace";

/// Appends `element` to `out` as minidom would write it, with an `xmlns` wherever the
/// namespace differs from the one in scope (`parent_namespace`; `""` at the top). `false`
/// when the element needs minidom's writer (see the module's note); `out` then holds a partial
/// write the caller discards.
pub(crate) fn write_element(element: &Element, parent_namespace: &str, out: &mut Vec<u8>) -> bool {
    write_element_with(element, parent_namespace, None, out)
}

/// An unqualified attribute of the top element whose value is left out of the bytes, where a
/// recipient's own address goes later ([`crate::serialize_around_attribute`]). `at` receives
/// where the value belongs.
pub(crate) struct Gap<'a> {
    pub attribute: &'a str,
    pub at: Option<usize>,
}

pub(crate) fn write_element_with(
    element: &Element,
    parent_namespace: &str,
    mut gap: Option<&mut Gap<'_>>,
    out: &mut Vec<u8>,
) -> bool {
    let name = element.name();
    if name.is_empty() || name.contains(':') || !element.prefixes.declared_prefixes().is_empty() {
        return false;
    }
    out.push(b'<');
    out.extend_from_slice(name.as_bytes());
    // The namespace is only copied out of the element when it changes (a declaration).
    let declared;
    let namespace = if element.has_ns(parent_namespace) {
        parent_namespace
    } else {
        declared = element.ns();
        out.extend_from_slice(b" xmlns='");
        if !escape_into(&declared, true, out) {
            return false;
        }
        out.push(b'\'');
        declared.as_str()
    };
    // The gap goes where the attribute sorts among the unqualified ones, as if it were set.
    let open_gap = |out: &mut Vec<u8>, gap: &mut Option<&mut Gap<'_>>| {
        if let Some(gap) = gap.take() {
            out.push(b' ');
            out.extend_from_slice(gap.attribute.as_bytes());
            out.extend_from_slice(b"='");
            gap.at = Some(out.len());
            out.push(b'\'');
        }
    };
    for ((attribute_namespace, attribute), value) in element.attrs().iter() {
        if let Some(pending) = gap.as_deref() {
            if !attribute_namespace.is_none() || attribute.as_str() >= pending.attribute {
                let replaced =
                    attribute_namespace.is_none() && attribute.as_str() == pending.attribute;
                open_gap(out, &mut gap);
                if replaced {
                    continue;
                }
            }
        }
        out.push(b' ');
        if !attribute_namespace.is_none() {
            if attribute_namespace.as_str() != XML_NAMESPACE {
                return false;
            }
            out.extend_from_slice(b"xml:");
        }
        out.extend_from_slice(attribute.as_bytes());
        out.extend_from_slice(b"='");
        if !escape_into(value, true, out) {
            return false;
        }
        out.push(b'\'');
    }
    open_gap(out, &mut gap);
    let mut nodes = element.nodes().peekable();
    if nodes.peek().is_none() {
        out.extend_from_slice(b"/>");
        return true;
    }
    out.push(b'>');
    for node in nodes {
        let written = match node {
            Node::Element(child) => write_element(child, namespace, out),
            Node::Text(text) => escape_into(text, false, out),
        };
        if !written {
            return false;
        }
    }
    out.extend_from_slice(b"</");
    out.extend_from_slice(name.as_bytes());
    out.push(b'>');
    true
}

const PLAIN: u8 = 0;
/// Escaped (or refused) wherever it is.
const ALWAYS: u8 = 1;
/// Escaped in attribute values only.
const IN_ATTRIBUTE: u8 = 2;
/// What [`escape_into`] looks at, by byte.
const SPECIAL: [u8; 256] = {
    let mut table = [PLAIN; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = ALWAYS;
        byte += 1;
    }
    table[b'\n' as usize] = IN_ATTRIBUTE;
    table[b'\t' as usize] = IN_ATTRIBUTE;
    table[b'"' as usize] = IN_ATTRIBUTE;
    table[b'\'' as usize] = IN_ATTRIBUTE;
    table[b'<' as usize] = ALWAYS;
    table[b'>' as usize] = ALWAYS;
    table[b'&' as usize] = ALWAYS;
    table[0xbe] = ALWAYS;
    table[0xbf] = ALWAYS;
    table
};

/// Appends `text` escaped as rxml's encoder escapes it (character data, or an attribute value
/// in single quotes); `false` on a character XML 1.0 cannot carry, which the encoder refuses.
fn escape_into(text: &str, in_attribute: bool, out: &mut Vec<u8>) -> bool {
    let bytes = text.as_bytes();
    let mut copied = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        // Most bytes need nothing: one table lookup says so.
        match SPECIAL[usize::from(byte)] {
            PLAIN => continue,
            IN_ATTRIBUTE if !in_attribute => continue,
            _ => {}
        }
        let escaped: &[u8] = match byte {
            b'\x00'..=b'\x08' | b'\x0b' | b'\x0c' | b'\x0e'..=b'\x1f' => return false,
            // U+FFFE and U+FFFF (EF BF BE, EF BF BF) are not XML characters either.
            b'\xbe' | b'\xbf' if i >= 2 && bytes[i - 2] == 0xef && bytes[i - 1] == 0xbf => {
                return false
            }
            b'<' => b"&lt;",
            b'>' => b"&gt;",
            b'&' => b"&amp;",
            b'\r' => b"&#xd;",
            b'"' if in_attribute => b"&#34;",
            b'\'' if in_attribute => b"&#39;",
            b'\n' if in_attribute => b"&#xa;",
            b'\t' if in_attribute => b"&#x9;",
            _ => continue,
        };
        out.extend_from_slice(&bytes[copied..i]);
        out.extend_from_slice(escaped);
        copied = i + 1;
    }
    out.extend_from_slice(&bytes[copied..]);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ParserLimits, StreamEvent, StreamParser};

    fn by_minidom(element: &Element) -> Vec<u8> {
        let mut out = Vec::new();
        element.write_to(&mut out).expect("minidom writes it");
        out
    }

    fn by_fast_path(element: &Element) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        write_element(element, "", &mut out).then_some(out)
    }

    fn stanzas(stream_body: &str) -> Vec<Element> {
        let mut parser = StreamParser::new(ParserLimits::default());
        let mut events = Vec::new();
        let stream = format!(
            "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>{stream_body}"
        );
        parser
            .feed(stream.as_bytes(), &mut events)
            .expect("valid XML");
        events
            .into_iter()
            .filter_map(|event| match event {
                StreamEvent::Stanza(element) => Some(element),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn parsed_stanzas_come_out_as_minidom_writes_them() {
        let body = concat!(
            "<message to='a@b/c' id='1' type='chat'><body>hi &amp; &lt;bye&gt; \"q\" 'a'\r\n\tx</body>",
            "<active xmlns='http://jabber.org/protocol/chatstates'/>",
            "<x xmlns='urn:a'><y><z xmlns='jabber:client'>deep</z></y><empty xmlns=''/></x>",
            "<thread parent='p&amp;&apos;&quot;&#x9;&#xa;&#xd;'>t</thread></message>",
            "<presence xml:lang='en'><status xml:lang='fr'>là-bas \u{1F600}</status></presence>",
            "<iq type='get' id='x'><query xmlns='jabber:iq:roster'/></iq>",
            "<message><body>text<b xmlns='urn:b'>mixed</b>more</body></message>",
            "<message><body></body></message>",
        );
        let parsed = stanzas(body);
        assert_eq!(parsed.len(), 5);
        for stanza in &parsed {
            let fast = by_fast_path(stanza).expect("no prefixes: the fast path writes it");
            assert_eq!(
                String::from_utf8_lossy(&fast),
                String::from_utf8_lossy(&by_minidom(stanza))
            );
        }
    }

    #[test]
    fn built_elements_come_out_as_minidom_writes_them() {
        let mut built = Element::builder("message", "jabber:client")
            .append(Element::builder("body", "jabber:client").append("a<b>c&d"))
            .append(Element::bare("no-ns", ""))
            .build();
        let to = minidom::rxml::NcName::try_from("to").expect("an NCName");
        built
            .attrs_mut()
            .insert(minidom::rxml::Namespace::NONE, to, "r@rooms/n'ick\t".into());
        assert_eq!(by_fast_path(&built), Some(by_minidom(&built)));
    }

    #[test]
    fn what_the_fast_path_cannot_write_is_left_to_minidom() {
        let prefixed = Element::builder("features", "http://etherx.jabber.org/streams")
            .prefix(
                Some("stream".to_string()),
                "http://etherx.jabber.org/streams",
            )
            .expect("a new prefix")
            .build();
        assert_eq!(by_fast_path(&prefixed), None);
        assert!(String::from_utf8_lossy(&crate::serialize(&prefixed)).starts_with("<stream:"));

        let foreign_attribute = &stanzas("<message xmlns:f='urn:f' f:a='1'/>")[0];
        assert_eq!(by_fast_path(foreign_attribute), None);
        assert_eq!(
            crate::serialize(foreign_attribute),
            by_minidom(foreign_attribute)
        );

        let control = Element::builder("body", "jabber:client")
            .append("bell\u{7}")
            .build();
        assert_eq!(by_fast_path(&control), None);
        let not_a_character = Element::builder("body", "jabber:client")
            .append("\u{FFFE}")
            .build();
        assert_eq!(by_fast_path(&not_a_character), None);
    }

    /// The bytes around the gap are the stanza's with the attribute set to any value, wherever
    /// it sorts, set before or not.
    #[test]
    fn a_gap_is_where_the_attribute_would_be_written() {
        let parsed = stanzas(concat!(
            "<message from='r@rooms/n' type='groupchat' id='1'><body>b</body></message>",
            "<message to='old@x' xml:lang='en' a='1' z='2'/>",
            "<message xml:lang='en'/>",
            "<presence><x xmlns='urn:x' to='inner'/></presence>",
        ));
        for stanza in &parsed {
            let (bytes, at) = crate::serialize_around_attribute(stanza, "to").expect("fast path");
            let mut addressed = stanza.clone();
            let to = minidom::rxml::NcName::try_from("to").expect("an NCName");
            addressed
                .attrs_mut()
                .insert(minidom::rxml::Namespace::NONE, to, "v@x/&".to_string());
            let mut spliced = bytes[..at].to_vec();
            spliced.extend_from_slice(b"v@x/&amp;");
            spliced.extend_from_slice(&bytes[at..]);
            assert_eq!(
                String::from_utf8_lossy(&spliced),
                String::from_utf8_lossy(&by_minidom(&addressed))
            );
        }
    }

    /// Every stanza of the stream parser's fuzzing seeds, both ways.
    #[test]
    fn the_fuzzing_seeds_come_out_as_minidom_writes_them() {
        let seeds =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/stream_parser");
        let mut compared = 0;
        for seed in std::fs::read_dir(seeds).expect("the seeds are committed") {
            let bytes = std::fs::read(seed.expect("a seed").path()).expect("readable");
            let mut parser = StreamParser::new(ParserLimits::default());
            let mut events = Vec::new();
            let _ = parser.feed(bytes.get(2..).unwrap_or_default(), &mut events);
            for event in events {
                if let StreamEvent::Stanza(stanza) = event {
                    if let Some(fast) = by_fast_path(&stanza) {
                        assert_eq!(fast, by_minidom(&stanza));
                        compared += 1;
                    }
                }
            }
        }
        assert!(compared > 5, "only {compared} stanzas compared");
    }
}
