"""Room messages written straight to a recipient's socket by the room (docs/ARCHITECTURE.md,
"The path of a stanza"): a reader that falls behind makes those writes stop partway through a
stanza, hand the rest to its session and queue what follows. Nothing may be torn, lost or
reordered on the way, and the reader, once it catches up, keeps the fast path. Bounded in time
and count, loopback only."""

import asyncio
import time

import xml.etree.ElementTree as ET

from conftest import server_fixture
from helpers import NS_CLIENT, RawXmpp, async_test, tostr
from room_helpers import NS_MUC, small_window, speaker_in_new_room
from websocket_helpers import RawWebSocket, open_anonymous

# Pings every second: while the socket is lent, a ping must wait for the session to take it
# back rather than cut into a frame another task is writing.
server = server_fixture("order", require_encryption=False, http={"websocket_ping_interval": 1})


async def join(raw: RawXmpp, room: str, nick: str) -> None:
    await raw.send(f"<presence to='{room}/{nick}'><x xmlns='{NS_MUC}'/></presence>")
    await raw.expect(f"{{{NS_CLIENT}}}presence", predicate=lambda p: p.get("from") == f"{room}/{nick}")


async def small_window_client(server) -> RawXmpp:
    """A client whose receive buffer is tiny, so that the server's writes soon fill it."""
    return RawXmpp(*await small_window(server.c2s_port))


async def room_messages(raw: RawXmpp, room: str, count: int, timeout: float) -> list[str]:
    ids = []
    deadline = time.monotonic() + timeout
    while len(ids) < count:
        message = await raw.expect(
            f"{{{NS_CLIENT}}}message",
            timeout=max(0.1, deadline - time.monotonic()),
            predicate=lambda m: m.get("type") == "groupchat" and m.get("from", "").startswith(room + "/"),
        )
        body = message.find(f"{{{NS_CLIENT}}}body")
        assert body is not None and len(body.text or "") == 30000, tostr(message)[:300]
        ids.append(message.get("id"))
    return ids


async def speak(speaker: RawXmpp, room: str, sent: list[str]) -> asyncio.Task:
    """Send `sent` to the room, 30 KB each, reading the echoes (which go the same way) as it
    goes; they must come back whole and in order too."""
    echoes = asyncio.create_task(room_messages(speaker, room, len(sent), timeout=40))
    for message_id in sent:
        await speaker.send(
            f"<message to='{room}' type='groupchat' id='{message_id}'><body>{'x' * 30000}</body></message>"
        )
    return echoes


@async_test(timeout=90)
async def test_a_websocket_reader_that_falls_behind_gets_every_frame_whole_and_in_order(server):
    speaker, room = await speaker_in_new_room(server, "wsorderspeaker")
    ws = await RawWebSocket.connect(server.http_port)
    await open_anonymous(ws)
    await ws.send(f"<presence xmlns='jabber:client' to='{room}/visitor'><x xmlns='{NS_MUC}'/></presence>")
    while f"from='{room}/visitor'" not in (await ws.recv(timeout=10) or ""):
        pass

    for round_ in range(2):
        sent = [f"w{round_}m{i}" for i in range(150)]
        echoes = await speak(speaker, room, sent)
        await asyncio.sleep(1.5)
        # Each WebSocket message is one whole stanza (RFC 7395 §3.3.3), in order.
        received = []
        while len(received) < len(sent):
            text = await ws.recv(timeout=30)
            assert text is not None, f"closed after {len(received)}: {ws.said()[-300:]}"
            stanza = ET.fromstring(text)
            if stanza.get("type") == "groupchat" and stanza.get("from", "").startswith(room + "/"):
                body = stanza.find(f"{{{NS_CLIENT}}}body")
                assert body is not None and len(body.text or "") == 30000, text[:300]
                received.append(stanza.get("id"))
        assert received == sent, f"round {round_}: {received[:5]}… against {sent[:5]}…"
        assert await echoes == sent

    await ws.send("<iq xmlns='jabber:client' type='get' id='alive'><ping xmlns='urn:xmpp:ping'/></iq>")
    while "id='alive'" not in (await ws.recv(timeout=10) or "id='alive'"):
        pass
    assert not ws.closed, ws.said()[-300:]
    speaker.close()


@async_test(timeout=90)
async def test_a_reader_that_falls_behind_gets_every_room_message_whole_and_in_order(server):
    speaker, room = await speaker_in_new_room(server, "orderspeaker")
    server.add_user("orderreader", "pw")
    reader = await small_window_client(server)
    await reader.open_stream("localhost")
    await reader.login_plain("orderreader", "pw", "r")
    await join(reader, room, "reader")

    for round_ in range(2):
        # The reader stops reading while 150 messages of 30 KB (4.5 MB) arrive: far more
        # than the socket buffers hold, so a direct write ends partway through a stanza and
        # the rest wait in the reader's queue (well below its bound of 2,048).
        sent = [f"r{round_}m{i}" for i in range(150)]
        echoes = await speak(speaker, room, sent)
        await asyncio.sleep(1.0)
        # Caught up: every message, whole (the parser would fail on a torn one), in order.
        received = await room_messages(reader, room, len(sent), timeout=30)
        assert received == sent, f"round {round_}: {received[:5]}… against {sent[:5]}…"
        assert await echoes == sent

    # Still in the room and answering: the session was not cut off on the way.
    await reader.send("<iq type='get' id='alive'><ping xmlns='urn:xmpp:ping'/></iq>")
    pong = await reader.expect(f"{{{NS_CLIENT}}}iq", predicate=lambda q: q.get("id") == "alive")
    assert pong.get("type") == "result", tostr(pong)
    reader.close()
    speaker.close()
