//! Unit tests of the stream parser: splits at any byte, limits, stream-level text.

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

/// What a transport's stanza timeout reads: a stanza has begun from its first `<` until its
/// end tag, however the bytes are split; whitespace keepalives and the header do not count.
#[test]
fn stanza_begun_from_first_byte_to_end_tag() {
    let stanza: &[u8] = b"<message to='a@b'><body>hi</body></message>";
    for split in 0..=stanza.len() {
        let mut parser = StreamParser::new(ParserLimits::default());
        let mut out = Vec::new();
        parser.feed(HEADER, &mut out).unwrap();
        assert!(!parser.stanza_begun(), "after the header");
        parser.feed(b"  \n ", &mut out).unwrap();
        assert!(!parser.stanza_begun(), "after a whitespace keepalive");
        parser.feed(&stanza[..split], &mut out).unwrap();
        assert_eq!(
            parser.stanza_begun(),
            split > 0 && split < stanza.len(),
            "split at {split}"
        );
        parser.feed(&stanza[split..], &mut out).unwrap();
        assert!(!parser.stanza_begun(), "once complete (split at {split})");
        // The next stanza's first byte in the same read as the end of this one.
        parser.feed(b"<presence/>\n<iq", &mut out).unwrap();
        assert!(parser.stanza_begun(), "next begun (split at {split})");
        parser.feed(b" type='get' id='1'/> ", &mut out).unwrap();
        assert!(!parser.stanza_begun(), "next complete (split at {split})");
    }
}

#[test]
fn stanza_begun_one_byte_at_a_time_and_not_before_the_header() {
    let mut parser = StreamParser::new(ParserLimits::default());
    let mut out = Vec::new();
    for byte in HEADER {
        parser.feed(std::slice::from_ref(byte), &mut out).unwrap();
        assert!(!parser.stanza_begun());
    }
    for byte in b"<message><body>slow".iter() {
        parser.feed(std::slice::from_ref(byte), &mut out).unwrap();
        assert!(parser.stanza_begun());
    }
    // Stray text at stream level is begun too (it would otherwise trickle forever).
    let mut parser = StreamParser::new(ParserLimits::default());
    parser.feed(HEADER, &mut out).unwrap();
    parser.feed(b" junk", &mut out).unwrap();
    assert!(parser.stanza_begun());
    parser.reset();
    assert!(!parser.stanza_begun());
}
