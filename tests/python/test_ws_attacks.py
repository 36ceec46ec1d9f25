"""Attacks on Salon's own WebSocket framing (RFC 6455, `crates/web/src/ws_frame.rs`) under XMPP
over WebSocket (RFC 7395), from a scripted client that frames with the `websockets` library but
sends what no well-behaved client would: a fragmented message that never ends, frames trickled
a byte at a time (slowloris), a message of one-byte fragments, and a frame declaring 2^63 bytes.
Each is bounded in time and count, on loopback.

A message holds one stanza (RFC 7395 §3.3.3), so the server cuts one at `limits.max_stanza_bytes`
(policy-violation, close 1009) however it is fragmented, and counts fragments against
`limits.unauthenticated_bytes` before login; a frame or message begun must end within
`http.idle_timeout` (close 1008)."""

from __future__ import annotations

import asyncio
import time

from websockets.frames import Opcode

from conftest import server_fixture
from helpers import async_test, cpu_seconds, rss_mib
from websocket_helpers import RawWebSocket, open_anonymous

STANZA_LIMIT = 256 * 1024  # limits.max_stanza_bytes by default
UNAUTHENTICATED_LIMIT = 64 * 1024  # limits.unauthenticated_bytes by default
MESSAGE_TIMEOUT = 4  # http.idle_timeout below; checked at each keepalive (1 s)

server = server_fixture(
    "ws-attacks",
    http={"websocket_ping_interval": 1, "bosh_max_wait": 1, "idle_timeout": MESSAGE_TIMEOUT},
)


async def logged_in(server) -> tuple[RawWebSocket, str]:
    ws = await RawWebSocket.connect(server.http_port)
    return ws, await open_anonymous(ws)


async def send_fragments_past(ws: RawWebSocket, limit: int, chunk: int = 8192) -> int:
    """Begin a text message and add continuation frames, never the last one, until the payload
    is just over `limit`; then stop. The frame that crosses the limit is the last one written,
    so the server has read everything when it refuses it (a close with unread bytes would be
    a reset, which could lose the close frame). Returns the payload bytes sent."""
    head = b"<message xmlns='jabber:client' to='nobody@localhost'><body>"
    assert await ws.write(ws.frame(Opcode.TEXT, head, fin=False))
    sent = len(head)
    while sent <= limit:
        if not await ws.write(ws.frame(Opcode.CONT, b"a" * chunk, fin=False)):
            break
        sent += chunk
    return sent


@async_test(timeout=60)
async def test_a_fragmented_message_is_cut_at_the_stanza_limit(server):
    """(a) Continuation frames without FIN: once they add up to more than a stanza may be, the
    server ends the stream with <policy-violation/> and close code 1009, without waiting for
    the larger `http.max_websocket_message` (1 MiB) or for the message to end."""
    ws, _jid = await logged_in(server)
    sent = await send_fragments_past(ws, STANZA_LIMIT)
    assert sent < 1024 * 1024
    assert await ws.wait_closed(MESSAGE_TIMEOUT - 1), (
        f"still open after {sent} bytes of a message that cannot be a stanza")
    assert "policy-violation" in ws.said(), ws.said()
    assert ws.close_code == 1009, ws.close_code


@async_test(timeout=60)
async def test_fragments_count_against_the_unauthenticated_limit(server):
    """(a) Before login a peer has little to say: fragments held for a message that has not
    ended count against `limits.unauthenticated_bytes` as they come, as bytes parsed do."""
    ws = await RawWebSocket.connect(server.http_port)
    sent = await send_fragments_past(ws, UNAUTHENTICATED_LIMIT)
    assert sent < STANZA_LIMIT
    assert await ws.wait_closed(MESSAGE_TIMEOUT - 1), f"still open after {sent} bytes"
    assert "policy-violation" in ws.said() and "before authentication" in ws.said(), ws.said()


@async_test(timeout=90)
async def test_endless_fragmented_messages_leave_memory_bounded(server):
    """(a) Several clients each send a message that never ends, as fast as the server reads,
    until they are cut off: every one is, and the server's memory stays bounded by the stanza
    limit per connection, not by what they send (up to 32 MiB each)."""
    pid = server.proc.pid
    clients = [await logged_in(server) for _ in range(4)]
    before = rss_mib(pid)
    peak = before

    async def watch_memory(done: asyncio.Event):
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_mib(pid))
            await asyncio.sleep(0.02)

    async def flood(ws: RawWebSocket) -> int:
        assert await ws.write(ws.frame(Opcode.TEXT, b"<message><body>", fin=False))
        sent, chunk = 0, b"a" * 16384
        deadline = time.monotonic() + 20
        while sent < 32 * 1024 * 1024 and time.monotonic() < deadline:
            if not await ws.write(ws.frame(Opcode.CONT, chunk, fin=False)):
                return sent
            sent += len(chunk)
        return sent

    done = asyncio.Event()
    watching = asyncio.create_task(watch_memory(done))
    sent = await asyncio.gather(*(flood(ws) for ws, _ in clients))
    for ws, _ in clients:
        assert await ws.wait_closed(10), "an endless message was not cut off"
        ws.abort()
    done.set()
    await watching
    server.assert_running()
    print(f"4 endless messages ({sum(sent) >> 20} MiB sent): RSS {before:.1f} -> peak {peak:.1f} MiB")
    # 4 x 256 KiB held at most, plus the parser and buffers; the attackers wrote far more.
    assert peak - before < 24, f"RSS grew from {before:.1f} to {peak:.1f} MiB (sent {sent})"


@async_test(timeout=60)
async def test_a_trickled_message_times_out(server):
    """(b) Slowloris: a client sends a message one byte at a time (frame headers included,
    each a frame of one byte that never ends the message). The keepalives it answers keep the
    connection busy, but a message begun must end within `http.idle_timeout`: the server
    closes with <policy-violation/> and close code 1008 instead of waiting forever."""
    ws, _jid = await logged_in(server)
    ws.quiet = True
    started = time.monotonic()
    frames = [ws.frame(Opcode.TEXT, b"<", fin=False)]
    while not ws.closed and time.monotonic() - started < 20:
        if not frames:
            frames.append(ws.frame(Opcode.CONT, b"a", fin=False))
        byte, frames[0] = frames[0][:1], frames[0][1:]
        if not frames[0]:
            frames.pop(0)
        if not await ws.write(byte):
            break
        try:
            # Read (and answer pings) for a while between bytes.
            await ws.wait_closed(0.3)
        except (ConnectionError, OSError):
            break
    took = time.monotonic() - started
    print(f"trickled message closed after {took:.1f}s")
    assert ws.closed, "a message trickled for 20 s is still being waited for"
    # idle_timeout, plus up to one keepalive interval until the check, plus slack.
    assert took < MESSAGE_TIMEOUT + 4, f"closed after {took:.1f}s"
    assert "policy-violation" in ws.said(), ws.said()
    assert ws.close_code in (1008, None), ws.close_code


async def one_byte_fragments_cost(server, ws: RawWebSocket, jid: str, size: int, tag: str) -> float:
    """Send a message to `jid` of about `size` bytes as frames of one byte each and wait for it
    to come back; returns the server's CPU seconds spent meanwhile."""
    text = (f"<message xmlns='jabber:client' to='{jid}' id='{tag}'><body>"
            + "x" * size + "</body></message>").encode()
    # Built by hand (the library masks each frame in Python, too slow for 10^5 frames): a zero
    # masking key leaves the payload as it is (RFC 6455 §5.3).
    frames = [bytes([0x01 if i == 0 else 0x00, 0x81, 0, 0, 0, 0, byte])
              for i, byte in enumerate(text[:-1])]
    frames.append(bytes([0x80, 0x81, 0, 0, 0, 0, text[-1]]))
    wire = b"".join(frames)
    before = cpu_seconds(server.proc.pid)
    for offset in range(0, len(wire), 65536):
        assert await ws.write(wire[offset:offset + 65536]), ws.said()
    while True:
        message = await ws.recv(30)
        assert message is not None, ws.said()
        if f"id='{tag}'" in message:
            assert "x" * size in message
            return cpu_seconds(server.proc.pid) - before


@async_test(timeout=120)
async def test_one_byte_fragments_cost_linear_time(server):
    """(c) A message in one-byte fragments (seven bytes on the wire for each byte of XML):
    each frame costs the server the same small amount, however many came before it (no
    re-scan of what was gathered), so 4x the fragments cost about 4x the time (a quadratic
    cost, 16x), and a message near the stanza limit (240,000 frames) takes well under 2 s of
    CPU (0.05 s, debug build). `-s` prints the figures in docs/configuration.md."""
    ws, jid = await logged_in(server)
    small = await one_byte_fragments_cost(server, ws, jid, 60_000, "small")
    large = await one_byte_fragments_cost(server, ws, jid, 240_000, "large")
    print(f"one-byte fragments: 60,000 cost {small:.2f}s of CPU, 240,000 {large:.2f}s")
    ws.abort()
    # Clock ticks are 10 ms: compare with a floor under the small one.
    assert large < 8 * max(small, 0.05), f"60k frames {small:.2f}s, 240k frames {large:.2f}s"
    assert large < 2, f"240k one-byte frames took {large:.2f}s of CPU"


@async_test(timeout=30)
async def test_a_frame_declaring_2_to_the_63_bytes_is_refused_at_once(server):
    """(d) A frame header declaring 2^63 bytes (and 2^64 - 1) is refused when the header
    arrives, with close code 1009, not after waiting for (or buffering) any payload."""
    for length in (1 << 63, (1 << 64) - 1):
        ws, _jid = await logged_in(server)
        header = bytes([0x81, 0x80 | 127]) + length.to_bytes(8, "big") + b"\x01\x02\x03\x04"
        started = time.monotonic()
        assert await ws.write(header + b"<mess")
        assert await ws.wait_closed(2), f"length {length}: not refused within 2 s"
        assert time.monotonic() - started < 2
        assert ws.close_code == 1009, (length, ws.close_code)
        assert "policy-violation" in ws.said(), ws.said()
