"""XMPP over BOSH (XEP-0124/XEP-0206) with raw HTTP requests, following the XEP-0206
examples: session creation, SASL, restart, bind, messages both ways, RID replay and window,
inactivity timeout, terminate, and refusals (not XML, wrong sid)."""

import asyncio
import base64
import http.client
import re
import time
import xml.etree.ElementTree as ET

from conftest import server_fixture
from helpers import NS_CLIENT, RawXmpp, async_test, tostr

NS_BIND = "http://jabber.org/protocol/httpbind"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_STREAM = "http://etherx.jabber.org/streams"

server = server_fixture("bosh", require_encryption=False, http={"bosh_max_wait": 2})
short_lived = server_fixture("bosh_short", require_encryption=False,
                             http={"bosh_inactivity": 2, "bosh_max_wait": 2})


def post(port: int, body: str, timeout: float = 10) -> tuple[int, ET.Element | None, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    connection.request("POST", "/http-bind", body.encode(), {"Content-Type": "text/xml; charset=utf-8"})
    response = connection.getresponse()
    text = response.read().decode()
    connection.close()
    try:
        return response.status, ET.fromstring(text), text
    except ET.ParseError:
        return response.status, None, text


class Bosh:
    """A minimal BOSH client (XEP-0206 §3–§5)."""

    def __init__(self, port: int, to: str):
        self.port, self.to = port, to
        self.rid = 1000 + int(time.time()) % 1000
        self.sid = None

    async def request(self, payload: str = "", **attrs) -> ET.Element:
        self.rid += 1
        return await self.send_rid(self.rid, payload, **attrs)

    async def send_rid(self, rid: int, payload: str = "", **attrs) -> ET.Element:
        extra = "".join(f" {k.replace('__', ':')}='{v}'" for k, v in attrs.items())
        sid = f" sid='{self.sid}'" if self.sid else ""
        body = (f"<body xmlns='{NS_BIND}' xmlns:xmpp='urn:xmpp:xbosh' rid='{rid}'{sid}{extra}>"
                f"{payload}</body>")
        status, element, text = await asyncio.to_thread(post, self.port, body)
        # A session that has ended is unknown afterwards: 404 with item-not-found.
        assert status == 200 or (status == 404 and "item-not-found" in text), f"HTTP {status}: {text}"
        assert element is not None, text
        return element

    async def create(self) -> ET.Element:
        response = await self.request(to=self.to, wait="2", hold="1", ver="1.6",
                                      xmpp__version="1.0")
        self.sid = response.get("sid")
        assert self.sid, tostr(response)
        return response

    async def until(self, predicate, what: str, rounds: int = 8) -> ET.Element:
        for _ in range(rounds):
            response = await self.request()
            for child in response:
                if predicate(child):
                    return child
            assert response.get("type") != "terminate", f"terminated waiting for {what}: {tostr(response)}"
        raise AssertionError(f"no {what} after {rounds} requests")

    async def login_anonymous(self) -> str:
        created = await self.create()
        features = created.find(f"{{{NS_STREAM}}}features")
        if features is None:
            features = await self.until(lambda e: e.tag == f"{{{NS_STREAM}}}features", "features")
        mechanisms = [m.text for m in features.iter(f"{{{NS_SASL}}}mechanism")]
        assert mechanisms == ["ANONYMOUS"], mechanisms
        response = await self.request(f"<auth xmlns='{NS_SASL}' mechanism='ANONYMOUS'/>")
        success = response.find(f"{{{NS_SASL}}}success")
        if success is None:
            await self.until(lambda e: e.tag == f"{{{NS_SASL}}}success", "success")
        restarted = await self.request(to=self.to, xmpp__restart="true")
        if restarted.find(f"{{{NS_STREAM}}}features") is None:
            await self.until(lambda e: e.tag == f"{{{NS_STREAM}}}features", "features after restart")
        response = await self.request(
            "<iq xmlns='jabber:client' type='set' id='bind1'>"
            "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
        iq = response.find(f"{{{NS_CLIENT}}}iq")
        if iq is None:
            iq = await self.until(lambda e: e.tag == f"{{{NS_CLIENT}}}iq", "bind result")
        jid = iq.find(".//{urn:ietf:params:xml:ns:xmpp-bind}jid")
        assert jid is not None, tostr(iq)
        return jid.text


@async_test()
async def test_session_login_bind_and_messages(server):
    alice = Bosh(server.http_port, "anon.localhost")
    created = await alice.create()
    # XEP-0124 §7.1 / XEP-0206 §3: session attributes.
    for attribute in ("sid", "wait", "requests", "inactivity", "ver"):
        assert created.get(attribute), f"missing {attribute}: {tostr(created)}"
    assert created.get("{urn:xmpp:xbosh}version") == "1.0"
    assert created.get("{urn:xmpp:xbosh}restartlogic") == "true"
    alice.sid = None
    alice_jid = await alice.login_anonymous()
    assert alice_jid.split("@")[1].startswith("anon.localhost/")

    # An account on a TCP connection talks with the BOSH guest, both ways.
    server.add_user("boshfriend", "pw")
    bob = await RawXmpp.connect(server.c2s_port)
    await bob.open_stream("localhost")
    bob_jid = await bob.login_plain("boshfriend", "pw", "tcp")
    await alice.request(f"<message xmlns='jabber:client' to='{bob_jid}' type='chat'><body>over bosh</body></message>")
    message = await bob.expect(f"{{{NS_CLIENT}}}message")
    assert message.findtext(f"{{{NS_CLIENT}}}body") == "over bosh"
    assert message.get("from") == alice_jid
    await bob.send(f"<message to='{alice_jid}' type='chat'><body>over tcp</body></message>")
    reply = await alice.until(lambda e: e.tag == f"{{{NS_CLIENT}}}message", "reply")
    assert reply.findtext(f"{{{NS_CLIENT}}}body") == "over tcp"
    assert reply.get("from") == bob_jid
    bob.close()


@async_test()
async def test_rid_replay_and_window(server):
    client = Bosh(server.http_port, "anon.localhost")
    await client.login_anonymous()
    # A request retried with the same rid gets the same answer (XEP-0124 §14.3).
    rid = client.rid + 1
    client.rid = rid
    first = await client.send_rid(rid, "<iq xmlns='jabber:client' type='get' id='p1' to='anon.localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    replay = await client.send_rid(rid, "")
    assert ET.tostring(replay) == ET.tostring(first), (tostr(first), tostr(replay))
    # A rid far beyond the window ends the session with item-not-found.
    beyond = await client.send_rid(client.rid + 50, "")
    assert beyond.get("type") == "terminate" and beyond.get("condition") == "item-not-found", tostr(beyond)
    after = await client.request()
    assert after.get("type") == "terminate", tostr(after)


@async_test()
async def test_inactivity_timeout_ends_session(short_lived):
    client = Bosh(short_lived.http_port, "anon.localhost")
    await client.login_anonymous()
    await asyncio.sleep(4.5)  # inactivity is 2 s in this server's configuration
    response = await client.request()
    assert response.get("type") == "terminate", tostr(response)


@async_test()
async def test_terminate_and_bad_requests(server):
    client = Bosh(server.http_port, "anon.localhost")
    jid = await client.login_anonymous()
    response = await client.request("<presence xmlns='jabber:client' type='unavailable'/>", type="terminate")
    assert response.get("type") == "terminate", tostr(response)
    after = await client.request()
    assert after.get("type") == "terminate", tostr(after)

    status, element, text = await asyncio.to_thread(post, server.http_port, "this is not XML")
    assert status == 400 and element is not None, text
    assert element.get("type") == "terminate" and element.get("condition") == "bad-request", text

    status, element, text = await asyncio.to_thread(
        post, server.http_port, f"<body xmlns='{NS_BIND}' rid='5' sid='nonexistent'/>")
    assert status == 404 and element is not None, text
    assert element.get("condition") == "item-not-found", text
    assert jid


@async_test(timeout=60)
async def test_early_rid_requests_are_bounded(server):
    """Requests parked on an early rid count toward `requests` (hold + 1): one session cannot
    make the server hold dozens of them (issue 11, item 3)."""
    client = Bosh(server.http_port, "anon.localhost")
    await client.create()  # hold=1, so requests=2
    early = client.rid + 2  # rid + 1 never comes, so this one waits for it
    start = time.monotonic()
    results = await asyncio.gather(*(client.send_rid(early) for _ in range(20)))
    took = time.monotonic() - start
    refused = [r for r in results if r.get("condition") == "policy-violation"]
    assert len(refused) >= 18, (took, [tostr(r) for r in results])


@async_test(timeout=60)
async def test_rid_window_does_not_wrap_near_2_64(server):
    client = Bosh(server.http_port, "anon.localhost")
    client.rid = 2**64 - 3
    await client.create()  # rid 2^64 - 2
    last = await client.send_rid(2**64 - 1)
    assert last.get("type") != "terminate", tostr(last)
    # After the largest rid nothing is "next": a small rid is old, not the window wrapping round.
    wrapped = await client.send_rid(0)
    assert wrapped.get("type") == "terminate" and wrapped.get("condition") == "item-not-found", tostr(wrapped)
