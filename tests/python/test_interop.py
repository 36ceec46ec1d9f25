"""What clients we did not write expect of the wire (issue: every client people use works):
the prefixed `<stream:features/>` that loudmouth and XML::Stream match by name, SCRAM nonces
that xmpp.js and StanzaJS parse, -PLUS only where channel binding exists, service discovery
details, and a failed-login budget that one fumbling client cannot use up for its neighbours."""

import asyncio
import base64
import json
import re
import ssl
import urllib.request
import xml.etree.ElementTree as ET

import websockets

from conftest import server_fixture
from helpers import NS_CLIENT, NS_SASL, NS_STREAM, RawXmpp, async_test, local, mechanisms_of, stream_header, tostr, uid

FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
NS_HTTPBIND = "http://jabber.org/protocol/httpbind"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"

server = server_fixture("interop", require_encryption=False)
# The failed-login limits at their defaults (nothing in [limits] about them).
default_limits = server_fixture("interop_limits", require_encryption=False,
                                login_failures_per_minute=None)


def insecure() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


# -- <stream:features/> ------------------------------------------------------------------------

FEATURES_OPEN = re.compile(rb"<(?:(\w+):)?features[\s>/]")


@async_test
async def test_tcp_stream_features_use_the_stream_prefix(server):
    """Loudmouth (mcabber) and Perl XML::Stream (sendxmpp) look for the literal name
    `stream:features`; every other server sends it so."""
    raw = await RawXmpp.connect(server.c2s_port)
    try:
        features = await raw.open_stream("localhost")
        assert features.tag == f"{{{NS_STREAM}}}features"
        opened = FEATURES_OPEN.findall(bytes(raw.received))
        assert opened == [b"stream"], f"features not sent as <stream:features>:\n{raw.transcript()}"
        # After TLS, and after SASL, the same.
        await raw.starttls()
        await raw.login_plain(*server_user(server), resource="prefix")
        opened = FEATURES_OPEN.findall(bytes(raw.received))
        assert opened and set(opened) == {b"stream"}, raw.transcript()
    finally:
        raw.close()


@async_test
async def test_websocket_features_are_one_self_contained_prefixed_element(server):
    """RFC 7395 §3.3: every WebSocket message is a complete document, so the prefix is
    declared on the element itself."""
    async with websockets.connect(f"ws://127.0.0.1:{server.http_port}/xmpp-websocket",
                                  subprotocols=["xmpp"]) as ws:
        await ws.send(f"<open xmlns='{FRAMING}' to='localhost' version='1.0'/>")
        await asyncio.wait_for(ws.recv(), 10)
        frame = await asyncio.wait_for(ws.recv(), 10)
        assert frame.startswith("<stream:features"), frame
        parsed = ET.fromstring(frame)
        assert parsed.tag == f"{{{NS_STREAM}}}features", frame


@async_test
async def test_bosh_features_are_stream_features(server):
    status, body = await asyncio.to_thread(bosh_post, server.http_port, (
        f"<body xmlns='{NS_HTTPBIND}' xmlns:xmpp='urn:xmpp:xbosh' rid='1000' to='localhost' "
        "wait='2' hold='1' xmpp:version='1.0'/>"))
    assert status == 200, body
    parsed = ET.fromstring(body)
    assert parsed.find(f"{{{NS_STREAM}}}features") is not None, body
    assert "<stream:features" in body, body


# -- SCRAM nonces ------------------------------------------------------------------------------

NONCE_ALPHABET = re.compile(r"[A-Za-z0-9+/=]+")


@async_test
async def test_scram_server_nonce_is_base64_alphabet(server):
    """xmpp.js and StanzaJS treat `"` in a nonce as quoting and fail about one login in four.
    Every widely used server draws nonces from alphanumerics or base64; so must Salon."""
    user, _password = server_user(server)
    raw = await RawXmpp.connect(server.c2s_port)
    try:
        await raw.open_stream("localhost")
        for i in range(60):
            mechanism = ("SCRAM-SHA-1", "SCRAM-SHA-256")[i % 2]
            # Unknown accounts get a challenge too (RFC 5802 §5.1 does not reveal them).
            name = user if i % 3 else f"nobody{i}"
            client_nonce = f"cnonce{i}x"
            challenge = await raw.auth(mechanism, f"n,,n={name},r={client_nonce}".encode())
            assert challenge.tag == f"{{{NS_SASL}}}challenge", tostr(challenge)
            server_first = base64.b64decode(challenge.text).decode()
            nonce = dict(part.split("=", 1) for part in server_first.split(","))["r"]
            assert nonce.startswith(client_nonce), server_first
            server_nonce = nonce[len(client_nonce):]
            assert len(server_nonce) >= 16, f"server nonce too short: {server_first}"
            assert NONCE_ALPHABET.fullmatch(server_nonce), (
                f"server nonce outside the base64 alphabet: {server_nonce!r}")
            await raw.send(f"<abort xmlns='{NS_SASL}'/>")
            aborted = await raw.expect(f"{{{NS_SASL}}}failure")
            assert aborted.find(f"{{{NS_SASL}}}aborted") is not None, tostr(aborted)
    finally:
        raw.close()


# -- SCRAM-*-PLUS only with channel binding ----------------------------------------------------

def plus_mechanisms(text: str) -> list[str]:
    return re.findall(r"<mechanism>([A-Z0-9-]+-PLUS)</mechanism>", text)


@async_test
async def test_plus_not_offered_over_websocket(server):
    """The HTTP side holds no TLS session Salon can bind to (a proxy or rustls in front of
    axum), so a client picking -PLUS there would be refused."""
    for url, context in ((f"ws://127.0.0.1:{server.http_port}/xmpp-websocket", None),
                         (f"wss://127.0.0.1:{server.https_port}/xmpp-websocket", insecure())):
        async with websockets.connect(url, subprotocols=["xmpp"], ssl=context) as ws:
            await ws.send(f"<open xmlns='{FRAMING}' to='localhost' version='1.0'/>")
            await asyncio.wait_for(ws.recv(), 10)
            features = await asyncio.wait_for(ws.recv(), 10)
            assert "SCRAM-SHA-256" in features, features
            assert plus_mechanisms(features) == [], f"{url}: {features}"
            assert "sasl-channel-binding" not in features, features


@async_test
async def test_plus_not_offered_over_bosh(server):
    status, body = await asyncio.to_thread(bosh_post, server.http_port, (
        f"<body xmlns='{NS_HTTPBIND}' xmlns:xmpp='urn:xmpp:xbosh' rid='2000' to='localhost' "
        "wait='2' hold='1' xmpp:version='1.0'/>"))
    assert status == 200, body
    assert "SCRAM-SHA-256" in body, body
    assert plus_mechanisms(body) == [], body


@async_test
async def test_plus_offered_where_salon_terminates_tls(server):
    raw = await RawXmpp.connect(server.tls_port, tls=True)
    try:
        features = await raw.open_stream("localhost")
        plus = {m for m in mechanisms_of(features) if m.endswith("-PLUS")}
        assert plus == {"SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS"}, tostr(features)
    finally:
        raw.close()


# -- service discovery and host-meta -----------------------------------------------------------

async def logged_in(server, host: str = "localhost") -> RawXmpp:
    raw = await RawXmpp.connect(server.c2s_port)
    if host == "localhost":
        await raw.open_stream("localhost")
        await raw.login_plain(*server_user(server), resource=f"disco{uid()}")
        return raw
    await raw.open_stream(host)
    result = await raw.auth("ANONYMOUS", b"")
    assert result.tag == f"{{{NS_SASL}}}success", tostr(result)
    await raw.open_stream()
    await raw.bind()
    return raw


@async_test
async def test_disco_items_with_an_unknown_node_is_not_the_plain_list(server):
    raw = await logged_in(server)
    try:
        plain = await raw.iq(f"<iq type='get' id='i1' to='localhost'><query xmlns='{NS_DISCO_ITEMS}'/></iq>", "i1")
        assert plain.get("type") == "result", tostr(plain)
        assert plain.find(f"{{{NS_DISCO_ITEMS}}}query/{{{NS_DISCO_ITEMS}}}item") is not None, tostr(plain)
        # The commands node is a node (XEP-0050 §2.2), empty for a non-admin; others are not.
        commands = await raw.iq(
            f"<iq type='get' id='i3' to='localhost'><query xmlns='{NS_DISCO_ITEMS}' "
            "node='http://jabber.org/protocol/commands'/></iq>", "i3")
        assert commands.get("type") == "result", tostr(commands)
        assert commands.find(f"{{{NS_DISCO_ITEMS}}}query/{{{NS_DISCO_ITEMS}}}item") is None, tostr(commands)
        node = "urn:example:no-such-node"
        reply = await raw.iq(
            f"<iq type='get' id='i2' to='localhost'><query xmlns='{NS_DISCO_ITEMS}' node='{node}'/></iq>",
            "i2")
        # XEP-0030 §4.3: a node the entity does not have is item-not-found.
        assert reply.get("type") == "error", tostr(reply)
        assert reply.find(f"{{{NS_CLIENT}}}error/{{{NS_STANZAS}}}item-not-found") is not None, tostr(reply)
    finally:
        raw.close()


@async_test
async def test_anonymous_host_does_not_advertise_register(server):
    raw = await logged_in(server, server.anon_domain)
    try:
        info = await raw.iq(
            f"<iq type='get' id='a1' to='{server.anon_domain}'><query xmlns='{NS_DISCO_INFO}'/></iq>", "a1")
        assert info.get("type") == "result", tostr(info)
        features = {f.get("var") for f in info.iter(f"{{{NS_DISCO_INFO}}}feature")}
        assert NS_DISCO_INFO in features, tostr(info)
        assert "jabber:iq:register" not in features, tostr(info)
        # The main host still has it.
        main = await raw.iq(
            f"<iq type='get' id='a2' to='localhost'><query xmlns='{NS_DISCO_INFO}'/></iq>", "a2")
        if main.get("type") == "result":
            assert "jabber:iq:register" in {f.get("var") for f in main.iter(f"{{{NS_DISCO_INFO}}}feature")}
    finally:
        raw.close()


@async_test
async def test_anonymous_host_caps_match_its_disco_info(server):
    """The caps hash in the guest's stream features is the hash of what disco#info on the
    guest's host answers (XEP-0115 §5), so a client that caches by hash is not misled."""
    raw = await RawXmpp.connect(server.c2s_port)
    try:
        features = await raw.open_stream(server.anon_domain)
        caps = features.find("{http://jabber.org/protocol/caps}c")
        assert caps is not None, tostr(features)
        result = await raw.auth("ANONYMOUS", b"")
        assert result.tag == f"{{{NS_SASL}}}success", tostr(result)
        await raw.open_stream()
        await raw.bind()
        node = f"{caps.get('node')}#{caps.get('ver')}"
        info = await raw.iq(
            f"<iq type='get' id='c1' to='{server.anon_domain}'><query xmlns='{NS_DISCO_INFO}' node='{node}'/></iq>",
            "c1")
        assert info.get("type") == "result", tostr(info)
        assert caps.get("ver") == caps_ver(info.find(f"{{{NS_DISCO_INFO}}}query")), tostr(info)
    finally:
        raw.close()


def caps_ver(query) -> str:
    """XEP-0115 §5.1 for a disco#info result (identities and features; no forms here)."""
    import hashlib

    identities = sorted(
        f"{i.get('category')}/{i.get('type')}//{i.get('name') or ''}"
        for i in query.iter(f"{{{NS_DISCO_INFO}}}identity"))
    features = sorted(f.get("var") for f in query.iter(f"{{{NS_DISCO_INFO}}}feature"))
    text = "".join(f"{x}<" for x in identities + features)
    forms = list(query.iter("{jabber:x:data}x"))
    for form in forms:
        fields = sorted(
            (f.get("var"), sorted(v.text or "" for v in f.iter("{jabber:x:data}value")))
            for f in form.iter("{jabber:x:data}field"))
        form_type = [values for var, values in fields if var == "FORM_TYPE"]
        if form_type:
            text += "".join(f"{v}<" for v in form_type[0])
        for var, values in fields:
            if var != "FORM_TYPE":
                text += f"{var}<" + "".join(f"{v}<" for v in values)
    return base64.b64encode(hashlib.sha1(text.encode()).digest()).decode()


@async_test
async def test_host_meta_lists_bosh_too(server):
    status, _headers, body = await asyncio.to_thread(
        fetch, f"http://127.0.0.1:{server.http_port}/.well-known/host-meta.json")
    links = json.loads(body)["links"]
    assert {"rel": "urn:xmpp:alt-connections:xbosh",
            "href": f"http://127.0.0.1:{server.http_port}/http-bind"} in links, links
    assert {"rel": "urn:xmpp:alt-connections:websocket",
            "href": f"ws://127.0.0.1:{server.http_port}/xmpp-websocket"} in links, links
    status, _headers, body = await asyncio.to_thread(
        fetch, f"https://127.0.0.1:{server.https_port}/.well-known/host-meta", context=insecure())
    xrd = ET.fromstring(body)
    links = {link.get("rel"): link.get("href")
             for link in xrd.iter("{http://docs.oasis-open.org/ns/xri/xrd-1.0}Link")}
    assert links.get("urn:xmpp:alt-connections:xbosh") == f"https://127.0.0.1:{server.https_port}/http-bind", body
    assert links.get("urn:xmpp:alt-connections:websocket") == f"wss://127.0.0.1:{server.https_port}/xmpp-websocket", body


# -- failed-login budget -----------------------------------------------------------------------

async def plain_attempt(server, user: str, password: str) -> tuple[str, str | None]:
    """One PLAIN login on a fresh connection: ('success'|'failure'|'stream-error', condition)."""
    raw = await RawXmpp.connect(server.c2s_port)
    try:
        await raw.send(stream_header("localhost"))
        await raw.read_header()
        first = await raw.next_element()
        assert first is not None and first.tag == f"{{{NS_STREAM}}}features", raw.transcript()
        elem = await raw.auth_plain(user, password)
        kind = {f"{{{NS_SASL}}}success": "success", f"{{{NS_SASL}}}failure": "failure",
                f"{{{NS_STREAM}}}error": "stream-error"}.get(elem.tag)
        assert kind, tostr(elem)
        conditions = [local(c.tag) for c in elem if local(c.tag) != "text"]
        return kind, conditions[0] if conditions else None
    finally:
        raw.close()


@async_test
async def test_one_fumbling_client_does_not_lock_out_its_neighbours(default_limits):
    """Behind one address (a campus NAT), three people each make four failed tries, as poezio
    does when it walks through SCRAM variants: the fourth person still logs in, and the account
    that kept failing is the one locked from that address."""
    server = default_limits
    people = [f"neighbour{i}" for i in range(4)]
    for person in people:
        server.add_user(person, f"{person}-pw")
    for person in people[:3]:
        for attempt in range(4):
            outcome = await plain_attempt(server, person, f"wrong-{attempt}")
            assert outcome == ("failure", "not-authorized"), f"{person} try {attempt + 1}: {outcome}"
    assert await plain_attempt(server, people[3], f"{people[3]}-pw") == ("success", None), (
        "three clients' failures locked everyone behind their address out")
    # One more failure on the same account reaches that account's budget from this address.
    fumbler = people[0]
    for attempt in range(2):
        await plain_attempt(server, fumbler, f"still-wrong-{attempt}")
    outcome = await plain_attempt(server, fumbler, f"{fumbler}-pw")
    assert outcome == ("failure", "temporary-auth-failure"), (
        f"an account guessed at repeatedly from one address is not locked from it: {outcome}")
    assert await plain_attempt(server, people[1], f"{people[1]}-pw") == ("success", None)


# -- helpers -----------------------------------------------------------------------------------

def server_user(server) -> tuple[str, str]:
    if not getattr(server, "_interop_user", None):
        server.add_user("interop", "interop-pw")
        server._interop_user = ("interop", "interop-pw")
    return server._interop_user


def bosh_post(port: int, body: str) -> tuple[int, str]:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    connection.request("POST", "/http-bind", body.encode(), {"Content-Type": "text/xml; charset=utf-8"})
    response = connection.getresponse()
    text = response.read().decode()
    connection.close()
    return response.status, text


def fetch(url: str, context=None):
    request = urllib.request.Request(url)
    with urllib.request.urlopen(request, timeout=10, context=context) as response:
        return response.status, dict(response.headers), response.read().decode()
