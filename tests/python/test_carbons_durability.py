"""Message Carbons (XEP-0280) never show what a crash could lose (issue 11, durability): a
client that sees a carbon of a message, sent or received by another client of its account,
finds that message in the account's archive after a SIGKILL. Bounded in time and rounds,
loopback only."""

import asyncio
import time

from durability_helpers import (archived_stanzas, durability_server, elements, kill,
                                logged_in)
from helpers import NS_CLIENT, RawXmpp, async_test, tostr

NS_CARBONS = "urn:xmpp:carbons:2"
NS_FORWARD = "urn:xmpp:forward:0"
# Rounds of stream-and-kill; the window a carbon could slip through is a few milliseconds, so
# one round may miss it. Bounded by count and by time.
ROUNDS = 16
TIME_BUDGET = 60.0


server = durability_server("carbons-durability")


async def client(server, user: str, resource: str, carbons: bool) -> RawXmpp:
    raw = await logged_in(server, user, resource)
    if carbons:
        await raw.send(f"<iq type='set' id='carbons'><enable xmlns='{NS_CARBONS}'/></iq>")
        done = await raw.expect(f"{{{NS_CLIENT}}}iq", predicate=lambda q: q.get("id") == "carbons")
        assert done.get("type") == "result", tostr(done)
    return raw


async def record_carbons(raw: RawXmpp, direction: str, seen: set[str]):
    """Add the id of every message `raw` sees a `direction` carbon of, until the stream ends."""
    async for element in elements(raw):
        forwarded = element.find(f"{{{NS_CARBONS}}}{direction}/{{{NS_FORWARD}}}forwarded")
        if forwarded is None:
            continue
        inner = forwarded.find(f"{{{NS_CLIENT}}}message")
        if inner is not None and inner.get("id"):
            seen.add(inner.get("id"))


async def drain(raw: RawXmpp):
    """Read and drop what the recipient gets, so that its queue never fills."""
    async for _ in elements(raw):
        pass


async def stream_until_killed(server, round_: int) -> tuple[set[str], set[str]]:
    """alice/phone streams chats to bob/phone; alice/desk records the sent carbons and
    bob/desk the received ones; the server is killed -9 right after a carbon was seen."""
    phone = await client(server, "alice", "phone", carbons=False)
    alice_desk = await client(server, "alice", "desk", carbons=True)
    bob_phone = await client(server, "bob", "phone", carbons=False)
    bob_desk = await client(server, "bob", "desk", carbons=True)
    sent_seen: set[str] = set()
    received_seen: set[str] = set()
    tasks = [
        asyncio.create_task(record_carbons(alice_desk, "sent", sent_seen)),
        asyncio.create_task(record_carbons(bob_desk, "received", received_seen)),
        asyncio.create_task(drain(bob_phone)),
        asyncio.create_task(drain(phone)),
    ]

    async def send():
        for i in range(100_000):
            mid = f"c{round_}m{i}"
            if not await phone.try_send(
                f"<message to='bob@localhost/phone' type='chat' id='{mid}'><body>{mid}</body></message>"
            ):
                return
            await asyncio.sleep(0.0005)

    sending = asyncio.create_task(send())
    # Killed at a point that moves from round to round, checked often so that the kill lands
    # right after carbons were read.
    target = 150 + 60 * round_
    deadline = time.monotonic() + 10
    while (len(sent_seen) < target or len(received_seen) < target) and time.monotonic() < deadline:
        await asyncio.sleep(0.0005)
    kill(server)
    sending.cancel()
    for task in tasks:
        await asyncio.wait_for(task, 15)
    for raw in [phone, alice_desk, bob_phone, bob_desk]:
        raw.close()
    return sent_seen, received_seen


@async_test(timeout=150)
async def test_every_carbon_seen_is_in_the_archive_after_a_sigkill(server):
    server.add_user("alice", "pw")
    server.add_user("bob", "pw")
    sent_seen: set[str] = set()
    received_seen: set[str] = set()
    started = time.monotonic()
    for round_ in range(ROUNDS):
        if round_ > 0 and time.monotonic() - started > TIME_BUDGET:
            break
        sent, received = await stream_until_killed(server, round_)
        assert len(sent) >= 50 and len(received) >= 50, (round_, len(sent), len(received))
        sent_seen |= sent
        received_seen |= received
        server.restart()

    alices = "\n".join(archived_stanzas(server, "alice@localhost"))
    lost_sent = sorted(mid for mid in sent_seen if f"id='{mid}'" not in alices)
    bobs = "\n".join(archived_stanzas(server, "bob@localhost"))
    lost_received = sorted(mid for mid in received_seen if f"id='{mid}'" not in bobs)
    assert not lost_sent and not lost_received, (
        f"{len(lost_sent)} of {len(sent_seen)} sent carbons missing from alice's archive"
        f" {lost_sent[:5]}; {len(lost_received)} of {len(received_seen)} received carbons"
        f" missing from bob's archive {lost_received[:5]}"
    )
