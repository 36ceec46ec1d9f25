"""Room history memory (issue 11, item 2): a room keeps its last messages for history on join
as the bytes already serialised for the fan-out, not as parsed trees. An empty element is a few
bytes on the wire and a few hundred parsed, so one guest's 20 messages of 4,000 empty elements
each (under `limits.max_stanza_elements`) used to pin tens of MiB in a room's history. Run with
`-s` to see the figures (recorded in docs/configuration.md)."""

import asyncio

import pytest

from conftest import start_server
from helpers import NS_CLIENT, RawXmpp, async_test, rss_mib, tostr

MESSAGES = 20  # the default history length of a room
ELEMENTS = 4_000  # just under the default max_stanza_elements (4096)


@pytest.fixture
def server(tmp_path_factory):
    """A fresh server, so that another test's memory does not show here."""
    srv = start_server(tmp_path_factory, "historymem", require_encryption=False)
    try:
        yield srv
    finally:
        srv.stop()


async def guest(server) -> RawXmpp:
    raw = await RawXmpp.connect(server.c2s_port)
    await raw.open_stream("anon.localhost")
    result = await raw.auth("ANONYMOUS", b"")
    assert result.tag.endswith("success"), tostr(result)
    await raw.open_stream()
    await raw.bind()
    return raw


@async_test(timeout=120)
async def test_history_of_large_messages_is_kept_as_bytes(server):
    room = "heavy@rooms.localhost"
    raw = await guest(server)
    await raw.send(f"<presence to='{room}/Heavy'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
    await raw.expect(f"{{{NS_CLIENT}}}presence", predicate=lambda p: p.get("from") == f"{room}/Heavy")
    await raw.send(f"<iq type='set' to='{room}' id='inst'><query xmlns='http://jabber.org/protocol/muc#owner'>"
                   f"<x xmlns='jabber:x:data' type='submit'/></query></iq>")
    await raw.expect(f"{{{NS_CLIENT}}}iq", predicate=lambda i: i.get("id") == "inst")

    pid = server.proc.pid
    await asyncio.sleep(0.5)
    before = rss_mib(pid)
    filler = "<a/>" * ELEMENTS
    for n in range(MESSAGES):
        await raw.send(f"<message to='{room}' type='groupchat' id='h{n}'><body>{n}</body>{filler}</message>")
        await raw.expect(f"{{{NS_CLIENT}}}message", predicate=lambda m, n=n: m.get("id") == f"h{n}")
    await asyncio.sleep(0.5)
    after = rss_mib(pid)
    print(f"\n{MESSAGES} messages x {ELEMENTS} empty elements in a room's history: "
          f"RSS {before:.0f} -> {after:.0f} MiB")

    # The history is all there for a newcomer.
    newcomer = await guest(server)
    await newcomer.send(f"<presence to='{room}/Newcomer'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
    for n in range(MESSAGES):
        old = await newcomer.expect(f"{{{NS_CLIENT}}}message", predicate=lambda m, n=n: m.get("id") == f"h{n}")
        assert len(list(old)) >= ELEMENTS, f"message {n} came back cut"
        assert old.find("{urn:xmpp:delay}delay") is not None, tostr(old)[:300]
    assert after - before < 12, f"the history pinned {after - before:.0f} MiB"
    raw.close()
    newcomer.close()
    server.assert_running()
