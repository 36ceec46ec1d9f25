"""XMPP over WebSocket (RFC 7395) with the `websockets` client library, over HTTP and HTTPS:
framing, login, messages, host-meta discovery and CORS, and refusals (no subprotocol,
oversized message, bad framing, guests reaching other servers)."""

import asyncio
import json
import ssl
import urllib.request

import websockets

from conftest import server_fixture
from helpers import async_test
from websocket_helpers import FRAMING, SASL, open_anonymous, recv, recv_until

server = server_fixture("websocket", max_stanza_bytes=20000)


def insecure() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@async_test()
async def test_login_and_talk_over_websocket_and_secure_websocket(server):
    server.add_user("wsfriend", "pw")
    plain_url = f"ws://127.0.0.1:{server.http_port}/xmpp-websocket"
    tls_url = f"wss://127.0.0.1:{server.https_port}/xmpp-websocket"
    async with websockets.connect(plain_url, subprotocols=["xmpp"]) as guest, \
            websockets.connect(tls_url, subprotocols=["xmpp"], ssl=insecure()) as member:
        assert guest.subprotocol == "xmpp"
        guest_jid = await open_anonymous(guest)
        assert "@anon.localhost/" in guest_jid
        # The account logs in with PLAIN over wss://.
        await member.send(f"<open xmlns='{FRAMING}' to='localhost' version='1.0'/>")
        await recv(member)
        features = await recv(member)
        assert "SCRAM-SHA-256" in features and "PLAIN" in features, features
        import base64
        token = base64.b64encode(b"\0wsfriend\0pw").decode()
        await member.send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>{token}</auth>")
        assert "<success" in await recv(member)
        await member.send(f"<open xmlns='{FRAMING}' to='localhost' version='1.0'/>")
        await recv(member)
        await recv(member)
        await member.send("<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>ws</resource></bind></iq>")
        assert "wsfriend@localhost/ws" in await recv_until(member, "<jid>")
        await member.send("<presence xmlns='jabber:client'/>")
        # The server reflects our presence: from then on we are available for bare-JID messages.
        await recv_until(member, "<presence")


        await guest.send(f"<message xmlns='jabber:client' to='wsfriend@localhost' type='chat'><body>hi over ws</body></message>")
        frame = await recv_until(member, "hi over ws")
        assert f"from='{guest_jid}'" in frame or f'from="{guest_jid}"' in frame, frame
        # Each WebSocket message holds exactly one element.
        assert frame.count("<message") == 1, frame
        await guest.send(f"<close xmlns='{FRAMING}'/>")
        closing = await recv_until(guest, "close")
        assert FRAMING in closing


@async_test()
async def test_subprotocol_is_required(server):
    try:
        async with websockets.connect(f"ws://127.0.0.1:{server.http_port}/xmpp-websocket"):
            raise AssertionError("connected without the xmpp subprotocol")
    except websockets.exceptions.InvalidStatus as refused:
        assert refused.response.status_code == 400


@async_test()
async def test_oversized_stanza_and_bad_framing_get_stream_errors(server):
    url = f"ws://127.0.0.1:{server.http_port}/xmpp-websocket"
    async with websockets.connect(url, subprotocols=["xmpp"]) as ws:
        await open_anonymous(ws)
        await ws.send("<message xmlns='jabber:client' to='x@localhost'><body>" + "x" * 30000 + "</body></message>")
        error = await recv_until(ws, "stream:error")
        assert "policy-violation" in error, error
    async with websockets.connect(url, subprotocols=["xmpp"]) as ws:
        await ws.send("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>")
        error = await recv_until(ws, "stream:error")
        assert "not-well-formed" in error or "invalid-namespace" in error, error
    async with websockets.connect(url, subprotocols=["xmpp"]) as ws:
        # Far larger than a stanza may be: the WebSocket itself is closed (1009).
        await open_anonymous(ws)
        try:
            await ws.send("x" * (2 * 1024 * 1024))
            await recv_until(ws, "never", timeout=5)
            raise AssertionError("the oversized message was accepted")
        except websockets.exceptions.ConnectionClosed as closed:
            # RFC 6455 7.4.1: 1009, message too big. The close frame can be lost to a reset
            # when the server closes while the client is still writing (then rcvd is None).
            assert closed.rcvd is None or closed.rcvd.code == 1009, closed


@async_test()
async def test_guest_cannot_reach_other_servers(server):
    url = f"ws://127.0.0.1:{server.http_port}/xmpp-websocket"
    async with websockets.connect(url, subprotocols=["xmpp"]) as ws:
        await open_anonymous(ws)
        await ws.send("<message xmlns='jabber:client' to='someone@elsewhere.example' id='far'><body>x</body></message>")
        error = await recv_until(ws, "id='far'")
        # Guests never federate (issue 13): refused as not allowed, whether or not [s2s] is on.
        assert "type='error'" in error and "<not-allowed " in error, error
        await ws.send("<iq xmlns='jabber:client' type='get' id='reg' to='anon.localhost'><query xmlns='jabber:iq:register'/></iq>")
        refused = await recv_until(ws, "id='reg'")
        assert "type='error'" in refused and "service-unavailable" in refused, refused


def fetch(url: str, method: str = "GET", headers: dict | None = None, context=None):
    request = urllib.request.Request(url, method=method, headers=headers or {})
    with urllib.request.urlopen(request, timeout=10, context=context) as response:
        return response.status, dict(response.headers), response.read().decode()


@async_test()
async def test_host_meta_and_cors(server):
    status, headers, body = await asyncio.to_thread(
        fetch, f"http://127.0.0.1:{server.http_port}/.well-known/host-meta.json")
    links = json.loads(body)["links"]
    assert {"rel": "urn:xmpp:alt-connections:websocket",
            "href": f"ws://127.0.0.1:{server.http_port}/xmpp-websocket"} in links
    status, headers, body = await asyncio.to_thread(
        fetch, f"https://127.0.0.1:{server.https_port}/.well-known/host-meta", context=insecure())
    assert f"wss://127.0.0.1:{server.https_port}/xmpp-websocket" in body, body
    status, headers, _ = await asyncio.to_thread(
        fetch, f"http://127.0.0.1:{server.http_port}/http-bind", "OPTIONS",
        {"Origin": "https://embedding.example", "Access-Control-Request-Method": "POST",
         "Access-Control-Request-Headers": "content-type"})
    lowered = {k.lower(): v for k, v in headers.items()}
    assert lowered.get("access-control-allow-origin") in ("*", "https://embedding.example"), headers
    assert "POST" in lowered.get("access-control-allow-methods", ""), headers


@async_test()
async def test_fragments_pings_binary_and_close_per_rfc_6455(server):
    # Salon frames WebSocket itself (ws_frame.rs); a client we did not write checks it: a
    # message sent as several fragments is one element, a ping is answered with a pong, many
    # stanzas written at once still arrive one per message, a binary message is refused, and
    # the client's close is answered with a normal close (1000).
    url = f"ws://127.0.0.1:{server.http_port}/xmpp-websocket"
    async with websockets.connect(url, subprotocols=["xmpp"]) as ws:
        jid = await open_anonymous(ws)
        fragments = ["<message xmlns='jabber:client' to='", jid, "' id='frag'><body>",
                     "é" * 200, "</body></message>"]
        await ws.send(iter(fragments))
        echoed = await recv_until(ws, "id='frag'")
        assert "é" * 200 in echoed and echoed.startswith("<message"), echoed
        await asyncio.wait_for(await ws.ping(b"salon"), 10)
        for i in range(20):
            await ws.send(f"<message xmlns='jabber:client' to='{jid}' id='m{i}'><body>{i}</body></message>")
        for i in range(20):
            message = await recv_until(ws, f"id='m{i}'")
            assert message.count("<message") == 1 and message.endswith("</message>"), message
        await ws.close()
        assert ws.close_code == 1000, ws.close_code
    async with websockets.connect(url, subprotocols=["xmpp"]) as ws:
        await open_anonymous(ws)
        await ws.send(b"<presence xmlns='jabber:client'/>")
        error = await recv_until(ws, "stream:error")
        assert "not-well-formed" in error, error
