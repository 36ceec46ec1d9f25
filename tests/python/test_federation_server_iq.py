"""IQs between Salon and a remote *server* (RFC 6120 §8.2.3, §10): a peer speaking from its bare
domain (a server's own disco#info or ping, XEP-0199 §4.3) gets an answer or the proper error,
never silence, whether it asks the server, a room or a user; an IQ result addressed to nobody is
dropped. The remote server is played by hand here (probe.test): an incoming stream made with
`raw_s2s`, and a listener on 127.0.0.1:5479 (named by `s2s.hosts`) taking Salon's outgoing stream
(STARTTLS, SASL EXTERNAL) so that the answers can be read.
"""

from __future__ import annotations

import queue
import socket
import ssl
import threading
import time
import xml.etree.ElementTree as ET

import pytest
import trustme

from helpers import Clients, async_test, uid
from test_federation_salon import federated_salon, login, raw_s2s

PEER = "probe.test"
PEER_PORT = 5479
NS_SERVER = "jabber:server"
NS_STREAM = "http://etherx.jabber.org/streams"


class FakePeer:
    """The receiving side of Salon's outgoing streams to probe.test: every stanza received put on `stanzas` (ElementTree elements)."""

    def __init__(self, ca: trustme.CA, answer_pings: bool = True):
        self.ca = ca
        self.answer_pings = answer_pings
        self.stanzas: queue.Queue[ET.Element] = queue.Queue()
        self.closed = threading.Event()
        self.connections = 0
        self.pings: queue.Queue[str] = queue.Queue()
        self.listener = socket.create_server(("127.0.0.1", PEER_PORT), reuse_port=False)
        self.listener.settimeout(0.5)
        self.running = True
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def stop(self):
        self.running = False
        self.thread.join(timeout=5)
        self.listener.close()

    def serve(self):
        while self.running:
            try:
                conn, _ = self.listener.accept()
            except (socket.timeout, OSError):
                continue
            self.connections += 1
            # One stream per local domain (salon.test, rooms.salon.test): each its own thread.
            threading.Thread(target=self.serve_one, args=(conn,), daemon=True).start()

    def serve_one(self, conn: socket.socket):
        try:
            self.session(conn)
        except (OSError, ssl.SSLError, ET.ParseError):
            pass
        finally:
            conn.close()
            self.closed.set()

    def session(self, conn: socket.socket):
        conn.settimeout(1)
        header = (f"<?xml version='1.0'?><stream:stream xmlns='{NS_SERVER}' "
                  f"xmlns:stream='{NS_STREAM}' from='{PEER}' id='{uid()}' "
                  f"version='1.0'>")

        def read_header(sock):
            data = b""
            while b">" not in data.split(b"<stream:stream", 1)[-1] or b"<stream:stream" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    raise OSError("closed")
                data += chunk
            return data

        def read_until(sock, marker: bytes, data=b""):
            while marker not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    raise OSError("closed")
                data += chunk
            return data

        read_header(conn)
        conn.sendall((header + "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:"
                      "xmpp-tls'><required/></starttls></stream:features>").encode())
        read_until(conn, b"starttls")
        conn.sendall(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.configure_trust(ctx)
        self.ca.issue_cert(PEER).configure_cert(ctx)
        ctx.verify_mode = ssl.CERT_OPTIONAL
        tls = ctx.wrap_socket(conn, server_side=True)
        read_header(tls)
        tls.sendall((header + "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:"
                     "xmpp-sasl'><mechanism>EXTERNAL</mechanism></mechanisms>"
                     "</stream:features>").encode())
        read_until(tls, b"</auth>")
        tls.sendall(b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
        first = read_header(tls)
        tls.sendall((header + "<stream:features/>").encode())
        parser = ET.XMLPullParser(events=("start", "end"))
        start = first.index(b"<stream:stream")
        parser.feed(first[start:])
        depth = 0
        while self.running:
            for event, elem in parser.read_events():
                if event == "start":
                    depth += 1
                elif event == "end":
                    depth -= 1
                    if depth == 1:
                        self.received(tls, elem)
                    if depth == 0:
                        return
            try:
                chunk = tls.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                return
            parser.feed(chunk)

    def received(self, tls, elem: ET.Element):
        ping = elem.find("{urn:xmpp:ping}ping")
        if elem.tag == f"{{{NS_SERVER}}}iq" and elem.get("type") == "get" and ping is not None \
                and elem.get("to") == PEER:
            self.pings.put(elem.get("id"))
            if self.answer_pings:
                # Answered on a stream of our own to Salon, as servers do (RFC 6120 §8.2.3).
                threading.Thread(target=self.answer, args=(elem,), daemon=True).start()
            return
        self.stanzas.put(elem)

    def answer(self, request: ET.Element):
        tls, _read = raw_s2s("127.0.0.10", "salon.test", PEER, self.ca, PEER, port=5489)
        try:
            tls.sendall(f"<iq xmlns='{NS_SERVER}' type='result' id='{request.get('id')}' "
                        f"from='{PEER}' to='{request.get('from')}'/>".encode())
            time.sleep(0.3)
        finally:
            tls.close()

    def wait_for(self, match, timeout=20.0) -> ET.Element:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                elem = self.stanzas.get(timeout=max(0.05, deadline - time.monotonic()))
            except queue.Empty:
                break
            if match(elem):
                return elem
        raise AssertionError("nothing matching arrived at the fake peer")


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture(scope="module")
def one(tmp_path_factory, ca):
    server = federated_salon(tmp_path_factory, ca, "fediq", "salon.test", 5489, hosts=False, s2s={
        "hosts": {PEER: f"127.0.0.1:{PEER_PORT}"},
        # Quiet outgoing streams are pinged after 2 s and closed 2 s after an unanswered ping.
        "ping_after_idle_seconds": 2, "ping_timeout_seconds": 2,
    })
    yield server
    server.stop()


@pytest.fixture(scope="module")
def peer(ca):
    fake = FakePeer(ca)
    yield fake
    fake.stop()


def ask(ca, to: str, payload: str, iq_type="get", iq_id=None):
    """Send one IQ from probe.test's bare domain over an incoming stream; return its id."""
    iq_id = iq_id or uid()
    tls, _read = raw_s2s("127.0.0.10", "salon.test", PEER, ca, PEER, port=5489)
    try:
        tls.sendall(f"<iq xmlns='{NS_SERVER}' type='{iq_type}' id='{iq_id}' from='{PEER}' "
                    f"to='{to}'>{payload}</iq>".encode())
        time.sleep(0.3)
    finally:
        tls.close()
    return iq_id


def answer_to(peer: FakePeer, iq_id: str) -> ET.Element:
    return peer.wait_for(lambda e: e.tag == f"{{{NS_SERVER}}}iq" and e.get("id") == iq_id)


def error_condition(elem: ET.Element) -> str | None:
    err = elem.find(f"{{{NS_SERVER}}}error")
    if err is None:
        return None
    for child in err:
        if child.tag.startswith("{urn:ietf:params:xml:ns:xmpp-stanzas}") and not child.tag.endswith("}text"):
            return child.tag.split("}")[1]
    return None


def test_server_answers_a_remote_servers_disco_and_ping(one, ca, peer):
    got = answer_to(peer, ask(ca, "salon.test",
                              "<query xmlns='http://jabber.org/protocol/disco#info'/>"))
    assert got.get("type") == "result", ET.tostring(got)
    features = {f.get("var") for f in got.iter("{http://jabber.org/protocol/disco#info}feature")}
    assert "urn:xmpp:ping" in features, features
    got = answer_to(peer, ask(ca, "salon.test", "<ping xmlns='urn:xmpp:ping'/>"))
    assert got.get("type") == "result", ET.tostring(got)
    got = answer_to(peer, ask(ca, "salon.test", "<query xmlns='jabber:iq:version'/>"))
    assert got.get("type") in ("result", "error"), ET.tostring(got)


def test_a_user_answers_a_remote_servers_iq(one, ca, peer):
    user, _ = one.new_user("iqu")
    got = answer_to(peer, ask(ca, user, "<vCard xmlns='vcard-temp'/>"))
    assert got.get("type") in ("result", "error"), ET.tostring(got)
    got = answer_to(peer, ask(ca, user, "<query xmlns='jabber:iq:roster'/>"))
    assert got.get("type") == "error", ET.tostring(got)
    assert error_condition(got) in ("forbidden", "service-unavailable"), ET.tostring(got)


@async_test(timeout=90)
async def test_a_room_answers_a_remote_servers_iq(one, ca, peer):
    owner_jid, owner_pw = one.new_user("iqo")
    room = f"iq{uid()}@rooms.salon.test"
    async with Clients() as cs:
        owner = await login(cs, one, owner_jid, owner_pw)
        owner.x.send_presence(pto=f"{room}/owner", pstatus="", ptype=None)
        await owner.wait_presence(lambda p: str(p["from"]) == f"{room}/owner", timeout=15)
        await owner.iq("set", room, "<query xmlns='http://jabber.org/protocol/muc#owner'>"
                                    "<x xmlns='jabber:x:data' type='submit'/></query>")
        loop = asyncio_loop()
        got = await loop.run_in_executor(None, lambda: answer_to(peer, ask(
            ca, room, "<query xmlns='http://jabber.org/protocol/disco#info'/>")))
        assert got.get("type") == "result", ET.tostring(got)
        got = await loop.run_in_executor(None, lambda: answer_to(peer, ask(
            ca, f"{room}/owner", "<ping xmlns='urn:xmpp:ping'/>")))
        assert error_condition(got) == "not-acceptable", ET.tostring(got)
        got = await loop.run_in_executor(None, lambda: answer_to(peer, ask(
            ca, room, "<query xmlns='http://jabber.org/protocol/muc#owner'/>")))
        assert error_condition(got) == "forbidden", ET.tostring(got)


def test_results_addressed_to_nobody_are_dropped(one, ca, peer):
    # A result and an error to the server's domain: nothing goes back (§8.2.3), while a ping
    # sent after them is answered, so the peer's stream was up to carry any answer.
    ask(ca, "salon.test", "", iq_type="result", iq_id="stray-result")
    ask(ca, "salon.test", "<error type='cancel'><item-not-found "
        "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>", iq_type="error", iq_id="stray-error")
    ping = ask(ca, "salon.test", "<ping xmlns='urn:xmpp:ping'/>")
    seen = []
    answer = peer.wait_for(lambda e: seen.append(e.get("id")) or e.get("id") == ping)
    assert answer.get("type") == "result"
    assert "stray-result" not in seen and "stray-error" not in seen, seen


def drain(q: queue.Queue) -> list:
    items = []
    while not q.empty():
        items.append(q.get_nowait())
    return items


def test_quiet_outgoing_stream_is_pinged_and_kept_while_answered(one, ca, peer):
    """XEP-0199 §4.3: Salon pings the peer on its quiet outgoing stream; answered pings keep
    the stream (no new connection, none closed)."""
    answer_to(peer, ask(ca, "salon.test", "<ping xmlns='urn:xmpp:ping'/>"))
    drain(peer.pings)
    connections = peer.connections
    peer.closed.clear()
    time.sleep(8)
    pings = drain(peer.pings)
    assert len(pings) >= 2, pings
    assert all(p.startswith("s2s-ping-") for p in pings), pings
    assert peer.connections == connections, "an answered stream was reopened"
    assert not peer.closed.is_set(), "an answered stream was closed"


def test_unanswered_ping_closes_the_stream(one, ca, peer):
    answer_to(peer, ask(ca, "salon.test", "<ping xmlns='urn:xmpp:ping'/>"))
    peer.answer_pings = False
    try:
        peer.closed.clear()
        started = time.monotonic()
        assert peer.closed.wait(timeout=12), "Salon kept a stream whose peer does not answer"
        # Quiet for 2 s, then 2 s for the answer: closed in bounded time.
        assert time.monotonic() - started < 10
        deadline = time.monotonic() + 5
        while "no answer to ping" not in one.log_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "no answer to ping" in one.log_text()
    finally:
        peer.answer_pings = True


def asyncio_loop():
    import asyncio
    return asyncio.get_running_loop()
