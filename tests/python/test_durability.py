"""Nothing the server has shown as sent is lost to a crash (issue: anonymous visitors cannot
hurt the server, item 8): a room archives a message durably before it echoes it, so after a
SIGKILL in the middle of a steady stream every echoed message is in the room's archive.
Bounded in time and count, loopback only."""

import asyncio
import sqlite3
import time

import pytest

from conftest import start_server
from helpers import NS_CLIENT, RawXmpp, async_test, tostr

NS_MUC = "http://jabber.org/protocol/muc"
NS_SID = "urn:xmpp:sid:0"
NS_MAM = "urn:xmpp:mam:2"
SENDERS = 3
ROUNDS = 2


@pytest.fixture
def server(tmp_path_factory):
    srv = start_server(tmp_path_factory, "durability", require_encryption=False)
    try:
        yield srv
    finally:
        srv.stop()


async def joined(server, user: str, room: str, nick: str, create: bool = False) -> RawXmpp:
    raw = await RawXmpp.connect(server.c2s_port)
    await raw.open_stream("localhost")
    await raw.login_plain(user, "pw", "r")
    await raw.expect(f"{{{NS_CLIENT}}}presence")
    await raw.send(f"<presence to='{room}/{nick}'><x xmlns='{NS_MUC}'/></presence>")
    await raw.expect(
        f"{{{NS_CLIENT}}}presence", predicate=lambda p: p.get("from") == f"{room}/{nick}"
    )
    if create:
        # A persistent room, so that it is there after the restart.
        await raw.send(
            f"<iq type='set' id='config' to='{room}'><query xmlns='{NS_MUC}#owner'>"
            "<x xmlns='jabber:x:data' type='submit'>"
            f"<field var='FORM_TYPE'><value>{NS_MUC}#roomconfig</value></field>"
            "<field var='muc#roomconfig_persistentroom'><value>1</value></field>"
            "</x></query></iq>"
        )
        done = await raw.expect(f"{{{NS_CLIENT}}}iq", predicate=lambda q: q.get("id") == "config")
        assert done.get("type") == "result", tostr(done)
    return raw


async def stream_until_killed(server, room: str, round_: int) -> set[str]:
    """Senders stream groupchat messages while a watcher counts the room's echoes; the server
    is killed mid-stream. Returns the stanza ids of the messages the watcher saw."""
    watcher = await joined(server, "watcher", room, f"watch{round_}", create=round_ == 0)
    senders = [await joined(server, f"sender{n}", room, f"s{n}r{round_}") for n in range(SENDERS)]
    seen: set[str] = set()

    async def watch():
        while True:
            try:
                element = await watcher.next_element(timeout=10)
            except (AssertionError, ConnectionError):
                return
            if element is None:
                return
            sid = element.find(f"{{{NS_SID}}}stanza-id")
            if element.get("type") == "groupchat" and sid is not None:
                seen.add(sid.get("id"))

    async def send(raw: RawXmpp, n: int):
        for i in range(100_000):
            if not await raw.try_send(
                f"<message to='{room}' type='groupchat' id='r{round_}s{n}m{i}'>"
                f"<body>round {round_} sender {n} message {i}</body></message>"
            ):
                return
            await asyncio.sleep(0.001)

    watching = asyncio.create_task(watch())
    sending = [asyncio.create_task(send(raw, n)) for n, raw in enumerate(senders)]
    deadline = time.monotonic() + 10
    while len(seen) < 400 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    server.proc.kill()
    server.proc.wait(timeout=10)
    await asyncio.wait_for(watching, 15)
    for task in sending:
        task.cancel()
    for raw in [watcher, *senders]:
        raw.close()
    return seen


def archived_ids(server, room: str) -> set[str]:
    db = sqlite3.connect(server.data_dir / "salon.db")
    try:
        return {row[0] for row in db.execute(
            "SELECT id FROM archive_messages WHERE archive = ?", (room,)
        )}
    finally:
        db.close()


@async_test(timeout=120)
async def test_every_echoed_room_message_survives_a_sigkill(server):
    for user in ["watcher", *[f"sender{n}" for n in range(SENDERS)]]:
        server.add_user(user, "pw")
    room = f"durable{int(time.time() * 1000)}@{server.muc_domain}"
    echoed: set[str] = set()
    for round_ in range(ROUNDS):
        seen = await stream_until_killed(server, room, round_)
        assert len(seen) >= 100, f"round {round_}: only {len(seen)} echoes before the kill"
        echoed |= seen
        server.restart()

    lost = echoed - archived_ids(server, room)
    assert not lost, f"{len(lost)} of {len(echoed)} echoed messages missing from the archive"

    # The archive the clients see (XEP-0313) ends with the last message echoed before the
    # last kill, or one after it that was stored but not yet echoed.
    raw = await joined(server, "watcher", room, "reader")
    await raw.send(
        f"<iq type='set' id='mam' to='{room}'><query xmlns='{NS_MAM}' queryid='q'>"
        "<set xmlns='http://jabber.org/protocol/rsm'><max>250</max><before/></set>"
        "</query></iq>"
    )
    results = []
    while True:
        element = await raw.next_element()
        assert element is not None, raw.transcript()
        if element.tag == f"{{{NS_CLIENT}}}iq" and element.get("id") == "mam":
            assert element.get("type") == "result", tostr(element)
            break
        result = element.find(f"{{{NS_MAM}}}result")
        if result is not None:
            results.append(result.get("id"))
    assert len(results) == 250, f"the archive query returned {len(results)} messages"
    assert echoed & set(results), "none of the last archived messages was one echoed"
    raw.close()
