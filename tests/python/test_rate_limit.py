"""Per-IP failed-login rate limit (limits.login_failures_per_minute)."""

from conftest import server_fixture
from helpers import NS_SASL, NS_STREAM, RawXmpp, async_test, local, stream_header, tostr

FAILURES = 3

server = server_fixture(
    "ratelimit", require_encryption=False, login_failures_per_minute=FAILURES
)


async def plain_attempt(server, user, password, source_ip=None):
    """One PLAIN login on a fresh cleartext connection. Returns ('success'|'failure'|
    'stream-error', condition)."""
    raw = await RawXmpp.connect(server.c2s_port, source_ip=source_ip)
    try:
        await raw.send(stream_header("localhost"))
        await raw.read_header()
        first = await raw.next_element()
        assert first is not None, f"connection closed before features:\n{raw.transcript()}"
        if first.tag == f"{{{NS_STREAM}}}error":
            # Refused at the stream level (e.g. <policy-violation/>).
            conds = [local(c.tag) for c in first if local(c.tag) != "text"]
            return "stream-error", conds[0] if conds else None
        assert first.tag == f"{{{NS_STREAM}}}features", tostr(first)
        elem = await raw.auth_plain(user, password)
        if elem.tag == f"{{{NS_SASL}}}success":
            return "success", None
        if elem.tag == f"{{{NS_SASL}}}failure":
            conds = [local(c.tag) for c in elem if local(c.tag) != "text"]
            return "failure", conds[0] if conds else None
        if elem.tag == f"{{{NS_STREAM}}}error":
            conds = [local(c.tag) for c in elem if local(c.tag) != "text"]
            return "stream-error", conds[0] if conds else None
        raise AssertionError(f"unexpected SASL reply: {tostr(elem)}")
    finally:
        raw.close()


@async_test
async def test_failed_logins_are_rate_limited(server):
    server.add_user("carol", "carol-pw")
    # The right password works first.
    assert await plain_attempt(server, "carol", "carol-pw") == ("success", None)
    for i in range(FAILURES):
        outcome = await plain_attempt(server, "carol", f"wrong-{i}")
        assert outcome == ("failure", "not-authorized"), f"attempt {i + 1}: {outcome}"
    outcome = await plain_attempt(server, "carol", "carol-pw")
    assert outcome in (("failure", "temporary-auth-failure"), ("stream-error", "policy-violation")), (
        f"login after {FAILURES} failures was not throttled: {outcome}"
    )
    server.assert_running()
    # The limit is per IP address: another loopback address is not affected.
    assert await plain_attempt(server, "carol", "carol-pw", source_ip="127.0.0.2") == (
        "success", None
    ), "a login from another IP address was throttled too"
