"""Server-side IQ services: disco (XEP-0030), ping (0199), version (0092), time (0202),
last activity (0012) and the error for unknown namespaces (RFC 6120 §8.4)."""

import datetime as dt

import pytest

from conftest import server_fixture
from helpers import Clients, async_test, stanza_error_condition, uid

server = server_fixture("services", require_encryption=True)

NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items"


@pytest.fixture(scope="module")
def account(server):
    return server.new_user("svc")


async def login(cs, server, account):
    jid, pw = account
    return await cs.login(server, f"{jid}/r{uid()}", pw, mech="SCRAM-SHA-256")


@async_test
async def test_disco_info_server(server, account):
    async with Clients() as cs:
        c = await login(cs, server, account)
        resp = await c.iq("get", "localhost", f"<query xmlns='{NS_DISCO_INFO}'/>")
        assert resp["type"] == "result", str(resp)
        q = resp.xml.find(f"{{{NS_DISCO_INFO}}}query")
        assert q is not None, str(resp)
        identities = [(i.get("category"), i.get("type")) for i in q.findall(f"{{{NS_DISCO_INFO}}}identity")]
        assert any(cat == "server" for cat, _ in identities), f"no server identity: {identities}"
        assert ("server", "im") in identities, f"expected server/im identity: {identities}"
        features = {f.get("var") for f in q.findall(f"{{{NS_DISCO_INFO}}}feature")}
        for var in (NS_DISCO_INFO, NS_DISCO_ITEMS, "urn:xmpp:ping", "jabber:iq:version",
                    "urn:xmpp:time", "vcard-temp", "jabber:iq:last"):
            assert var in features, f"{var} missing from server features: {sorted(features)}"


@async_test
async def test_disco_items_server(server, account):
    async with Clients() as cs:
        c = await login(cs, server, account)
        resp = await c.iq("get", "localhost", f"<query xmlns='{NS_DISCO_ITEMS}'/>")
        assert resp["type"] == "result", str(resp)
        q = resp.xml.find(f"{{{NS_DISCO_ITEMS}}}query")
        assert q is not None, f"disco#items result without query: {resp}"
        for item in q.findall(f"{{{NS_DISCO_ITEMS}}}item"):
            assert item.get("jid"), f"disco item without jid: {resp}"


@async_test
async def test_ping_server(server, account):
    async with Clients() as cs:
        c = await login(cs, server, account)
        resp = await c.iq("get", "localhost", "<ping xmlns='urn:xmpp:ping'/>")
        assert resp["type"] == "result", str(resp)
        assert str(resp["from"]) in ("localhost", ""), str(resp)
        # Ping without a 'to' is answered by the server on behalf of the account.
        resp = await c.iq("get", None, "<ping xmlns='urn:xmpp:ping'/>")
        assert resp["type"] == "result", str(resp)


@async_test
async def test_version(server, account):
    async with Clients() as cs:
        c = await login(cs, server, account)
        resp = await c.iq("get", "localhost", "<query xmlns='jabber:iq:version'/>")
        assert resp["type"] == "result", str(resp)
        q = resp.xml.find("{jabber:iq:version}query")
        assert q is not None, str(resp)
        assert q.findtext("{jabber:iq:version}name") == "Salon", str(resp)
        assert (q.findtext("{jabber:iq:version}version") or "").strip(), str(resp)


@async_test
async def test_time(server, account):
    async with Clients() as cs:
        c = await login(cs, server, account)
        resp = await c.iq("get", "localhost", "<time xmlns='urn:xmpp:time'/>")
        assert resp["type"] == "result", str(resp)
        t = resp.xml.find("{urn:xmpp:time}time")
        assert t is not None, str(resp)
        tzo = t.findtext("{urn:xmpp:time}tzo")
        utc = t.findtext("{urn:xmpp:time}utc")
        assert tzo and (tzo == "Z" or tzo[0] in "+-"), f"bad tzo {tzo!r}"
        assert utc and utc.endswith("Z"), f"bad utc {utc!r}"
        stamp = dt.datetime.fromisoformat(utc.replace("Z", "+00:00"))
        now = dt.datetime.now(dt.timezone.utc)
        assert abs((now - stamp).total_seconds()) < 120, f"server time {utc} far from {now}"


@async_test
async def test_last_activity_uptime(server, account):
    async with Clients() as cs:
        c = await login(cs, server, account)
        resp = await c.iq("get", "localhost", "<query xmlns='jabber:iq:last'/>")
        assert resp["type"] == "result", str(resp)
        q = resp.xml.find("{jabber:iq:last}query")
        assert q is not None and q.get("seconds") is not None, str(resp)
        assert int(q.get("seconds")) >= 0


@async_test
async def test_unknown_namespace_service_unavailable(server, account):
    async with Clients() as cs:
        c = await login(cs, server, account)
        resp = await c.iq("get", "localhost", "<query xmlns='urn:example:salon:nonexistent'/>")
        assert resp["type"] == "error", f"unknown namespace not refused: {resp}"
        assert stanza_error_condition(resp.xml) == "service-unavailable", str(resp)
        # The session is unaffected.
        await c.ping_server()


@async_test
async def test_iq_result_without_request_is_ignored(server, account):
    """An unsolicited iq result must not break the session (RFC 6120 §8.2.3)."""
    async with Clients() as cs:
        c = await login(cs, server, account)
        iq = c.x.make_iq(ito="localhost", itype="result", id="stray-" + uid())
        iq.send()
        await c.ping_server()
        assert c.connected()
