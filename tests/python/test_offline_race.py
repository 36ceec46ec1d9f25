"""Offline storage against a recipient that comes online at the same moment (RFC 6121
§8.5.2.2): a message that finds no available resource is written to offline storage while
the recipient's initial presence takes what is stored. Whichever of the two finishes last
must hand the message over, so it is delivered once, live or from storage, never left behind
in storage while the recipient is online. Bounded: a fixed number of rounds on loopback."""

import asyncio

from conftest import server_fixture
from helpers import NS_CLIENT, RawXmpp, async_test, uid

server = server_fixture("offline-race", require_encryption=False)

ROUNDS = 24


async def bound_without_presence(server, user: str, password: str) -> RawXmpp:
    """A session that has bound a resource but not yet sent its initial presence."""
    raw = await RawXmpp.connect(server.c2s_port)
    await raw.open_stream(server.domain)
    result = await raw.auth_plain(user, password)
    assert result.tag.endswith("success"), "login failed"
    await raw.open_stream(server.domain)
    await raw.bind("r" + uid())
    return raw


@async_test(timeout=120)
async def test_message_racing_initial_presence_is_delivered_once(server):
    a_jid, a_pw = server.new_user("race-a")
    b_jid, b_pw = server.new_user("race-b")
    alice = await RawXmpp.connect(server.c2s_port)
    await alice.open_stream(server.domain)
    await alice.login_plain(a_jid.split("@")[0], a_pw, "r")
    missing = []
    try:
        for n in range(ROUNDS):
            bob = await bound_without_presence(server, b_jid.split("@")[0], b_pw)
            try:
                mid = f"race-{n}-{uid()}"
                message = (
                    f"<message to='{b_jid}' type='chat' id='{mid}'><body>round {n}</body></message>"
                )
                # The message goes first; the presence follows after 0 to ~2 ms, so that the
                # presence's take of stored messages lands inside the message's storage write
                # in some of the rounds.
                await alice.send(message)
                await asyncio.sleep((n % 6) * 0.0004)
                await bob.send("<presence/>")
                try:
                    got = await bob.expect(
                        f"{{{NS_CLIENT}}}message", timeout=4,
                        predicate=lambda m: m.get("id") == mid)
                except AssertionError:
                    missing.append(n)
                    continue
                assert got.find(f"{{{NS_CLIENT}}}body").text == f"round {n}"
                # Delivered once: nothing else with that id follows.
                again = None
                try:
                    again = await bob.expect(
                        f"{{{NS_CLIENT}}}message", timeout=0.3,
                        predicate=lambda m: m.get("id") == mid)
                except AssertionError:
                    pass
                assert again is None, f"round {n}: message delivered twice"
            finally:
                bob.close()
                # Let the server see bob go before the next round, so the next message finds
                # no available resource again.
                await asyncio.sleep(0.15)
        assert not missing, (
            f"messages left in offline storage while their recipient was online, rounds {missing}"
        )
    finally:
        alice.close()
