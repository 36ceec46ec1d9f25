"""Parsed-XML amplification before login (issue 11, item 2).

An empty element is four bytes on the wire (`<a/>`) but a few hundred once parsed: a stanza of
60,000 of them stays under the 256 KiB byte limit and used to become ≈ 13 MiB of tree, held for as
long as the stanza stayed unfinished. Each test opens a bounded number of loopback connections,
each sending one unfinished stanza before authenticating, and reads the server's resident memory
from /proc/PID/status. Run with `-s` to see the figures (recorded in docs/configuration.md).
"""

import asyncio

import pytest

from conftest import start_server
from helpers import RawXmpp, async_test, rss_mib

CONNECTIONS = 40  # under the default limits.connections_per_ip (64)
FLOOD_ELEMENTS = 60_000  # 240 KB of `<a/>`: under max_stanza_bytes, over max_stanza_elements
HELD_ELEMENTS = 4_000  # just under the default max_stanza_elements (4096)


@pytest.fixture
def server(tmp_path_factory):
    """A fresh server per test, so that one test's memory does not show in the next."""
    # The attacks here happen before login; the bound on what a peer may send before it
    # authenticates (limits.unauthenticated_bytes, tested in test_session_limits.py) would cut
    # them first, so it is raised to let the parser's own caps be what these tests see.
    srv = start_server(
        tmp_path_factory,
        "parsermem",
        require_encryption=False,
        extra_limits={"unauthenticated_bytes": 64 * 1024 * 1024},
    )
    try:
        yield srv
    finally:
        srv.stop()


async def open_unfinished(server, count: int, payload: bytes) -> list[RawXmpp]:
    raws = []
    for _ in range(count):
        raw = await RawXmpp.connect(server.c2s_port)
        await raw.open_stream()
        raws.append(raw)
    for raw in raws:
        await raw.try_send(payload)
    return raws


@async_test(timeout=120)
async def test_empty_element_flood_is_cut_with_policy_violation(server):
    pid = server.proc.pid
    before = rss_mib(pid)
    payload = b"<message to='localhost'>" + b"<a/>" * FLOOD_ELEMENTS
    raws = await open_unfinished(server, CONNECTIONS, payload)
    try:
        await asyncio.sleep(1.0)
        held = rss_mib(pid)
        print(f"\n{CONNECTIONS} connections x {FLOOD_ELEMENTS} empty elements: "
              f"RSS {before:.0f} -> {held:.0f} MiB")
        for raw in raws:
            cond = await raw.expect_error_and_close({"policy-violation"}, timeout=10)
            assert cond == "policy-violation"
            assert "elements" in raw.transcript() or "memory" in raw.transcript(), raw.transcript()
        assert held - before < 64, f"server grew {held - before:.0f} MiB under the flood"
    finally:
        for raw in raws:
            raw.close()
    server.assert_running()


@async_test(timeout=120)
async def test_unfinished_stanzas_at_the_cap_hold_bounded_memory(server):
    """Stanzas just under the caps are allowed to wait; what they hold is bounded per connection."""
    pid = server.proc.pid
    before = rss_mib(pid)
    payload = b"<message to='localhost'>" + b"<a/>" * HELD_ELEMENTS
    raws = await open_unfinished(server, CONNECTIONS, payload)
    try:
        await asyncio.sleep(1.0)
        held = rss_mib(pid)
        print(f"\n{CONNECTIONS} connections x {HELD_ELEMENTS} empty elements (held): "
              f"RSS {before:.0f} -> {held:.0f} MiB")
        for raw in raws:
            try:
                await raw._read_more(0.05)
            except asyncio.TimeoutError:
                pass  # nothing to read: still open, as it should be
            assert not raw.eof and b"error" not in raw.received, (
                f"a stanza under the caps was cut:\n{raw.transcript()}"
            )
        # limits.max_stanza_memory (1 MiB) per connection, with room for allocator slack.
        assert held - before < CONNECTIONS * 2, f"server grew {held - before:.0f} MiB"
    finally:
        for raw in raws:
            raw.close()
    server.assert_running()


@async_test(timeout=60)
async def test_attribute_flood_hits_the_memory_cap(server):
    """Under the element cap, many attributes per element still end at the memory cap."""
    attributes = "".join(f" b{i}=''" for i in range(60))
    payload = ("<message to='localhost'>" + f"<a{attributes}/>" * 600).encode()
    raw = await RawXmpp.connect(server.c2s_port)
    try:
        await raw.open_stream()
        await raw.try_send(payload)
        await raw.expect_error_and_close({"policy-violation"}, timeout=10)
        assert "memory" in raw.transcript(), raw.transcript()
    finally:
        raw.close()
    server.assert_running()
