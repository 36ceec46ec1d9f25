"""What one client can make the server hold for it (issue: anonymous visitors cannot hurt the
server): the XEP-0198 unacknowledged queue is bounded in stanzas and bytes while the client is
connected, and a client that stops reading is cut off within `limits.write_timeout` and leaves
its rooms, so others do not keep seeing a ghost. Bounded in time and count, loopback only."""

import asyncio
import socket
import time

from conftest import server_fixture
from helpers import NS_CLIENT, RawXmpp, async_test, rss_mib, tostr

NS_SM = "urn:xmpp:sm:3"
NS_MUC = "http://jabber.org/protocol/muc"

server = server_fixture(
    "limits",
    require_encryption=False,
    extra_limits={
        "unacked_stanzas": 50,
        "unacked_bytes": 256 * 1024,
        "write_timeout": 2,
        "unauthenticated_bytes": 16384,
    },
)


async def logged_in(server, user: str, resource: str = "r") -> tuple[RawXmpp, str]:
    raw = await RawXmpp.connect(server.c2s_port)
    assert await raw.open_stream("localhost") is not None
    full = await raw.login_plain(user, "pw", resource)
    # The echo of the initial presence comes before any counting starts.
    await raw.expect(f"{{{NS_CLIENT}}}presence")
    return raw, full


async def flood_self_until_closed(raw: RawXmpp, full: str, count: int, body: str) -> str:
    """Send `count` messages to our own resource without ever acknowledging, reading all the
    while; the stream error that ends it."""
    await raw.send(f"<enable xmlns='{NS_SM}'/>")
    await raw.expect(f"{{{NS_SM}}}enabled")
    for i in range(count):
        if not await raw.try_send(
            f"<message to='{full}' type='chat' id='m{i}'><body>{body}</body></message>"
        ):
            break
        await asyncio.sleep(0.005)
    return await raw.expect_stream_error(timeout=15)


@async_test()
async def test_a_client_that_never_acknowledges_is_cut_off_by_count(server):
    server.add_user("neverack", "pw")
    raw, full = await logged_in(server, "neverack")
    condition = await flood_self_until_closed(raw, full, 80, "x")
    assert condition == "policy-violation", raw.transcript()
    assert "unacknowledged" in raw.transcript()


@async_test()
async def test_a_client_that_never_acknowledges_is_cut_off_by_size(server):
    """Twelve 30 KB messages are far fewer than 50 stanzas but more than 256 KiB."""
    server.add_user("neverackbig", "pw")
    before = rss_mib(server.proc.pid)
    raw, full = await logged_in(server, "neverackbig")
    started = time.monotonic()
    condition = await flood_self_until_closed(raw, full, 12, "y" * 30_000)
    print(f"\nnever acknowledging, 30 KB messages: cut off after {time.monotonic() - started:.1f} s; "
          f"RSS {before:.0f} -> {rss_mib(server.proc.pid):.0f} MiB")
    assert condition == "policy-violation", raw.transcript(600)


@async_test()
async def test_a_client_that_acknowledges_is_not_cut_off(server):
    server.add_user("goodack", "pw")
    raw, full = await logged_in(server, "goodack")
    await raw.send(f"<enable xmlns='{NS_SM}'/>")
    await raw.expect(f"{{{NS_SM}}}enabled")
    received = 0
    for i in range(120):
        await raw.send(f"<message to='{full}' type='chat' id='g{i}'><body>ok</body></message>")
        await raw.expect(f"{{{NS_CLIENT}}}message", predicate=lambda m, i=i: m.get("id") == f"g{i}")
        received += 1
        if i % 10 == 9:
            await raw.send(f"<a xmlns='{NS_SM}' h='{received}'/>")
    await raw.send("<iq type='get' id='alive'><ping xmlns='urn:xmpp:ping'/></iq>")
    await raw.expect(f"{{{NS_CLIENT}}}iq", predicate=lambda q: q.get("id") == "alive")
    raw.close()


@async_test(timeout=60)
async def test_a_client_that_stops_reading_leaves_its_room_in_seconds(server):
    server.add_user("stuckreader", "pw")
    server.add_user("talker", "pw")
    room = f"slow{int(time.time() * 1000)}@{server.muc_domain}"

    # The talker creates the room (and may speak in it).
    talker, _ = await logged_in(server, "talker", "t")
    await talker.send(f"<presence to='{room}/talker'><x xmlns='{NS_MUC}'/></presence>")
    await talker.expect(f"{{{NS_CLIENT}}}presence", predicate=lambda p: p.get("from") == f"{room}/talker")
    # An instant room (XEP-0045 §10.1.2), so that others may join at once.
    await talker.send(
        f"<iq type='set' id='instant' to='{room}'><query xmlns='{NS_MUC}#owner'>"
        "<x xmlns='jabber:x:data' type='submit'/></query></iq>"
    )
    configured = await talker.expect(f"{{{NS_CLIENT}}}iq", predicate=lambda q: q.get("id") == "instant")
    assert configured.get("type") == "result", tostr(configured)


    # The reader's receive window is tiny, so the server's writes to it soon block.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.c2s_port))
    reader, writer = await asyncio.open_connection(sock=sock)
    stuck = RawXmpp(reader, writer)
    await stuck.open_stream("localhost")
    await stuck.login_plain("stuckreader", "pw", "r")
    await stuck.send(f"<presence to='{room}/stuck'><x xmlns='{NS_MUC}'/></presence>")
    joined = await stuck.expect(f"{{{NS_CLIENT}}}presence", predicate=lambda p: p.get("from") == f"{room}/stuck")
    assert joined.get("type") is None, tostr(joined)

    # The stuck client reads nothing from here on. The talker fills its queue: 5 MB of room
    # messages, read back by the talker itself as the room echoes them.
    body = "z" * 25_000
    left = asyncio.Event()

    async def watch_for_leave():
        await talker.expect(
            f"{{{NS_CLIENT}}}presence",
            timeout=45,
            predicate=lambda p: p.get("from") == f"{room}/stuck" and p.get("type") == "unavailable",
        )
        left.set()

    watcher = asyncio.create_task(watch_for_leave())
    before = peak = rss_mib(server.proc.pid)
    started = time.monotonic()
    for i in range(200):
        if left.is_set():
            break
        await talker.send(f"<message to='{room}' type='groupchat' id='s{i}'><body>{body}</body></message>")
        await asyncio.sleep(0.01)
        peak = max(peak, rss_mib(server.proc.pid))
    await asyncio.wait_for(watcher, 45)
    elapsed = time.monotonic() - started
    print(f"\nstuck reader: left the room after {elapsed:.1f} s; "
          f"RSS {before:.0f} -> peak {peak:.0f} MiB")
    # Before the bound, the session stayed in its blocked write (and in the room) for minutes.
    assert elapsed < 20, f"the stuck reader left the room only after {elapsed:.1f} s"
    stuck.close()
    talker.close()


@async_test()
async def test_a_peer_that_keeps_talking_before_login_is_cut_off(server):
    """Whitespace between stanzas is legal and never completes an element: without a bound, a
    peer could keep the server parsing until the authentication timeout."""
    raw = await RawXmpp.connect(server.c2s_port)
    await raw.open_stream("localhost")
    sent = 0
    while sent < 64 * 1024 and await raw.try_send(b" " * 4096):
        sent += 4096
        await asyncio.sleep(0.01)
    condition = await raw.expect_stream_error(timeout=10)
    assert condition == "policy-violation", raw.transcript()
    assert "before authentication" in raw.transcript()


@async_test()
async def test_a_normal_login_stays_well_under_the_unauthenticated_bound(server):
    server.add_user("normal", "pw")
    raw, full = await logged_in(server, "normal")
    assert full.startswith("normal@")
    raw.close()
