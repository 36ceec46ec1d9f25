"""Abuse controls for anonymous visitors (issue: anonymous visitors cannot hurt the server,
items 9 and 10): logins per address, rooms created per creator and per address in an hour,
upload slots (zero-byte ones too) per hour and against the quota, and server-wide bans from
the command line that a running server applies. Every client comes from its own loopback
address (127.0.0.0/8), as separate machines would. Bounded in time and count."""

import asyncio
import time

from conftest import server_fixture
from helpers import NS_CLIENT, RawXmpp, async_test, stanza_error_condition, tostr, uid

NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_STREAM = "http://etherx.jabber.org/streams"
NS_MUC = "http://jabber.org/protocol/muc"
NS_UPLOAD = "urn:xmpp:http:upload:0"

server = server_fixture(
    "abuse",
    require_encryption=False,
    extra_limits={"logins_per_minute": 5},
    muc={"rooms_per_hour": 3, "rooms_per_hour_per_address": 5},
    upload={"quota_per_day": 3 * 4096, "slots_per_hour": 1000,
            "anonymous": {"slots_per_hour": 5, "quota_per_day": 100 * 1024 * 1024}},
)


async def opened(server, source_ip: str) -> RawXmpp:
    raw = await RawXmpp.connect(server.c2s_port, source_ip=source_ip)
    await raw.open_stream("localhost")
    return raw


async def anonymous(server, source_ip: str) -> tuple[RawXmpp, str]:
    """A visitor of the anonymous host, logged in and bound."""
    raw = await RawXmpp.connect(server.c2s_port, source_ip=source_ip)
    await raw.open_stream(server.anon_domain)
    result = await raw.auth("ANONYMOUS", b"")
    assert result.tag == f"{{{NS_SASL}}}success", tostr(result)
    await raw.open_stream()
    full = await raw.bind()
    return raw, full


async def account(server, user: str, source_ip: str) -> tuple[RawXmpp, str]:
    raw = await opened(server, source_ip)
    full = await raw.login_plain(user, "pw", "r")
    return raw, full


async def create_room(raw: RawXmpp, room: str):
    """Joins (creating) `room`; the self-presence, or the error."""
    await raw.send(f"<presence to='{room}/me'><x xmlns='{NS_MUC}'/></presence>")
    return await raw.expect(
        f"{{{NS_CLIENT}}}presence", predicate=lambda p: p.get("from") == f"{room}/me"
    )


def room(server) -> str:
    return f"r{uid()}@{server.muc_domain}"


@async_test
async def test_logins_per_address_are_limited(server):
    """`limits.logins_per_minute` (5 here): the sixth login from one address in a minute is
    refused, anonymous or not; another address is unaffected."""
    for _ in range(5):
        raw, _ = await anonymous(server, "127.0.0.21")
        raw.close()
    raw = await RawXmpp.connect(server.c2s_port, source_ip="127.0.0.21")
    await raw.open_stream(server.anon_domain)
    await raw.send(f"<auth xmlns='{NS_SASL}' mechanism='ANONYMOUS'>=</auth>")
    failure = await raw.expect(f"{{{NS_SASL}}}failure")
    assert failure.find(f"{{{NS_SASL}}}temporary-auth-failure") is not None, tostr(failure)
    raw.close()
    other, _ = await anonymous(server, "127.0.0.22")
    other.close()


@async_test
async def test_room_creation_is_limited_per_visitor_address_and_per_address(server):
    """`muc.rooms_per_hour` (3): a visitor creates three rooms, and a new login from the same
    address (a new JID) does not start a new count. `muc.rooms_per_hour_per_address` (5):
    accounts behind one address share five."""
    raw, _ = await anonymous(server, "127.0.0.31")
    for _ in range(3):
        joined = await create_room(raw, room(server))
        assert joined.get("type") is None, tostr(joined)
    refused = await create_room(raw, room(server))
    assert refused.get("type") == "error", tostr(refused)
    assert stanza_error_condition(refused) == "resource-constraint", tostr(refused)
    raw.close()
    again, _ = await anonymous(server, "127.0.0.31")
    refused = await create_room(again, room(server))
    assert stanza_error_condition(refused) == "resource-constraint", tostr(refused)
    again.close()
    elsewhere, _ = await anonymous(server, "127.0.0.32")
    assert (await create_room(elsewhere, room(server))).get("type") is None
    elsewhere.close()

    server.add_user("creator1", "pw")
    server.add_user("creator2", "pw")
    first, _ = await account(server, "creator1", "127.0.0.33")
    second, _ = await account(server, "creator2", "127.0.0.33")
    for raw in (first, first, first, second, second):
        assert (await create_room(raw, room(server))).get("type") is None
    refused = await create_room(second, room(server))
    assert stanza_error_condition(refused) == "resource-constraint", tostr(refused)
    first.close()
    second.close()


async def request_slot(raw: RawXmpp, server, size: int) -> object:
    iid = "slot" + uid()
    return await raw.iq(
        f"<iq type='get' id='{iid}' to='{server.upload_domain}'>"
        f"<request xmlns='{NS_UPLOAD}' filename='empty.txt' size='{size}' "
        "content-type='text/plain'/></iq>",
        iid,
    )


@async_test
async def test_zero_byte_slots_count_toward_the_slot_rate_and_the_quota(server):
    """20,000 zero-byte slots were handed out before: each slot now counts toward
    `upload.anonymous.slots_per_hour` (5 here) and at least 4 KiB toward the quota
    (`upload.quota_per_day` = 12 KiB here)."""
    raw, _ = await anonymous(server, "127.0.0.51")
    for _ in range(5):
        slot = await request_slot(raw, server, 0)
        assert slot.get("type") == "result", tostr(slot)
    refused = await request_slot(raw, server, 0)
    assert stanza_error_condition(refused) == "resource-constraint", tostr(refused)
    raw.close()

    server.add_user("uploader", "pw")
    raw, _ = await account(server, "uploader", "127.0.0.52")
    for _ in range(3):
        slot = await request_slot(raw, server, 0)
        assert slot.get("type") == "result", tostr(slot)
    refused = await request_slot(raw, server, 0)
    assert stanza_error_condition(refused) == "resource-constraint", tostr(refused)
    assert "Quota" in tostr(refused), tostr(refused)
    raw.close()


async def refused_stream(server, source_ip: str) -> str | None:
    """The stream error a new connection from `source_ip` gets, or None if it gets features."""
    raw = await RawXmpp.connect(server.c2s_port, source_ip=source_ip)
    try:
        await raw.send(
            "<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' "
            f"xmlns:stream='{NS_STREAM}' version='1.0'>"
        )
        await raw.read_header()
        element = await raw.next_element()
        if element is not None and element.tag == f"{{{NS_STREAM}}}features":
            return None
        assert element is not None and element.tag == f"{{{NS_STREAM}}}error", tostr(element)
        return next(iter(element)).tag.split("}")[1]
    finally:
        raw.close()


async def eventually(check, seconds: float = 6.0):
    """Bans reach a running server within seconds (it rereads the list); poll until then."""
    deadline = time.monotonic() + seconds
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.25)


@async_test(timeout=60)
async def test_bans_from_the_command_line_reach_the_running_server(server):
    assert await refused_stream(server, "127.0.0.41") is None
    out = server.cli("ban", "add", "127.0.0.41").stdout
    assert "127.0.0.41" in out, out

    async def banned():
        return await refused_stream(server, "127.0.0.41") == "policy-violation"

    assert await eventually(banned), "a banned address could still open a stream"
    assert await refused_stream(server, "127.0.0.42") is None, "the ban hit another address"

    # An account: its logins are refused, from any address.
    server.add_user("mallory", "pw")
    server.cli("ban", "add", "mallory@localhost", "--duration", "1h")

    attempts = iter(range(1, 200))

    async def login_refused():
        # A new address each time, so that `logins_per_minute` is not what refuses.
        raw = await opened(server, f"127.0.1.{next(attempts)}")
        try:
            result = await raw.auth_plain("mallory", "pw")
            return result.find(f"{{{NS_SASL}}}account-disabled") is not None
        finally:
            raw.close()

    assert await eventually(login_refused), "a banned account could still log in"
    listed = server.cli("ban", "list").stdout
    assert "127.0.0.41" in listed and "mallory@localhost" in listed, listed

    # Lifted: the address gets in again.
    server.cli("ban", "remove", "127.0.0.41")

    async def admitted():
        return await refused_stream(server, "127.0.0.41") is None

    assert await eventually(admitted), "a lifted ban still applied"
    assert "127.0.0.41" not in server.cli("ban", "list").stdout
    failed = server.cli("ban", "remove", "127.0.0.41", check=False)
    assert failed.returncode != 0 and "no ban" in failed.stderr, failed.stderr

    # A ban with a duration ends by itself.
    server.cli("ban", "add", "127.0.0.44", "--duration", "5s")
    assert await eventually(lambda: refused_stream(server, "127.0.0.44")) is not None
    assert await eventually(lambda: admitted_from(server, "127.0.0.44"), 10), "the ban did not end"


async def admitted_from(server, source_ip: str) -> bool:
    return await refused_stream(server, source_ip) is None
