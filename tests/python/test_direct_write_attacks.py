"""Attacks on direct writes (docs/ARCHITECTURE.md, "The path of a stanza", step 6): while a
session waits with nothing to write it lends its socket, and a room fanning out a message writes
each occupant's copy straight to it. Here the recipients misbehave while that happens, as a
script would: a second login takes the resource (RFC 6120 §7.7.2.2 conflict), connections are
reset mid-stream and come back, a recipient floods the room while being written to, sends a
close frame, a frame over the limit, a stanza over the limit or nested too deep. Every copy
that reaches anyone must be whole (a real XML parser reads every stream; bytes of one stanza
inside another show as a parse error) and in order; the misbehaving one gets the error the
limits name; nobody else notices; the server log has no panic. Bounded in time and count,
loopback only."""

from __future__ import annotations

import asyncio
import socket
import struct
import time
import xml.etree.ElementTree as ET

from websockets.frames import Opcode

from conftest import server_fixture
from helpers import NS_CLIENT, RawXmpp, async_test, tostr
from room_helpers import NS_MUC, small_window as small_window_of, speaker_in_new_room as new_room
from websocket_helpers import RawWebSocket, open_anonymous

NS_DELAY = "urn:xmpp:delay"
NS_STREAM = "http://etherx.jabber.org/streams"
MAX_STANZA = 16384
# Bodies big enough that a reader which stops reading for one burst has the server's socket
# buffers full (megabytes on loopback) and a direct write stop partway through a stanza.
BIG = 12000
# The speaker's own rate: fast enough that copies are written back to back while the
# recipients' tasks sleep, which is when the sockets are lent.
RATE = 1000

server = server_fixture(
    "direct-attacks",
    require_encryption=False,
    max_stanza_bytes=MAX_STANZA,
    extra_limits={"stanzas_per_second": RATE},
    # Pings every second: a ping waits for the session to take the socket back, never cuts
    # into a frame a room is writing.
    http={"websocket_ping_interval": 1},
)


def assert_no_panic(server) -> None:
    server.assert_running()
    log = server.log_path.read_text(errors="replace")
    assert "panicked" not in log, log[log.index("panicked") - 2000:][:4000]


class Seen:
    """What one recipient made of its stream: the room's messages by sender nick (ids, live
    copies only; history on join is kept apart), presences, the stream error if any."""

    def __init__(self, room: str, body: int):
        self.room = room
        self.body = body
        self.live: dict[str, list[str]] = {}
        self.history: list[str] = []
        self.unavailable: set[str] = set()
        self.stream_error: str | None = None
        self.closed = False

    def take(self, element: ET.Element) -> None:
        if element.tag == f"{{{NS_STREAM}}}error":
            self.stream_error = next(
                (c.tag.split("}")[1] for c in element if not c.tag.endswith("}text")), "?")
            return
        sender = element.get("from", "")
        if not sender.startswith(self.room + "/"):
            return
        nick = sender.split("/", 1)[1]
        if element.tag == f"{{{NS_CLIENT}}}presence":
            if element.get("type") == "unavailable":
                self.unavailable.add(nick)
            return
        if element.tag != f"{{{NS_CLIENT}}}message" or element.get("type") != "groupchat":
            return
        body = element.find(f"{{{NS_CLIENT}}}body")
        if body is None:
            return  # the subject
        assert len(body.text or "") == self.body, f"torn or changed body: {tostr(element)[:300]}"
        if element.find(f"{{{NS_DELAY}}}delay") is not None:
            self.history.append(element.get("id"))
        else:
            self.live.setdefault(nick, []).append(element.get("id"))

    def of(self, nick: str) -> list[str]:
        return self.live.get(nick, [])


async def pump_tcp(raw: RawXmpp, seen: Seen, stop: asyncio.Event) -> None:
    """Read and parse everything the server sends until `stop` or the stream ends; a parse
    error (a torn or interleaved stanza) fails the task. A reader with a `hold` event reads
    nothing until it is set: the room's writes fill its socket and stop partway through a
    stanza, whose rest its session then holds."""
    hold = getattr(raw, "hold", None)
    while True:
        while raw._pending:
            seen.take(raw._pending.pop(0))
        if raw.eof or raw.stream_closed or stop.is_set():
            seen.closed = raw.eof or raw.stream_closed
            return
        if hold is not None and not hold.is_set():
            await asyncio.sleep(0.02)
            continue
        try:
            if getattr(raw, "paced", False):
                # A little at a time: the socket stays nearly full, so that writes to it,
                # the room's and the session's own, often stop partway.
                data = await asyncio.wait_for(raw.reader.read(4096), 0.2)
                if not data:
                    raw.eof = True
                    continue
                raw.received += data
                raw._feed(data)
                await asyncio.sleep(0.002)
            else:
                await raw._read_more(0.2)
        except asyncio.TimeoutError:
            pass
        except (ConnectionError, OSError):
            raw.eof = True


async def pump_ws(ws: RawWebSocket, seen: Seen, stop: asyncio.Event) -> None:
    """The same for a WebSocket: each text message must be exactly one whole element."""
    hold = getattr(ws, "hold", None)
    while not stop.is_set():
        if hold is not None and not hold.is_set():
            await asyncio.sleep(0.02)
            continue
        try:
            text = await ws.recv(timeout=0.2)
        except TimeoutError:
            continue
        if text is None:
            seen.closed = True
            return
        try:
            element = ET.fromstring(text)
        except ET.ParseError as e:
            raise AssertionError(f"a WebSocket message is not one element ({e}): {text[:300]}")
        if element.tag == f"{{{NS_STREAM}}}error":
            seen.take(element)
        elif element.tag.startswith("{urn:ietf:params:xml:ns:xmpp-framing}"):
            continue
        else:
            seen.take(element)


async def join_tcp(raw: RawXmpp, room: str, nick: str) -> None:
    await raw.send(f"<presence to='{room}/{nick}'><x xmlns='{NS_MUC}'><history maxstanzas='0'/></x></presence>")
    await raw.expect(f"{{{NS_CLIENT}}}presence", timeout=15,
                     predicate=lambda p: p.get("from") == f"{room}/{nick}")


async def join_ws(ws: RawWebSocket, room: str, nick: str) -> None:
    await ws.send(f"<presence xmlns='jabber:client' to='{room}/{nick}'>"
                  f"<x xmlns='{NS_MUC}'><history maxstanzas='0'/></x></presence>")
    while f"from='{room}/{nick}'" not in (await ws.recv(timeout=15) or f"from='{room}/{nick}'"):
        pass


async def small_window(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection with a tiny receive buffer (and asyncio's buffer kept small too), so that
    a reader slower than the stream soon has the server's writes stop partway through."""
    return await small_window_of(port, limit=4096)


async def guest_in_room(server, room: str, nick: str, slow: bool = False) -> RawXmpp:
    if slow:
        raw = RawXmpp(*await small_window(server.c2s_port))
        await raw.open_stream("anon.localhost")
        result = await raw.auth("ANONYMOUS", b"")
        assert result.tag.endswith("success"), tostr(result)
        await raw.open_stream()
        await raw.bind()
        await raw.send("<presence/>")
    else:
        raw, _ = await RawXmpp.guest(server.c2s_port)
    await join_tcp(raw, room, nick)
    return raw


async def ws_small_window(port: int) -> RawWebSocket:
    """`RawWebSocket.connect` over a `small_window` connection."""
    from websockets.client import ClientProtocol
    from websockets.http11 import Response
    from websockets.typing import Subprotocol
    from websockets.uri import parse_uri

    reader, writer = await small_window(port)
    protocol = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}/xmpp-websocket"),
                              subprotocols=[Subprotocol("xmpp")], max_size=None)
    protocol.send_request(protocol.connect())
    ws = RawWebSocket(reader, writer, protocol)
    await ws.write(b"")
    while not any(isinstance(e, Response) for e in await ws._read(10)):
        pass
    return ws


async def ws_guest_in_room(server, room: str, nick: str, slow: bool = False) -> RawWebSocket:
    ws = await (ws_small_window if slow else RawWebSocket.connect)(server.http_port)
    await open_anonymous(ws)
    await join_ws(ws, room, nick)
    return ws


async def speak(raw: RawXmpp, room: str, ids: list[str], body: int, pause_every: int = 0) -> None:
    for i, message_id in enumerate(ids):
        await raw.send(f"<message to='{room}' type='groupchat' id='{message_id}'>"
                       f"<body>{'x' * body}</body></message>")
        if pause_every and i % pause_every == pause_every - 1:
            await asyncio.sleep(0.01)


def reset(raw_writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a crashed client or a middlebox would."""
    sock = raw_writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    raw_writer.transport.abort()


async def wait_for(condition, timeout: float, what) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what()
        await asyncio.sleep(0.05)


def contiguous(received: list[str], sent: list[str]) -> bool:
    """Whether `received` is a run of `sent` without gaps or reordering."""
    if not received:
        return True
    start = sent.index(received[0]) if received[0] in sent else -1
    return start >= 0 and sent[start:start + len(received)] == received


async def finish(tasks: list[asyncio.Task], stop: asyncio.Event) -> None:
    stop.set()
    for result in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(result, BaseException):
            raise result


async def occupant_count(server, room: str) -> tuple[int, set[str]]:
    """Join as a fresh guest and count the occupants the room presents (self excluded)."""
    raw, _ = await RawXmpp.guest(server.c2s_port)
    nick = f"counter{int(time.time() * 1000)}"
    await raw.send(f"<presence to='{room}/{nick}'><x xmlns='{NS_MUC}'><history maxstanzas='0'/></x></presence>")
    nicks = set()
    while True:
        presence = await raw.expect(f"{{{NS_CLIENT}}}presence", timeout=10,
                                    predicate=lambda p: p.get("from", "").startswith(room + "/"))
        who = presence.get("from").split("/", 1)[1]
        if who == nick:
            break
        if presence.get("type") != "unavailable":
            nicks.add(who)
    raw.close()
    return len(nicks), nicks


# -- TCP ----------------------------------------------------------------------------------


@async_test(timeout=60)
async def test_a_session_replaced_while_its_socket_is_lent_gets_conflict_and_nothing_leaks(server):
    """Scenario 1: a second login with the same resource replaces a session the room is
    writing to (RFC 6120 §7.7.2.2), one that stopped reading, so that a direct write stopped
    partway through a stanza and its session holds the rest. The old one gets <conflict/>
    after whole stanzas, in order; the new one, once in the room, gets every message from then
    on, whole; the room sees the old one leave."""
    speaker, room = await new_room(server, "conflictspeaker")
    server.add_user("victim", "pw")
    old = RawXmpp(*await small_window(server.c2s_port))
    await old.open_stream("localhost")
    await old.login_plain("victim", "pw", "same")
    await join_tcp(old, room, "victim")
    old.hold = asyncio.Event()

    stop = asyncio.Event()
    echoes, old_seen = Seen(room, BIG), Seen(room, BIG)
    tasks = [asyncio.create_task(pump_tcp(speaker, echoes, stop)),
             asyncio.create_task(pump_tcp(old, old_seen, stop))]
    first = [f"c1m{i}" for i in range(500)]
    await speak(speaker, room, first, BIG)
    await wait_for(lambda: len(echoes.of("speaker")) == len(first), 15,
                   lambda: f"the speaker's echoes: {len(echoes.of('speaker'))}")

    # The replacement logs in while the old session has a stanza half-written.
    new = await RawXmpp.connect(server.c2s_port)
    await new.open_stream("localhost")
    await new.login_plain("victim", "pw", "same")
    old.hold.set()
    await wait_for(lambda: old_seen.closed, 15, lambda: f"old stream still open: {old.transcript(300)}")
    assert old_seen.stream_error == "conflict", old.transcript(1000)
    got = old_seen.of("speaker")
    assert got and got[0] == first[0] and contiguous(got, first), got[:10]
    await wait_for(lambda: "victim" in echoes.unavailable, 10,
                   lambda: "the room did not see the replaced session leave")

    await join_tcp(new, room, "victim")
    new_seen = Seen(room, BIG)
    tasks.append(asyncio.create_task(pump_tcp(new, new_seen, stop)))
    second = [f"c2m{i}" for i in range(100)]
    await speak(speaker, room, second, BIG)
    await wait_for(lambda: new_seen.of("speaker")[-1:] == second[-1:], 15,
                   lambda: f"the new session got {len(new_seen.of('speaker'))}")
    await finish(tasks, stop)
    assert echoes.of("speaker") == first + second
    assert new_seen.of("speaker") == second
    assert new_seen.stream_error is None

    pong = await new.iq("<iq type='get' id='alive'><ping xmlns='urn:xmpp:ping'/></iq>", "alive")
    assert pong.get("type") == "result"
    for raw in (speaker, old, new):
        raw.close()
    assert_no_panic(server)


@async_test(timeout=60)
async def test_resets_mid_stream_leave_the_others_every_message_whole_and_in_order(server):
    """Scenario 2: 24 occupants get a fast stream; half of them reset their connections
    (SO_LINGER 0) while it flows and come back under new nicks. Half of each half had stopped
    reading, so a direct write stopped partway and its rest waits with the session. The
    others get every message, whole, in order; the room drops the gone ones, with the
    unavailable presence it sends for a lost connection."""
    speaker, room = await new_room(server, "resetspeaker")
    count = 24
    occupants = [await guest_in_room(server, room, f"o{i}", slow=i % 4 < 2) for i in range(count)]
    held = asyncio.Event()
    for i, raw in enumerate(occupants):
        if i % 4 < 2:
            raw.hold = held
    stop = asyncio.Event()
    echoes = Seen(room, BIG)
    seen = [Seen(room, BIG) for _ in occupants]
    tasks = [asyncio.create_task(pump_tcp(speaker, echoes, stop))]
    tasks += [asyncio.create_task(pump_tcp(raw, s, stop)) for raw, s in zip(occupants, seen)]

    first = [f"rm{i}" for i in range(400)]
    speaking = asyncio.create_task(speak(speaker, room, first, BIG, pause_every=50))
    await wait_for(lambda: len(seen[3].of("speaker")) >= 100, 10, lambda: "slow stream")
    gone = list(range(0, count, 2))
    for i in gone:
        tasks[1 + i].cancel()
        reset(occupants[i].writer)
    held.set()
    back = [await guest_in_room(server, room, f"back{i}") for i in gone]
    back_seen = [Seen(room, BIG) for _ in back]
    tasks += [asyncio.create_task(pump_tcp(raw, s, stop)) for raw, s in zip(back, back_seen)]
    await speaking
    # And more once they are all back: they get all of it.
    second = [f"rn{i}" for i in range(100)]
    await speak(speaker, room, second, BIG, pause_every=50)
    sent = first + second
    stayed = [i for i in range(count) if i not in gone]
    await wait_for(lambda: all(seen[i].of("speaker")[-1:] == sent[-1:] for i in stayed)
                   and all(s.of("speaker")[-1:] == sent[-1:] for s in back_seen), 20,
                   lambda: f"behind: {[len(seen[i].of('speaker')) for i in stayed]}, "
                           f"{[len(s.of('speaker')) for s in back_seen]}")
    await wait_for(lambda: all(f"o{i}" in echoes.unavailable for i in gone), 10,
                   lambda: f"not seen leaving: {[i for i in gone if f'o{i}' not in echoes.unavailable]}")
    await finish([t for j, t in enumerate(tasks) if j - 1 not in gone], stop)

    for i in stayed:
        assert seen[i].of("speaker") == sent, (i, len(seen[i].of("speaker")))
    for s in back_seen:
        got = s.of("speaker")
        assert contiguous(got, sent) and got[-len(second):] == second, got[:5]
    assert echoes.of("speaker") == sent
    total, nicks = await occupant_count(server, room)
    assert total == 1 + len(stayed) + len(back), sorted(nicks)
    assert not any(f"o{i}" in nicks for i in gone), sorted(nicks)
    for raw in [speaker] + occupants + back:
        raw.close()
    assert_no_panic(server)


def flood_stanzas(room: str, ids: list[str], body: int) -> list[str]:
    """An occupant's flood: its own room messages, and among them every fifth a message to a
    malformed address, which its session answers itself (RFC 6120 §8.3.3.8 jid-malformed)
    with a write of its own, after taking its socket back from the room."""
    stanzas = []
    for i, message_id in enumerate(ids):
        stanzas.append(f"<message xmlns='jabber:client' to='{room}' type='groupchat' id='{message_id}'>"
                       f"<body>{'x' * body}</body></message>")
        if i % 5 == 0:
            stanzas.append(f"<message xmlns='jabber:client' to='a@b@c' id='bad{message_id}'>"
                           f"<body>{'y' * body}</body></message>")
    return stanzas


class FloodSeen(Seen):
    """Also the errors its session wrote itself, by id."""

    def __init__(self, room: str, body: int):
        super().__init__(room, body)
        self.errors: list[str] = []

    def take(self, element: ET.Element) -> None:
        if element.get("type") == "error" and (element.get("id") or "").startswith("bad"):
            self.errors.append(element.get("id"))
        super().take(element)


@async_test(timeout=60)
async def test_an_occupant_flooding_while_written_to_gets_its_output_whole_and_in_order(server):
    """Scenario 3: an occupant that has stopped reading (a direct write stopped partway, its
    rest with the session) floods the room as fast as the rate limit lets it while the room
    writes to it; its session also answers some of it itself. Its stanzas are all handled;
    what it receives (the speaker's messages, its own echoes, its errors) is whole and in
    order."""
    speaker, room = await new_room(server, "floodspeaker")
    flooder = await guest_in_room(server, room, "flooder", slow=True)
    flooder.hold = asyncio.Event()
    flooder.paced = True
    witness = await guest_in_room(server, room, "witness")
    stop = asyncio.Event()
    echoes, flooded, witnessed = Seen(room, BIG), FloodSeen(room, BIG), Seen(room, BIG)
    tasks = [asyncio.create_task(pump_tcp(speaker, echoes, stop)),
             asyncio.create_task(pump_tcp(flooder, flooded, stop)),
             asyncio.create_task(pump_tcp(witness, witnessed, stop))]
    sent = [f"fs{i}" for i in range(300)]
    own = [f"ff{i}" for i in range(300)]
    await speak(speaker, room, sent[:200], BIG)
    stanzas = flood_stanzas(room, own, BIG)

    async def flood():
        for i, stanza in enumerate(stanzas):
            await flooder.send(stanza)
            if i == len(stanzas) // 2:
                flooder.hold.set()

    await asyncio.gather(speak(speaker, room, sent[200:], BIG), flood())
    everyone = (echoes, flooded, witnessed)
    await wait_for(lambda: all(s.of("speaker")[-1:] == sent[-1:] and s.of("flooder")[-1:] == own[-1:]
                               for s in everyone), 20,
                   lambda: f"{[(len(s.of('speaker')), len(s.of('flooder'))) for s in everyone]}")
    await finish(tasks, stop)
    for s in everyone:
        assert s.of("speaker") == sent and s.of("flooder") == own
        assert s.stream_error is None
    assert flooded.errors == [f"bad{m}" for i, m in enumerate(own) if i % 5 == 0]
    for raw in (speaker, flooder, witness):
        raw.close()
    assert_no_panic(server)


async def bad_input_while_written_to(server, name: str, payload: str, expected: set[str] | None) -> None:
    """An occupant that stopped reading (so its session holds the rest of a stanza a direct
    write began) sends `payload`: after whole stanzas, in order, the stream error (`expected`;
    None: a plain close of the stream); nobody else notices."""
    speaker, room = await new_room(server, name)
    attacker = await guest_in_room(server, room, "attacker", slow=True)
    witness = await guest_in_room(server, room, "witness")
    stop = asyncio.Event()
    echoes, witnessed = Seen(room, BIG), Seen(room, BIG)
    tasks = [asyncio.create_task(pump_tcp(speaker, echoes, stop)),
             asyncio.create_task(pump_tcp(witness, witnessed, stop))]
    sent = [f"bm{i}" for i in range(400)]
    await speak(speaker, room, sent, BIG)
    await wait_for(lambda: echoes.of("speaker")[-1:] == sent[-1:], 15,
                   lambda: f"speaker {len(echoes.of('speaker'))}")
    # Sent while reading (the stream error comes after whole stanzas: the parser checks),
    # so that neither side waits for the other.
    async def send_it() -> None:
        if payload:
            await attacker.try_send(payload)
        else:
            attacker.writer.write_eof()

    sending = asyncio.create_task(send_it())
    if expected is None:
        while (element := await attacker.next_element(15)) is not None:
            assert element.tag != f"{{{NS_STREAM}}}error", tostr(element)
        assert attacker.stream_closed, attacker.transcript(500)
    else:
        await attacker.expect_error_and_close(expected, timeout=15)
    await sending
    await wait_for(lambda: witnessed.of("speaker")[-1:] == sent[-1:], 15,
                   lambda: f"witness {len(witnessed.of('speaker'))}")
    await wait_for(lambda: "attacker" in echoes.unavailable, 10, lambda: "attacker still in the room")
    await finish(tasks, stop)
    assert witnessed.of("speaker") == sent and echoes.of("speaker") == sent
    assert witnessed.stream_error is None
    for raw in (speaker, attacker, witness):
        raw.close()
    assert_no_panic(server)


@async_test(timeout=40)
async def test_an_oversized_stanza_from_a_recipient_being_written_to(server):
    """Scenario 5: a stanza over `limits.max_stanza_bytes` from an occupant the room is writing
    to: <policy-violation/> after whole stanzas, and the others are unaffected."""
    big = "a" * (MAX_STANZA * 2)
    await bad_input_while_written_to(
        server, "bigspeaker", f"<message to='localhost'><body>{big}</body></message>",
        {"policy-violation"})


@async_test(timeout=40)
async def test_a_deeply_nested_stanza_from_a_recipient_being_written_to(server):
    depth = 200
    await bad_input_while_written_to(
        server, "deepspeaker", "<message to='localhost'>" + "<a>" * depth + "</a>" * depth + "</message>",
        {"policy-violation"})


@async_test(timeout=40)
async def test_a_stream_closed_by_a_recipient_being_written_to(server):
    """The TCP twin of the WebSocket close frame: `</stream:stream>` from an occupant whose
    session holds the rest of a stanza; the server closes its stream too (RFC 6120 §4.4),
    after whole stanzas, and the room sees it leave."""
    await bad_input_while_written_to(server, "closespeaker", "</stream:stream>", None)


@async_test(timeout=40)
async def test_a_half_closed_connection_being_written_to(server):
    """The same with the TCP connection half-closed (FIN, no stream close): the server
    ends the session and still writes whole stanzas, then closes."""
    await bad_input_while_written_to(server, "halfclosespeaker", "", None)


# -- WebSocket ----------------------------------------------------------------------------


@async_test(timeout=60)
async def test_websocket_resets_and_floods_mid_stream(server):
    """Scenarios 2 and 3 over WebSocket (each copy one text frame written by the room): 16
    occupants, half of them holding a frame half-written; half reset while the stream flows
    and come back; one floods the room. The others get every message as one whole frame, in
    order."""
    speaker, room = await new_room(server, "wsresetspeaker")
    count = 16
    occupants = [await ws_guest_in_room(server, room, f"w{i}", slow=i % 4 < 2) for i in range(count)]
    held = asyncio.Event()
    for i, ws in enumerate(occupants):
        if i % 4 < 2:
            ws.hold = held
    flooder = await ws_guest_in_room(server, room, "flooder", slow=True)
    flooder.hold = held
    stop = asyncio.Event()
    echoes, flooded = Seen(room, BIG), FloodSeen(room, BIG)
    seen = [Seen(room, BIG) for _ in occupants]
    tasks = [asyncio.create_task(pump_tcp(speaker, echoes, stop)),
             asyncio.create_task(pump_ws(flooder, flooded, stop))]
    occupant_tasks = [asyncio.create_task(pump_ws(ws, s, stop)) for ws, s in zip(occupants, seen)]

    first = [f"wm{i}" for i in range(400)]
    own = [f"wf{i}" for i in range(150)]

    async def flood():
        for i, stanza in enumerate(flood_stanzas(room, own, BIG)):
            await flooder.send(stanza)
            if i % 10 == 0:
                # Its pong may not cut into a frame the room is writing.
                await flooder.write(flooder.frame(Opcode.PING, b"p%d" % i))

    speaking = asyncio.gather(speak(speaker, room, first, BIG, pause_every=50), flood())
    await wait_for(lambda: len(seen[3].of("speaker")) >= 100, 10, lambda: "slow stream")
    gone = list(range(0, count, 2))
    for i in gone:
        occupant_tasks[i].cancel()
        reset(occupants[i].writer)
    held.set()
    back = [await ws_guest_in_room(server, room, f"wback{i}") for i in gone]
    back_seen = [Seen(room, BIG) for _ in back]
    tasks += [asyncio.create_task(pump_ws(ws, s, stop)) for ws, s in zip(back, back_seen)]
    await speaking
    second = [f"wn{i}" for i in range(100)]
    await speak(speaker, room, second, BIG, pause_every=50)
    sent = first + second
    stayed = [i for i in range(count) if i not in gone]
    tasks += [occupant_tasks[i] for i in stayed]
    readers = [seen[i] for i in stayed] + [echoes, flooded]
    await wait_for(lambda: all(s.of("speaker")[-1:] == sent[-1:] and s.of("flooder")[-1:] == own[-1:]
                               for s in readers)
                   and all(s.of("speaker")[-1:] == sent[-1:] for s in back_seen), 20,
                   lambda: f"behind: {[(len(s.of('speaker')), len(s.of('flooder'))) for s in readers]}, "
                           f"{[len(s.of('speaker')) for s in back_seen]}")
    await wait_for(lambda: all(f"w{i}" in echoes.unavailable for i in gone), 10,
                   lambda: f"not seen leaving: {[i for i in gone if f'w{i}' not in echoes.unavailable]}")
    await finish(tasks, stop)
    for s in readers:
        assert s.of("speaker") == sent and s.of("flooder") == own
    assert flooded.errors == [f"bad{m}" for i, m in enumerate(own) if i % 5 == 0]
    for s in back_seen:
        got = s.of("speaker")
        assert contiguous(got, sent) and got[-len(second):] == second, got[:5]
    total, nicks = await occupant_count(server, room)
    assert total == 2 + len(stayed) + len(back), sorted(nicks)
    speaker.close()
    for ws in occupants + back + [flooder]:
        ws.abort()
    assert_no_panic(server)


async def ws_attacker_while_written_to(server, name: str, attack) -> RawWebSocket:
    """A WebSocket occupant that stopped reading (its session holds the rest of a frame a
    direct write began) does `attack(ws)`; returns it, read until closed. Every frame it got
    must be one whole element, its room messages in order; nobody else notices."""
    speaker, room = await new_room(server, name)
    attacker = await ws_guest_in_room(server, room, "attacker", slow=True)
    witness = await ws_guest_in_room(server, room, "witness")
    stop = asyncio.Event()
    echoes, witnessed = Seen(room, BIG), Seen(room, BIG)
    tasks = [asyncio.create_task(pump_tcp(speaker, echoes, stop)),
             asyncio.create_task(pump_ws(witness, witnessed, stop))]
    sent = [f"am{i}" for i in range(400)]
    await speak(speaker, room, sent, BIG)
    await wait_for(lambda: echoes.of("speaker")[-1:] == sent[-1:], 15,
                   lambda: f"speaker {len(echoes.of('speaker'))}")
    attacking = asyncio.create_task(attack(attacker))
    assert await attacker.wait_closed(15), "the attacker's connection is still open"
    await attacking
    await wait_for(lambda: witnessed.of("speaker")[-1:] == sent[-1:], 15,
                   lambda: f"witness {len(witnessed.of('speaker'))}")
    await wait_for(lambda: "attacker" in echoes.unavailable, 10, lambda: "attacker still in the room")
    await finish(tasks, stop)
    assert witnessed.of("speaker") == sent and echoes.of("speaker") == sent
    assert witnessed.stream_error is None and not witness.closed
    got = Seen(room, BIG)
    for text in attacker.texts:
        element = ET.fromstring(text)
        if not element.tag.startswith("{urn:ietf:params:xml:ns:xmpp-framing}"):
            got.take(element)
    assert got.of("speaker") and contiguous(got.of("speaker"), sent), got.of("speaker")[:5]
    speaker.close()
    witness.abort()
    assert_no_panic(server)
    return attacker


@async_test(timeout=40)
async def test_a_websocket_close_frame_in_the_middle_of_a_burst(server):
    """Scenario 4: a close frame while the room writes frames to the socket: the server
    answers with a close of its own (RFC 6455 §5.5.1) after whole frames."""

    async def close(ws: RawWebSocket) -> None:
        await ws.write(ws.frame(Opcode.CLOSE, struct.pack("!H", 1000)))

    attacker = await ws_attacker_while_written_to(server, "wsclosespeaker", close)
    assert attacker.close_code == 1000, attacker.close_code


@async_test(timeout=40)
async def test_a_websocket_frame_over_the_limit_while_written_to(server):
    """Scenario 4: a frame larger than a stanza may be, while the room writes to the socket:
    <policy-violation/> and close code 1009 (as `limits.max_stanza_bytes` says for WebSocket),
    after whole frames."""

    async def huge(ws: RawWebSocket) -> None:
        await ws.write(ws.frame(Opcode.TEXT, b"<message xmlns='jabber:client'><body>"
                                + b"a" * (MAX_STANZA * 4) + b"</body></message>"))

    attacker = await ws_attacker_while_written_to(server, "wshugespeaker", huge)
    assert any("policy-violation" in t for t in attacker.texts), attacker.texts[-3:]
    assert attacker.close_code == 1009, attacker.close_code


@async_test(timeout=40)
async def test_a_replacement_that_joins_at_once_gets_the_room(server):
    """Scenario 1, as a client reconnecting after a network change does it: the replacement
    binds and joins its room in one write, while the session it replaces, in the room and
    written to by it, is busy (changing its password, XEP-0077 §3.3, which takes a while).
    The old session's unavailable presence, which says the same address is leaving, must
    reach the room before the new one's join, or it takes the new one out of the room: the
    replacement must get the room's messages from then on."""
    speaker, room = await new_room(server, "rejoinspeaker")
    server.add_user("rejoiner", "pw")
    old = await RawXmpp.connect(server.c2s_port)
    await old.open_stream("localhost")
    await old.login_plain("rejoiner", "pw", "same")
    await join_tcp(old, room, "rejoiner")
    stop = asyncio.Event()
    echoes, old_seen = Seen(room, BIG), Seen(room, BIG)
    tasks = [asyncio.create_task(pump_tcp(speaker, echoes, stop)),
             asyncio.create_task(pump_tcp(old, old_seen, stop))]
    first = [f"j1m{i}" for i in range(100)]
    await speak(speaker, room, first, BIG)

    new = await RawXmpp.connect(server.c2s_port)
    await new.open_stream("localhost")
    assert (await new.auth_plain("rejoiner", "pw")).tag.endswith("success")
    await new.open_stream()
    await old.send("".join(
        f"<iq type='set' id='pw{i}' to='localhost'><query xmlns='jabber:iq:register'>"
        "<username>rejoiner</username><password>pw</password></query></iq>" for i in range(3)))
    await asyncio.sleep(0.02)
    # Bind, initial presence and the join in one write, as a script (or a client that
    # pipelines) sends them.
    await new.send(f"<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                   f"<resource>same</resource></bind></iq><presence/>"
                   f"<presence to='{room}/rejoiner'><x xmlns='{NS_MUC}'><history maxstanzas='0'/></x></presence>")
    new_seen = Seen(room, BIG)
    tasks.append(asyncio.create_task(pump_tcp(new, new_seen, stop)))
    await wait_for(lambda: old_seen.closed, 15, lambda: "old stream still open")
    assert old_seen.stream_error == "conflict"
    await asyncio.sleep(0.5)
    second = [f"j2m{i}" for i in range(50)]
    await speak(speaker, room, second, BIG)
    await wait_for(lambda: new_seen.of("speaker")[-1:] == second[-1:], 10,
                   lambda: f"the replacement got {new_seen.of('speaker')[-3:]}; "
                           f"the speaker saw leave: {echoes.unavailable}")
    await finish(tasks, stop)
    assert new_seen.of("speaker")[-len(second):] == second
    for raw in (speaker, old, new):
        raw.close()
    assert_no_panic(server)
