"""Stanza routing details (RFC 6120 §8, RFC 6121 §8, RFC 7622): JID case folding, IQ routing
between clients, resource fallbacks, error handling rules."""

import asyncio

from conftest import server_fixture
from helpers import NS_CLIENT, Clients, RawXmpp, async_test, stanza_error_condition, tostr, uid

server = server_fixture("routing", require_encryption=True)


async def login(cs, server, jid, password, resource=None, **kw):
    resource = resource or ("r" + uid())
    return await cs.login(server, f"{jid}/{resource}", password, mech="SCRAM-SHA-256", **kw)


@async_test
async def test_jid_comparison_is_case_insensitive(server):
    (a_jid, a_pw), (b_jid, b_pw) = server.new_user("ca"), server.new_user("cb")
    async with Clients() as cs:
        alice = await login(cs, server, a_jid, a_pw)
        bob = await login(cs, server, b_jid, b_pw)
        mid = "case-" + uid()
        node, _, domain = a_jid.partition("@")
        bob.send_message(f"{node.upper()}@{domain.upper()}", "case folded", mid=mid)
        m = await alice.wait_message(lambda m: m["id"] == mid, what="message to upper-cased JID")
        assert m["body"] == "case folded"
        assert str(m["from"]) == bob.jid


@async_test
async def test_login_with_upper_case_username(server):
    jid, pw = server.new_user("up")
    node = jid.split("@")[0]
    async with Clients() as cs:
        c = await login(cs, server, f"{node.upper()}@localhost", pw)
        assert c.x.boundjid.bare == jid, f"bound {c.jid}, expected the normalised {jid}"


@async_test
async def test_iq_routed_between_clients(server):
    (a_jid, a_pw), (b_jid, b_pw) = server.new_user("ia"), server.new_user("ib")
    async with Clients() as cs:
        alice = await login(cs, server, a_jid, a_pw)
        bob = await login(cs, server, b_jid, b_pw)
        bob.x.register_plugin("xep_0199")  # bob answers pings
        resp = await alice.iq("get", bob.jid, "<ping xmlns='urn:xmpp:ping'/>")
        assert resp["type"] == "result", f"iq to bob's full JID not routed: {resp}"
        assert str(resp["from"]) == bob.jid, str(resp)


@async_test
async def test_iq_to_offline_full_jid_service_unavailable(server):
    (a_jid, a_pw), (b_jid, _b_pw) = server.new_user("oa"), server.new_user("ob")
    async with Clients() as cs:
        alice = await login(cs, server, a_jid, a_pw)
        resp = await alice.iq("get", f"{b_jid}/nowhere", "<ping xmlns='urn:xmpp:ping'/>")
        assert resp["type"] == "error", str(resp)
        assert stanza_error_condition(resp.xml) == "service-unavailable", str(resp)


@async_test
async def test_message_to_unknown_resource_goes_to_bare_jid(server):
    """RFC 6121 §8.5.3.2.1: a message to a full JID with no such resource is handled as if sent
    to the bare JID (delivered to an available resource, or stored)."""
    (a_jid, a_pw), (b_jid, b_pw) = server.new_user("ra"), server.new_user("rb")
    async with Clients() as cs:
        alice = await login(cs, server, a_jid, a_pw)
        bob = await login(cs, server, b_jid, b_pw)
        mid = "res-" + uid()
        alice.send_message(f"{b_jid}/no-such-resource", "find me", mid=mid)
        m = await bob.wait_message(lambda m: m["id"] == mid, what="message to unknown resource")
        assert m["body"] == "find me"
        assert not [x for x in alice.messages if x["id"] == mid and x["type"] == "error"]


@async_test
async def test_error_message_is_never_bounced(server):
    """RFC 6120 §8.3.1: an entity MUST NOT respond to a stanza of type error with an error."""
    a_jid, a_pw = server.new_user("ea")
    async with Clients() as cs:
        alice = await login(cs, server, a_jid, a_pw)
        mid = "err-" + uid()
        m = alice.x.make_message(mto=f"nosuch{uid()}@localhost", mtype="error")
        m["id"] = mid
        m["error"]["condition"] = "undefined-condition"
        m["error"]["type"] = "cancel"
        m.send()
        await alice.ping_server()
        await asyncio.sleep(0.5)
        bounced = [x for x in alice.messages if x["id"] == mid]
        assert not bounced, f"error stanza was bounced: {bounced[0]}"


@async_test
async def test_iq_result_or_error_to_nobody_is_dropped(server):
    """RFC 6120 §8.2.3: an IQ of type result or error is never answered, even when it is
    addressed to no one: an account that does not exist, a resource that is gone, the server."""
    a_jid, a_pw = server.new_user("na")
    b_jid, _ = server.new_user("nb")
    raw = await RawXmpp.connect(server.c2s_port)
    await raw.open_stream("localhost")
    await raw.starttls()
    await raw.login_plain(a_jid.split("@")[0], a_pw, "r")
    for n, to in enumerate([f"nosuch{uid()}@localhost", f"nosuch{uid()}@localhost/r",
                            f"{b_jid}/gone", b_jid, "localhost", f"{a_jid}/gone"]):
        await raw.send(f"<iq type='result' id='res{n}' to='{to}'/>")
        await raw.send(
            f"<iq type='error' id='err{n}' to='{to}'><error type='cancel'>"
            "<undefined-condition xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        )
    await raw.send("<iq type='get' id='last' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    while True:
        iq = await raw.expect(f"{{{NS_CLIENT}}}iq")
        assert iq.get("id") == "last", f"answered an IQ {iq.get('type')}: {tostr(iq)}"
        break
    raw.close()


@async_test
async def test_iq_without_payload_bad_request(server):
    """RFC 6120 §8.2.3: an iq get/set MUST contain exactly one child element."""
    a_jid, a_pw = server.new_user("ba")
    async with Clients() as cs:
        alice = await login(cs, server, a_jid, a_pw)
        resp = await alice.iq("get", "localhost", None)
        assert resp["type"] == "error", f"iq get without payload answered with {resp}"
        assert stanza_error_condition(resp.xml) == "bad-request", str(resp)
        await alice.ping_server()


@async_test
async def test_message_to_own_other_resource(server):
    jid, pw = server.new_user("self")
    async with Clients() as cs:
        one = await login(cs, server, jid, pw)
        two = await login(cs, server, jid, pw)
        mid = "self-" + uid()
        one.send_message(two.jid, "note to self", mid=mid)
        m = await two.wait_message(lambda m: m["id"] == mid, what="message between own resources")
        assert str(m["from"]) == one.jid


@async_test
async def test_graceful_close_broadcasts_unavailable_to_own_resources(server):
    jid, pw = server.new_user("gc")
    async with Clients() as cs:
        one = await login(cs, server, jid, pw)
        two = await login(cs, server, jid, pw)
        await one.wait_presence(lambda p: str(p["from"]) == two.jid, what="presence of other resource")
        gone = two.jid
        await two.close()
        assert two.is_disconnected.is_set()
        await one.wait_presence(
            lambda p: str(p["from"]) == gone and p["type"] == "unavailable",
            what="unavailable from the closed resource",
        )
