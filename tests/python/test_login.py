"""Login: SASL mechanisms over STARTTLS and direct TLS, wrong passwords, anonymous login,
mechanism offers, resource-binding conflicts (RFC 6120 §5-7, XEP-0368, XEP-0175)."""

import asyncio

import pytest

from conftest import server_fixture
from helpers import (
    NS_BIND, NS_SASL, NS_STREAM, NS_TLS, Client, Clients, RawXmpp, StreamClosed, async_test,
    mechanisms_of, tostr, uid,
)

server = server_fixture("login", require_encryption=True)


@pytest.fixture(scope="module")
def alice(server):
    return server.add_user("alice", "alice-secret")


@pytest.mark.parametrize("mech", ["SCRAM-SHA-1", "SCRAM-SHA-256", "PLAIN"])
@async_test
async def test_login_starttls(server, alice, mech):
    async with Clients() as cs:
        c = cs.add(Client(server, f"{alice}/{mech.lower()}", "alice-secret", mech=mech))
        await c.login()
        assert c.x.plugin["feature_mechanisms"].mech.name == mech
        assert c.tls_in_use(), "session is not protected by TLS after STARTTLS"
        assert c.x.boundjid.bare == alice
        assert c.x.boundjid.resource == mech.lower()
        await c.ping_server()


@pytest.mark.parametrize("mech", ["SCRAM-SHA-256", "PLAIN"])
@async_test
async def test_login_direct_tls(server, alice, mech):
    async with Clients() as cs:
        c = cs.add(Client(server, f"{alice}/direct", "alice-secret", mech=mech, direct_tls=True))
        await c.login()
        assert c.tls_in_use(), "direct TLS session has no TLS"
        assert c.x.boundjid.full == f"{alice}/direct"
        await c.ping_server()


@pytest.mark.parametrize("mech", ["SCRAM-SHA-1", "SCRAM-SHA-256", "PLAIN"])
@async_test
async def test_wrong_password_fails(server, alice, mech):
    async with Clients() as cs:
        c = cs.add(Client(server, f"{alice}/wrong", "not-the-password", mech=mech))
        c.start_connect()
        await c.wait_until(lambda: c.auth_failures or c.session_started.done(), what="SASL outcome")
        assert not c.session_started.done(), "login with a wrong password succeeded"
        failure = c.auth_failures[0]
        assert failure["condition"] == "not-authorized", f"unexpected SASL failure: {failure}"
        # Give the server a moment: the session must never become bound.
        await asyncio.sleep(1.0)
        assert not c.session_started.done()
        assert not c.x.authenticated


@async_test
async def test_unknown_user_fails(server):
    async with Clients() as cs:
        c = cs.add(Client(server, f"nobody{uid()}@localhost/x", "whatever", mech="SCRAM-SHA-256"))
        c.start_connect()
        await c.wait_until(lambda: c.auth_failures or c.session_started.done(), what="SASL outcome")
        assert not c.session_started.done(), "login of a nonexistent account succeeded"
        assert c.auth_failures[0]["condition"] == "not-authorized"


@async_test
async def test_anonymous_login(server):
    async with Clients() as cs:
        a = cs.add(Client(server, server.anon_domain, "", mech="ANONYMOUS"))
        b = cs.add(Client(server, server.anon_domain, "", mech="ANONYMOUS"))
        await a.login()
        await b.login()
        for c in (a, b):
            assert c.x.boundjid.domain == "anon.localhost", c.jid
            assert c.x.boundjid.user, f"anonymous JID has no localpart: {c.jid}"
            assert c.x.boundjid.resource, f"anonymous JID has no resource: {c.jid}"
            assert c.tls_in_use()
        assert a.x.boundjid.user != b.x.boundjid.user, (
            f"two anonymous sessions got the same localpart: {a.jid} {b.jid}"
        )
        assert len(a.x.boundjid.user) >= 8, f"anonymous localpart looks guessable: {a.jid}"
        await a.ping_server()
        await b.ping_server()


async def _features_after_tls(server, to):
    raw = await RawXmpp.connect(server.c2s_port)
    before = await raw.open_stream(to)
    assert before.find(f"{{{NS_TLS}}}starttls") is not None, (
        f"STARTTLS not offered to {to}: {tostr(before)}"
    )
    after = await raw.starttls()
    return raw, before, after


@async_test
async def test_mechanisms_offered_on_main_domain(server):
    raw, before, after = await _features_after_tls(server, "localhost")
    try:
        assert "PLAIN" not in mechanisms_of(before), (
            f"PLAIN offered before TLS with require_encryption=true: {tostr(before)}"
        )
        assert "ANONYMOUS" not in mechanisms_of(before)
        mechs = mechanisms_of(after)
        for m in ("SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS",
                  "PLAIN"):
            assert m in mechs, f"{m} not offered after TLS: {sorted(mechs)}"
        assert "ANONYMOUS" not in mechs, f"ANONYMOUS offered on localhost: {sorted(mechs)}"
        assert after.find(f"{{{NS_TLS}}}starttls") is None, "STARTTLS offered again after TLS"
    finally:
        raw.close()


@async_test
async def test_anonymous_refused_on_main_domain(server):
    raw, _before, _after = await _features_after_tls(server, "localhost")
    try:
        result = await raw.auth("ANONYMOUS", b"")
        assert result.tag == f"{{{NS_SASL}}}failure", (
            f"SASL ANONYMOUS on localhost was not refused: {tostr(result)}"
        )
        assert result.find(f"{{{NS_SASL}}}invalid-mechanism") is not None, (
            f"expected <invalid-mechanism/>: {tostr(result)}"
        )
    finally:
        raw.close()


@async_test
async def test_anon_domain_offers_only_anonymous(server):
    raw, _before, after = await _features_after_tls(server, "anon.localhost")
    try:
        mechs = mechanisms_of(after)
        assert mechs == {"ANONYMOUS"}, f"anon.localhost must offer only ANONYMOUS: {sorted(mechs)}"
        # And a password login on the anonymous host is refused.
        result = await raw.auth_plain("alice", "alice-secret")
        assert result.tag == f"{{{NS_SASL}}}failure", (
            f"PLAIN accepted on anon.localhost: {tostr(result)}"
        )
    finally:
        raw.close()


@async_test
async def test_plain_before_tls_refused(server, alice):
    """require_encryption=true: no authentication on a cleartext stream."""
    raw = await RawXmpp.connect(server.c2s_port)
    try:
        await raw.open_stream("localhost")
        try:
            elem = await raw.auth_plain("alice", "alice-secret")
        except StreamClosed:
            return  # the server closed the connection: refused as well
        assert elem.tag in (f"{{{NS_SASL}}}failure", f"{{{NS_STREAM}}}error"), (
            f"cleartext PLAIN login was not refused: {tostr(elem)}"
        )
    finally:
        raw.close()


@async_test
async def test_bind_conflict_kicks_first_session(server, alice):
    async with Clients() as cs:
        first = cs.add(Client(server, f"{alice}/same", "alice-secret", mech="SCRAM-SHA-256"))
        await first.login()
        second = cs.add(Client(server, f"{alice}/same", "alice-secret", mech="SCRAM-SHA-256"))
        await second.login()
        assert second.x.boundjid.full == f"{alice}/same", (
            f"second session bound {second.jid} instead of the requested resource"
        )
        await first.wait_until(lambda: first.stream_errors, what="<conflict/> stream error")
        assert first.stream_errors[0]["condition"] == "conflict", str(first.stream_errors[0])
        await first.wait_until(lambda: first.is_disconnected.is_set(), what="disconnect")
        await second.ping_server()
        assert not second.stream_errors, [str(e) for e in second.stream_errors]


@async_test
async def test_bind_without_resource_gets_one(server, alice):
    """RFC 6120 §7.6: the server generates a resource when the client asks for none."""
    raw, _before, _after = await _features_after_tls(server, "localhost")
    try:
        result = await raw.auth_plain("alice", "alice-secret")
        assert result.tag == f"{{{NS_SASL}}}success", tostr(result)
        features = await raw.open_stream()
        assert features.find(f"{{{NS_BIND}}}bind") is not None, tostr(features)
        full = await raw.bind(None)
        bare, _, resource = full.partition("/")
        assert bare == alice and resource, f"bad generated full JID {full!r}"
    finally:
        raw.close()


@pytest.mark.parametrize("host", ["localhost", "anon.localhost"])
@async_test
async def test_response_stream_header(server, host):
    """RFC 6120 §4.7: the response header carries from=<host>, a unique id and version 1.0."""
    ids = []
    for _ in range(2):
        raw = await RawXmpp.connect(server.c2s_port)
        try:
            await raw.send(
                "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                f"xmlns:stream='{NS_STREAM}' to='{host}' version='1.0'>"
            )
            root = await raw.read_header()
            assert root.get("from") == host, f"header from={root.get('from')!r}: {raw.transcript()}"
            assert root.get("version") == "1.0", raw.transcript()
            assert root.get("id"), f"no stream id: {raw.transcript()}"
            ids.append(root.get("id"))
            features = await raw.expect(f"{{{NS_STREAM}}}features")
            assert features.find(f"{{{NS_TLS}}}starttls") is not None, tostr(features)
        finally:
            raw.close()
    assert ids[0] != ids[1], f"stream ids are not unique: {ids}"
