//! WebSocket framing for the server side of RFC 6455 (§5): the opening handshake's accept key,
//! reading client frames (masked, possibly fragmented, with control frames between fragments)
//! into whole messages, and writing unmasked text frames around bytes already in a buffer.
//! Header parsing and formatting are tungstenite's; the buffers are ours, so that an idle
//! connection holds none (see `websocket.rs`).

use sha1::{Digest, Sha1};
use std::io::Cursor;
use tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

/// RFC 6455 §1.3: the GUID appended to the client's key.
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Room left before each outgoing element for its frame header: 4 bytes hold the header of any
/// payload under 64 KiB (RFC 6455 §5.2); larger payloads move to make room for 10.
pub const HEADER_ROOM: usize = 4;

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 §4.2.2).
pub fn accept_key(key: &[u8]) -> String {
    use base64::Engine;
    let mut sha1 = Sha1::new();
    sha1.update(key);
    sha1.update(ACCEPT_GUID);
    base64::engine::general_purpose::STANDARD.encode(sha1.finalize())
}

/// Why the connection must end, with the close code to send (RFC 6455 §7.4.1).
#[derive(Debug, PartialEq, Eq)]
pub struct FrameError {
    pub code: CloseCode,
    pub reason: &'static str,
}

fn protocol(reason: &'static str) -> FrameError {
    FrameError {
        code: CloseCode::Protocol,
        reason,
    }
}

/// What one complete frame (or message) from the client asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Received<'a> {
    /// A whole text message (unfragmented, or the last fragment completing one).
    Text(&'a [u8]),
    Ping(&'a [u8]),
    Pong,
    /// The client's close frame; its status code, if any.
    Close(Option<u16>),
    /// A fragment that does not complete its message yet.
    Partial,
}

/// Incoming frame state kept between reads: the start of a frame that has not fully arrived,
/// and the fragments of a message that has not ended. Both are empty, with no capacity,
/// between messages.
#[derive(Default)]
pub struct Reader {
    /// Received bytes not yet consumed (an incomplete frame).
    pub pending: Vec<u8>,
    /// The payload so far of a fragmented text message.
    fragments: Vec<u8>,
    in_message: bool,
}

impl Reader {
    /// Take the next complete frame from the front of `input`, unmasking it in place. Returns
    /// `Ok(None)` when `input` does not hold a whole frame; otherwise how many bytes it used
    /// and what the frame means. `max_message` bounds a message's payload (fragments summed).
    pub fn next<'a>(
        &'a mut self,
        input: &'a mut [u8],
        max_message: usize,
    ) -> Result<Option<(usize, Received<'a>)>, FrameError> {
        let mut cursor = Cursor::new(&input[..]);
        let (header, length) = match FrameHeader::parse(&mut cursor) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return Ok(None),
            Err(_) => return Err(protocol("malformed frame header")),
        };
        let start = cursor.position() as usize;
        if header.rsv1 || header.rsv2 || header.rsv3 {
            // No extension was negotiated (RFC 6455 §5.2).
            return Err(protocol("reserved bits set"));
        }
        let Some(mask) = header.mask else {
            // RFC 6455 §5.1: a server closes the connection on an unmasked client frame.
            return Err(protocol("unmasked frame from the client"));
        };
        let is_control = matches!(header.opcode, OpCode::Control(_));
        if is_control && (length > 125 || !header.is_final) {
            return Err(protocol("control frames are short and unfragmented"));
        }
        let so_far = if is_control { 0 } else { self.fragments.len() };
        if length > (max_message - so_far.min(max_message)) as u64 {
            return Err(FrameError {
                code: CloseCode::Size,
                reason: "message too big",
            });
        }
        let end = start + length as usize;
        if input.len() < end {
            return Ok(None);
        }
        let payload = &mut input[start..end];
        unmask(payload, mask);
        let received = match header.opcode {
            OpCode::Data(Data::Text) | OpCode::Data(Data::Continue) => {
                let continues = header.opcode == OpCode::Data(Data::Continue);
                if continues != self.in_message {
                    return Err(protocol(if continues {
                        "continuation frame without a message"
                    } else {
                        "new message before the last one ended"
                    }));
                }
                if header.is_final && !self.in_message {
                    Received::Text(payload)
                } else {
                    self.fragments.extend_from_slice(payload);
                    self.in_message = !header.is_final;
                    if header.is_final {
                        Received::Text(&self.fragments)
                    } else {
                        Received::Partial
                    }
                }
            }
            OpCode::Data(Data::Binary) => {
                return Err(FrameError {
                    code: CloseCode::Unsupported,
                    reason: "XMPP over WebSocket uses text messages",
                })
            }
            OpCode::Control(Control::Ping) => Received::Ping(payload),
            OpCode::Control(Control::Pong) => Received::Pong,
            OpCode::Control(Control::Close) => Received::Close(
                (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]])),
            ),
            _ => return Err(protocol("reserved opcode")),
        };
        Ok(Some((end, received)))
    }

    /// Bytes held for a frame or a message that has not ended yet (what a client that never
    /// finishes one makes the server keep).
    pub fn buffered(&self) -> usize {
        self.pending.len() + self.fragments.len()
    }

    /// Whether a frame or a fragmented message has begun and not ended.
    pub fn is_midway(&self) -> bool {
        self.in_message || !self.pending.is_empty()
    }

    /// Forget a completed fragmented message (called after its text was used).
    pub fn message_done(&mut self) {
        if !self.in_message {
            self.fragments = Vec::new();
        }
    }
}

fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let word = u32::from_ne_bytes(mask);
    let mut chunks = payload.chunks_exact_mut(4);
    for chunk in &mut chunks {
        let value = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) ^ word;
        chunk.copy_from_slice(&value.to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i];
    }
}

/// Append one whole unmasked frame (header and payload) with `opcode` to `out`.
pub fn push_frame(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8]) {
    let header = FrameHeader {
        opcode,
        ..FrameHeader::default()
    };
    header
        .format(payload.len() as u64, out)
        .expect("writing to a Vec cannot fail");
    out.extend_from_slice(payload);
}

/// Turn the bytes written at `out[start + HEADER_ROOM..]` into one text frame, filling the room
/// left before them with the header (and closing the gap if the header is shorter).
/// The header of an unmasked text frame (server to client) of `length` payload bytes, and how
/// many of the 10 bytes it takes.
pub fn text_frame_header(length: usize) -> ([u8; 10], usize) {
    let header = FrameHeader {
        opcode: OpCode::Data(Data::Text),
        ..FrameHeader::default()
    };
    let mut bytes = [0u8; 10];
    let size = header.len(length as u64);
    header
        .format(length as u64, &mut &mut bytes[..])
        .expect("a header fits in 10 bytes");
    (bytes, size)
}

pub fn finish_text_frame(out: &mut Vec<u8>, start: usize) {
    let payload_start = start + HEADER_ROOM;
    let length = out.len() - payload_start;
    let (bytes, size) = text_frame_header(length);
    if size > HEADER_ROOM {
        // 64 KiB or more: make room (rare; elements that big are files, not chat).
        out.splice(
            payload_start..payload_start,
            std::iter::repeat_n(0, size - HEADER_ROOM),
        );
    } else if size < HEADER_ROOM {
        out.copy_within(payload_start.., start + size);
        out.truncate(out.len() - (HEADER_ROOM - size));
    }
    out[start..start + size].copy_from_slice(&bytes[..size]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let mut frame = vec![opcode | if fin { 0x80 } else { 0 }];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n < 65536 => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        frame
    }

    #[test]
    fn accept_key_matches_rfc_6455_example() {
        // RFC 6455 §1.3.
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn reads_masked_text_and_waits_for_the_rest() {
        let mut reader = Reader::default();
        let mut input = client_frame(1, true, b"<presence/>");
        let whole = input.len();
        assert_eq!(reader.next(&mut input[..whole - 1], 1000).unwrap(), None);
        let (used, received) = reader.next(&mut input, 1000).unwrap().unwrap();
        assert_eq!(used, whole);
        assert_eq!(received, Received::Text(b"<presence/>"));
    }

    #[test]
    fn joins_fragments_around_a_ping() {
        let mut reader = Reader::default();
        let mut input = client_frame(1, false, b"<message>");
        input.extend(client_frame(9, true, b"hi"));
        input.extend(client_frame(0, true, b"</message>"));
        let mut offset = 0;
        let mut seen = Vec::new();
        while offset < input.len() {
            let (used, received) = reader.next(&mut input[offset..], 1000).unwrap().unwrap();
            seen.push(match received {
                Received::Text(t) => format!("text {}", String::from_utf8_lossy(t)),
                Received::Ping(p) => format!("ping {}", String::from_utf8_lossy(p)),
                other => format!("{other:?}"),
            });
            reader.message_done();
            offset += used;
        }
        assert_eq!(seen, ["Partial", "ping hi", "text <message></message>"]);
    }

    #[test]
    fn refuses_what_rfc_6455_forbids() {
        let code = |mut input: Vec<u8>, max: usize| {
            Reader::default().next(&mut input, max).unwrap_err().code
        };
        let mut unmasked = client_frame(1, true, b"x");
        unmasked[1] &= 0x7f;
        unmasked.truncate(2);
        unmasked.push(b'x');
        assert_eq!(code(unmasked, 100), CloseCode::Protocol);
        assert_eq!(
            code(client_frame(2, true, b"x"), 100),
            CloseCode::Unsupported
        );
        assert_eq!(code(client_frame(0, true, b"x"), 100), CloseCode::Protocol);
        assert_eq!(code(client_frame(9, false, b"x"), 100), CloseCode::Protocol);
        assert_eq!(
            code(client_frame(1, true, &[b'a'; 101]), 100),
            CloseCode::Size
        );
        let mut rsv = client_frame(1, true, b"x");
        rsv[0] |= 0x40;
        assert_eq!(code(rsv, 100), CloseCode::Protocol);
        // Fragments count together against the limit.
        let mut reader = Reader::default();
        let mut first = client_frame(1, false, &[b'a'; 60]);
        reader.next(&mut first, 100).unwrap().unwrap();
        let mut second = client_frame(0, true, &[b'a'; 60]);
        assert_eq!(
            reader.next(&mut second, 100).unwrap_err().code,
            CloseCode::Size
        );
    }

    #[test]
    fn a_message_under_way_is_midway_and_counted() {
        let mut reader = Reader::default();
        assert!(!reader.is_midway());
        let mut first = client_frame(1, false, &[b'a'; 60]);
        reader.next(&mut first, 1000).unwrap().unwrap();
        // Between fragments: the message is not over, its bytes are held.
        assert!(reader.is_midway());
        assert_eq!(reader.buffered(), 60);
        let mut last = client_frame(0, true, b"b");
        let (_, received) = reader.next(&mut last, 1000).unwrap().unwrap();
        assert_eq!(
            received,
            Received::Text(&[[b'a'; 60].as_slice(), b"b"].concat())
        );
        reader.message_done();
        assert!(!reader.is_midway());
        assert_eq!(reader.buffered(), 0);
    }

    #[test]
    fn text_frames_around_written_bytes() {
        for length in [0usize, 5, 125, 126, 65535, 65536, 70000] {
            let mut out = b"xy".to_vec();
            let start = out.len();
            out.resize(start + HEADER_ROOM, 0);
            out.extend(std::iter::repeat_n(b'a', length));
            finish_text_frame(&mut out, start);
            let mut expected = b"xy".to_vec();
            push_frame(&mut expected, OpCode::Data(Data::Text), &vec![b'a'; length]);
            assert_eq!(out, expected, "payload of {length} bytes");
        }
    }
}
