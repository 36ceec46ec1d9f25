"""Slowloris on client TCP streams (plain and direct TLS): a logged-in guest that starts a
stanza and then sends one byte a second keeps bytes coming, so no idle bound ends it; it must
be cut off with <policy-violation/> once `limits.stanza_timeout` has passed since the stanza
began (RFC 6120 §4.9.3.14), while other clients keep working and a stanza that is slow but
ends within the bound, or whitespace keepalives between stanzas, are accepted. Bounded in
time (the timeout is 4 s here) and count, loopback only."""

import asyncio
import time

from conftest import server_fixture
from helpers import NS_CLIENT, RawXmpp, async_test, tostr

STANZA_TIMEOUT = 4

server = server_fixture(
    "slowloris",
    require_encryption=False,
    extra_limits={"stanza_timeout": STANZA_TIMEOUT},
)


async def guest(server, tls: bool = False) -> tuple[RawXmpp, str]:
    port = server.tls_port if tls else server.c2s_port
    raw, jid = await RawXmpp.guest(port, tls=tls)
    await raw.expect(f"{{{NS_CLIENT}}}presence")
    return raw, jid


async def ping(raw: RawXmpp, iid: str, timeout: float = 3):
    answer = await raw.iq(
        f"<iq type='get' id='{iid}'><ping xmlns='urn:xmpp:ping'/></iq>", iid, timeout
    )
    assert answer.get("type") == "result", tostr(answer)


async def trickle_until_cut_off(server, tls: bool):
    """A guest starts a message and sends one byte a second; a bystander pings the server
    every second meanwhile. Returns how long after the stanza began the server ended it."""
    server.add_user(f"bystander{int(tls)}", "pw")
    bystander = await RawXmpp.connect(server.c2s_port)
    await bystander.open_stream("localhost")
    await bystander.login_plain(f"bystander{int(tls)}", "pw", "b")
    await bystander.expect(f"{{{NS_CLIENT}}}presence")

    attacker, jid = await guest(server, tls)
    await attacker.send(f"<message to='{jid}' type='chat'><body>")
    began = time.monotonic()

    async def trickle():
        for _ in range(4 * STANZA_TIMEOUT):
            await asyncio.sleep(1)
            if not await attacker.try_send("x"):
                return

    pings = 0

    async def keep_pinging():
        nonlocal pings
        while True:
            await ping(bystander, f"by{pings}")
            pings += 1
            await asyncio.sleep(1)

    trickler = asyncio.create_task(trickle())
    pinger = asyncio.create_task(keep_pinging())
    try:
        condition = await attacker.expect_stream_error(timeout=3 * STANZA_TIMEOUT)
        elapsed = time.monotonic() - began
        assert condition == "policy-violation", attacker.transcript()
        assert "within" in attacker.transcript(), attacker.transcript()
        await attacker.expect_closed(timeout=5)
        # The bystander was answered every second all along (a failed ping ends the task).
        assert not pinger.done(), pinger.exception()
        assert pings >= STANZA_TIMEOUT - 1, pings
    finally:
        trickler.cancel()
        pinger.cancel()
    # The bystander still works after the attacker is gone.
    await ping(bystander, "after")
    bystander.close()
    assert "a stanza took too long to arrive" in server.log_text()
    return elapsed


@async_test(timeout=25)
async def test_c2s_slowloris_a_trickled_stanza_is_cut_off(server):
    elapsed = await trickle_until_cut_off(server, tls=False)
    print(f"\ntrickled stanza (plain TCP): cut off {elapsed:.1f} s after it began")
    # Not before its time, and within a tick of it.
    assert STANZA_TIMEOUT - 0.5 <= elapsed <= STANZA_TIMEOUT + 2.5, elapsed


@async_test(timeout=25)
async def test_c2s_slowloris_a_trickled_stanza_is_cut_off_on_direct_tls(server):
    elapsed = await trickle_until_cut_off(server, tls=True)
    print(f"\ntrickled stanza (direct TLS): cut off {elapsed:.1f} s after it began")
    assert STANZA_TIMEOUT - 0.5 <= elapsed <= STANZA_TIMEOUT + 2.5, elapsed


@async_test(timeout=25)
async def test_c2s_slowloris_slow_stanzas_within_the_bound_are_accepted(server):
    """Two messages each sent over 2.5 s, with whitespace keepalives for 2 s between them:
    more than the bound in all, each stanza within it. Both arrive; the stream stays."""
    raw, jid = await guest(server)
    for n in range(2):
        stanza = f"<message to='{jid}' type='chat' id='slow{n}'><body>slow but sure</body></message>"
        chunk = len(stanza) // 10 + 1
        for i in range(0, len(stanza), chunk):
            await raw.send(stanza[i : i + chunk])
            await asyncio.sleep(0.25)
        echo = await raw.expect(
            f"{{{NS_CLIENT}}}message", timeout=3, predicate=lambda m, n=n: m.get("id") == f"slow{n}"
        )
        assert echo.findtext(f"{{{NS_CLIENT}}}body") == "slow but sure", tostr(echo)
        for _ in range(4):
            await raw.send(" ")
            await asyncio.sleep(0.5)
    await ping(raw, "still-here")
    assert "policy-violation" not in raw.transcript(), raw.transcript()
    raw.close()


@async_test(timeout=25)
async def test_c2s_slowloris_back_to_back_stanzas_each_within_the_bound_are_accepted(server):
    """A busy client whose every write ends inside the next stanza (for 6 s, more than the
    bound): each stanza's time is its own, so nothing is cut off."""
    raw, jid = await guest(server)
    stanzas = [
        f"<message to='{jid}' type='chat' id='b2b{n}'><body>part {n}</body></message>"
        for n in range(7)
    ]
    wire = "".join(stanzas)
    # Cut each write in the middle of a stanza: the first half of one, then the second half
    # with the first half of the next, and so on.
    cuts = [0] + [sum(len(s) for s in stanzas[:n]) + len(stanzas[n]) // 2 for n in range(7)]
    for start, end in zip(cuts, cuts[1:]):
        await raw.send(wire[start:end])
        await asyncio.sleep(1)
    await raw.send(wire[cuts[-1]:])
    for n in range(7):
        await raw.expect(
            f"{{{NS_CLIENT}}}message", timeout=3, predicate=lambda m, n=n: m.get("id") == f"b2b{n}"
        )
    await ping(raw, "busy-still-here")
    assert "policy-violation" not in raw.transcript(), raw.transcript()
    raw.close()

