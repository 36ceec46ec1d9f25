"""Federation between two Salon servers (RFC 6120 server-to-server, XEP-0178 SASL EXTERNAL,
XEP-0220 dialback): salon.test on 127.0.0.10 and salon2.test on 127.0.0.13, each listening for
servers on a side port of its own address (5269 is left to the Prosody/ejabberd tests) named by
`s2s.hosts` and found through /etc/hosts; a domain that exists nowhere goes through the SRV
lookups (which time out after `dns_timeout_seconds`: the name server is unreachable) and the
system resolver.
Certificates come from a private CA made here (trustme) and named in `s2s.ca_file`.

Covers: 1:1 messages and IQs both ways, offline storage for a remote sender, presence
subscriptions reaching `both` on both sides with presence and probes flowing, a remote user in a
room (history, groupchat, private messages, the room's archive), a mediated invitation to a
user of the other Salon, vCards read across both ways, ghosts of a killed server leaving
the room, guests refused federation both ways, SASL EXTERNAL with valid certificates (STARTTLS and
direct TLS), dialback when one certificate is not trusted and the policy allows it, refusal when
the policy requires valid certificates, blocked domains, SRV records followed in order, a bounce
for a domain that does not exist within a bounded time, a forged `from` ending the stream, the
cap on domain pairs one stream may authenticate, and the s2s metrics.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import socket
import ssl
import time
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import trustme

from conftest import start_server
from federation_peers import ensure_hosts
from helpers import Client, Clients, async_test, stanza_error_condition, uid

NS_ROSTER = "jabber:iq:roster"
NS_MUC = "http://jabber.org/protocol/muc"


def names(domain: str) -> list[str]:
    return [domain, f"rooms.{domain}", f"anon.{domain}", f"upload.{domain}"]


def write_cert(ca: trustme.CA, domain: str, directory: Path) -> dict:
    cert = ca.issue_cert(*names(domain))
    directory.mkdir(parents=True, exist_ok=True)
    chain, key = directory / "cert.pem", directory / "key.pem"
    cert.private_key_pem.write_to_path(str(key))
    with open(chain, "wb") as out:
        for blob in cert.cert_chain_pems:
            out.write(blob.bytes())
    return {"cert": str(chain), "key": str(key)}


def salon(tmp_path_factory, name, domain, address, tls, s2s, port=5269, **extra):
    return start_server(
        tmp_path_factory,
        name,
        domain=domain,
        listen={"s2s": f"{address}:{port}", "s2s_direct_tls": f"{address}:{port + 1}"},
        tls=tls,
        s2s=s2s,
        muc={"create_rooms": "anyone"} if "muc" not in extra else extra.pop("muc"),
        **extra,
    )


ADDRESSES = {"salon.test": "127.0.0.10", "salon2.test": "127.0.0.13"}


def federated_salon(tmp_path_factory, ca: trustme.CA, name: str, domain: str, port: int, *,
                    s2s: dict | None = None, cert_ca: trustme.CA | None = None,
                    hosts: bool = True, **extra):
    """A Salon for `domain` (salon.test or salon2.test) on its loopback address, s2s on `port`
    (direct TLS on the next one), trusting `ca`, with a certificate from `cert_ca` (default:
    `ca`). `hosts`: both Salons' names at `port` in `s2s.hosts`, so that each finds the other
    without DNS (the override names the host, which the system resolver finds in /etc/hosts).
    `s2s` adds to or replaces the [s2s] keys."""
    ensure_hosts()
    base = tmp_path_factory.mktemp(f"{name}-certs")
    ca_file = base / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    settings = {"ca_file": str(ca_file), "dns_timeout_seconds": 1}
    if hosts:
        settings["hosts"] = {n: f"{n}:{port}" for d in ADDRESSES for n in names(d)}
    settings.update(s2s or {})
    return salon(tmp_path_factory, name, domain, ADDRESSES[domain],
                 write_cert(cert_ca or ca, domain, base / "cert"), settings, port=port, **extra)


@contextlib.contextmanager
def federated_pair(tmp_path_factory, ca: trustme.CA, name: str, port: int, *,
                   one: dict | None = None, two: dict | None = None):
    """salon.test and salon2.test on `port` (see `federated_salon`), stopped on the way out.
    `one` and `two`: keyword arguments of `federated_salon` for each."""
    first = federated_salon(tmp_path_factory, ca, f"{name}1", "salon.test", port, **(one or {}))
    try:
        second = federated_salon(tmp_path_factory, ca, f"{name}2", "salon2.test", port,
                                 **(two or {}))
        try:
            yield first, second
        finally:
            second.stop()
    finally:
        first.stop()


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture(scope="module")
def pair(tmp_path_factory, ca):
    """Both servers trust the same CA and require valid certificates (the default). Port 5469
    rather than 5269, where the Prosody/ejabberd tests run Salon."""
    with federated_pair(tmp_path_factory, ca, "fed", 5469, one={"metrics": True}) as servers:
        yield servers


async def login(cs, server, jid, password):
    return await cs.login(server, f"{jid}/r{uid()}", password, mech="SCRAM-SHA-256")


async def create_room(owner: Client, room: str, nick: str):
    """A plain join creates the room; its owner accepts the default configuration (an instant
    room, XEP-0045 §10.1.2), which unlocks it."""
    owner.x.send_presence(pto=f"{room}/{nick}")
    await owner.wait_presence(lambda p: str(p["from"]) == f"{room}/{nick}", timeout=15)
    resp = await owner.iq("set", room, "<query xmlns='http://jabber.org/protocol/muc#owner'>"
                                       "<x xmlns='jabber:x:data' type='submit'/></query>")
    assert resp["type"] == "result", resp


async def roster_items(c: Client) -> dict:
    resp = await c.iq("get", None, f"<query xmlns='{NS_ROSTER}'/>")
    query = resp.xml.find(f"{{{NS_ROSTER}}}query")
    return {item.get("jid"): item.get("subscription") for item in query.findall(f"{{{NS_ROSTER}}}item")}


@async_test(timeout=90)
async def test_messages_cross_both_ways_with_sasl_external(pair):
    one, two = pair
    (a_jid, a_pw), (b_jid, b_pw) = one.new_user("fa"), two.new_user("fb")
    async with Clients() as cs:
        alice = await login(cs, one, a_jid, a_pw)
        bob = await login(cs, two, b_jid, b_pw)
        alice.send_message(b_jid, "hello from salon.test")
        got = await bob.wait_message(lambda m: m["body"] == "hello from salon.test", timeout=30)
        assert str(got["from"]).startswith(a_jid + "/"), got
        bob.send_message(alice.jid, "hello back")
        got = await alice.wait_message(lambda m: m["body"] == "hello back", timeout=30)
        assert str(got["from"]).startswith(b_jid + "/"), got
        # An IQ crosses and its answer comes back (version of the remote account's client is
        # not asked: the remote server answers for the bare JID, XEP-0030 disco#info).
        resp = await alice.iq("get", b_jid, "<query xmlns='http://jabber.org/protocol/disco#info'/>")
        assert resp["type"] in ("result", "error"), resp
        assert str(resp["from"]) == b_jid, resp
    metrics = metrics_text(one)
    for direction in ("incoming", "outgoing"):
        assert re.search(
            rf'salon_s2s_authentications_total\{{direction="{direction}",method="sasl_external"\}} [1-9]',
            metrics,
        ), metrics
    for server, peer in ((one, "salon2.test"), (two, "salon.test")):
        log = server.log_text()
        assert re.search(rf"remote=\S*{re.escape(peer)}\S* method=\S*SASL EXTERNAL", log) or (
            "SASL EXTERNAL" in log and "incoming stream authenticated" in log
        ), log[-3000:]


@async_test(timeout=90)
async def test_offline_message_from_a_remote_sender_is_kept(pair):
    one, two = pair
    (a_jid, a_pw), (b_jid, b_pw) = one.new_user("oa"), two.new_user("ob")
    async with Clients() as cs:
        alice = await login(cs, one, a_jid, a_pw)
        alice.send_message(b_jid, "while you were away")
        await asyncio.sleep(3)
        bob = await login(cs, two, b_jid, b_pw)
        got = await bob.wait_message(lambda m: m["body"] == "while you were away", timeout=30)
        assert str(got["from"]).startswith(a_jid), got


@async_test(timeout=120)
async def test_subscription_reaches_both_on_both_sides(pair):
    one, two = pair
    (a_jid, a_pw), (b_jid, b_pw) = one.new_user("sa"), two.new_user("sb")
    async with Clients() as cs:
        alice = await login(cs, one, a_jid, a_pw)
        bob = await login(cs, two, b_jid, b_pw)
        alice.x.send_presence(pto=b_jid, ptype="subscribe")
        await bob.wait_presence(lambda p: p["type"] == "subscribe", timeout=30)
        bob.x.send_presence(pto=a_jid, ptype="subscribed")
        await alice.wait_presence(lambda p: p["type"] == "subscribed", timeout=30)
        bob.x.send_presence(pto=a_jid, ptype="subscribe")
        await alice.wait_presence(lambda p: p["type"] == "subscribe", timeout=30)
        alice.x.send_presence(pto=b_jid, ptype="subscribed")
        await bob.wait_presence(lambda p: p["type"] == "subscribed", timeout=30)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            ra, rb = await roster_items(alice), await roster_items(bob)
            if ra.get(b_jid) == "both" and rb.get(a_jid) == "both":
                break
            await asyncio.sleep(0.3)
        assert ra.get(b_jid) == "both" and rb.get(a_jid) == "both", (ra, rb)
        # Presence now flows: a status change reaches the other side.
        bob.x.send_presence(pstatus="over here")
        await alice.wait_presence(
            lambda p: str(p["from"]).startswith(b_jid) and p["status"] == "over here", timeout=30
        )
        # A new session of alice probes bob (RFC 6121 §4.3) and learns he is online.
        alice2 = await login(cs, one, a_jid, a_pw)
        await alice2.wait_presence(
            lambda p: str(p["from"]).startswith(b_jid) and p["type"] in ("", "available"),
            timeout=30,
        )


@async_test(timeout=120)
async def test_remote_user_in_a_room(pair):
    one, two = pair
    (a_jid, a_pw), (b_jid, b_pw) = one.new_user("ra"), two.new_user("rb")
    room = f"fed{uid()}@rooms.salon.test"
    async with Clients() as cs:
        alice = await login(cs, one, a_jid, a_pw)
        await create_room(alice, room, "alice")
        alice.x.send_message(mto=room, mbody="before bob", mtype="groupchat")
        await alice.wait_message(lambda m: m["body"] == "before bob", timeout=15)

        bob = await login(cs, two, b_jid, b_pw)
        join = bob.x.make_presence(pto=f"{room}/bob")
        join.append(ET.Element(f"{{{NS_MUC}}}x"))
        join.send()
        await bob.wait_presence(lambda p: str(p["from"]) == f"{room}/bob", timeout=30)
        await bob.wait_message(lambda m: m["body"] == "before bob", timeout=30)  # history
        await alice.wait_presence(lambda p: str(p["from"]) == f"{room}/bob", timeout=30)

        bob.x.send_message(mto=room, mbody="hi room", mtype="groupchat")
        await alice.wait_message(lambda m: m["body"] == "hi room", timeout=30)
        await bob.wait_message(lambda m: m["body"] == "hi room", timeout=30)  # reflection
        alice.x.send_message(mto=room, mbody="welcome", mtype="groupchat")
        await bob.wait_message(lambda m: m["body"] == "welcome", timeout=30)
        # Private messages both ways through the room.
        alice.x.send_message(mto=f"{room}/bob", mbody="psst", mtype="chat")
        got = await bob.wait_message(lambda m: m["body"] == "psst", timeout=30)
        assert str(got["from"]) == f"{room}/alice", got
        bob.x.send_message(mto=f"{room}/alice", mbody="psst back", mtype="chat")
        got = await alice.wait_message(lambda m: m["body"] == "psst back", timeout=30)
        assert str(got["from"]) == f"{room}/bob", got
        # The room's archive answers the remote occupant (XEP-0313 §6), results before the IQ.
        resp = await bob.iq("set", room, "<query xmlns='urn:xmpp:mam:2' queryid='q1'/>", timeout=30)
        assert resp["type"] == "result", resp
        archived = [
            m for m in bob.messages
            if m.xml.find("{urn:xmpp:mam:2}result") is not None
            and "before bob" in ET.tostring(m.xml, encoding="unicode")
        ]
        assert archived, [str(m) for m in bob.messages]


@async_test(timeout=60)
async def test_guests_do_not_federate(pair):
    one, two = pair
    b_jid, _b_pw = two.new_user("gb")
    async with Clients() as cs:
        guest = await cs.login(one, one.anon_domain, "", mech="ANONYMOUS")
        mid = guest.send_message(b_jid, "guest to remote")
        err = await guest.wait_message(lambda m: m["id"] == mid and m["type"] == "error", timeout=15)
        assert stanza_error_condition(err.xml) == "not-allowed", err
        # Nor can other servers' users reach the guest directly (only through rooms).
        bob = await login(cs, two, b_jid, _b_pw)
        mid = bob.send_message(guest.jid, "remote to guest")
        err = await bob.wait_message(lambda m: m["id"] == mid and m["type"] == "error", timeout=15)
        assert stanza_error_condition(err.xml) == "not-allowed", err
        await asyncio.sleep(0.3)
        assert not [m for m in guest.messages if m["body"] == "remote to guest"]


@async_test(timeout=60)
async def test_unknown_domain_bounces_in_bounded_time(pair):
    one, _two = pair
    a_jid, a_pw = one.new_user("ua")
    async with Clients() as cs:
        alice = await login(cs, one, a_jid, a_pw)
        started = time.monotonic()
        mid = alice.send_message("nobody@no-such-domain.invalid", "anyone?")
        err = await alice.wait_message(lambda m: m["id"] == mid and m["type"] == "error", timeout=30)
        assert stanza_error_condition(err.xml) in ("remote-server-not-found", "remote-server-timeout"), err
        assert time.monotonic() - started < 30
    metrics = metrics_text(one)
    assert re.search(r'salon_s2s_bounces_total\{condition="remote-server-(not-found|timeout)"\} [1-9]', metrics), metrics


def metrics_text(server) -> str:
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def raw_s2s(address: str, to: str, frm: str, ca: trustme.CA, cert_domain: str | list[str],
            timeout=15.0, port=5469, direct_tls=False):
    """A hand-made server stream: STARTTLS (or TLS from the first byte, XEP-0368, on the next
    port) with a certificate from `ca` for `cert_domain` (or each of a list of names), SASL
    EXTERNAL as `frm`. Returns the TLS socket after the restart and a reader."""
    sock = socket.create_connection((address, port + 1 if direct_tls else port), timeout=timeout)
    header = (f"<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
              f"xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' "
              f"to='{to}' from='{frm}' version='1.0'>")
    buf = b""

    def read_until(s, marker: bytes) -> bytes:
        nonlocal buf
        deadline = time.monotonic() + timeout
        while marker not in buf and time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        got, _, buf = buf.partition(marker)
        return got + marker if marker in got + marker else got

    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    names = [cert_domain] if isinstance(cert_domain, str) else cert_domain
    ca.issue_cert(*names).configure_cert(ctx)
    if direct_tls:
        ctx.set_alpn_protocols(["xmpp-server"])
    else:
        sock.sendall(header.encode())
        read_until(sock, b"</stream:features>")
        sock.sendall(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        read_until(sock, b"/>")
    # The server's certificate checks out against the test CA for the name asked.
    tls = ctx.wrap_socket(sock, server_hostname=to)
    buf = b""
    tls.sendall(header.encode())
    features = read_until(tls, b"</stream:features>")
    assert b"EXTERNAL" in features, features
    tls.sendall(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>"
                + base64.b64encode(frm.encode()) + b"</auth>")
    answer = read_until(tls, b"/>")
    assert b"success" in answer, answer
    tls.sendall(header.encode())
    read_until(tls, b"</stream:features>")
    return tls, lambda marker: read_until(tls, marker)


def test_forged_from_ends_the_stream(pair, ca):
    one, _two = pair
    a_jid, _ = one.new_user("fa")
    # A server that proved it is forger.test may not speak for salon2.test.
    tls, read = raw_s2s("127.0.0.10", "salon.test", "forger.test", ca, "forger.test")
    try:
        tls.sendall(f"<message xmlns='jabber:server' from='mallory@salon2.test/x' to='{a_jid}' "
                    f"type='chat'><body>forged</body></message>".encode())
        answer = read(b"</stream:stream>")
        assert b"invalid-from" in answer, answer
    finally:
        tls.close()
    assert "forger.test" in one.log_text()


@async_test(timeout=60)
async def test_direct_tls_listener_takes_sasl_external(pair, ca):
    """XEP-0368: a peer connecting with TLS from the first byte (ALPN xmpp-server)
    authenticates and delivers."""
    one, _two = pair
    a_jid, a_pw = one.new_user("dt")
    async with Clients() as cs:
        alice = await login(cs, one, a_jid, a_pw)
        loop = asyncio.get_running_loop()

        def speak():
            tls, _read = raw_s2s("127.0.0.10", "salon.test", "direct.test", ca, "direct.test",
                                 direct_tls=True)
            assert tls.selected_alpn_protocol() == "xmpp-server"
            tls.sendall(f"<message xmlns='jabber:server' from='dora@direct.test/x' to='{a_jid}' "
                        f"type='chat'><body>over direct TLS</body></message>".encode())
            return tls

        tls = await loop.run_in_executor(None, speak)
        try:
            got = await alice.wait_message(lambda m: m["body"] == "over direct TLS", timeout=15)
            assert str(got["from"]) == "dora@direct.test/x", got
        finally:
            tls.close()


class TinySrvResponder:
    """A DNS server on loopback that knows only SRV records (RFC 1035 packets by hand, RFC 2782
    records): enough for Salon's SRV lookups through `s2s.nameserver`. Other names: NXDOMAIN."""

    def __init__(self, records: dict[str, list[tuple[int, int, int, str]]]):
        import threading
        self.records = {name.lower().rstrip("."): answers for name, answers in records.items()}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.asked: list[str] = []
        self.running = True
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    @staticmethod
    def encode_name(name: str) -> bytes:
        return b"".join(bytes([len(label)]) + label.encode() for label in name.rstrip(".").split(".")) + b"\0"

    def serve(self):
        while self.running:
            try:
                packet, peer = self.sock.recvfrom(4096)
            except (socket.timeout, OSError):
                continue
            if len(packet) < 12:
                continue
            labels, i = [], 12
            while i < len(packet) and packet[i] != 0:
                n = packet[i]
                labels.append(packet[i + 1:i + 1 + n].decode(errors="replace"))
                i += 1 + n
            question_end = i + 5
            qtype = int.from_bytes(packet[i + 1:i + 3], "big")
            name = ".".join(labels).lower()
            self.asked.append(name)
            answers = self.records.get(name, []) if qtype == 33 else []
            known = name in self.records
            flags = 0x8180 if known else 0x8183
            header = packet[:2] + flags.to_bytes(2, "big") + (1).to_bytes(2, "big") \
                + len(answers).to_bytes(2, "big") + b"\0\0\0\0"
            body = packet[12:question_end]
            for priority, weight, port, target in answers:
                rdata = priority.to_bytes(2, "big") + weight.to_bytes(2, "big") \
                    + port.to_bytes(2, "big") + self.encode_name(target)
                body += b"\xc0\x0c" + (33).to_bytes(2, "big") + (1).to_bytes(2, "big") \
                    + (60).to_bytes(4, "big") + len(rdata).to_bytes(2, "big") + rdata
            self.sock.sendto(header + body, peer)

    def close(self):
        self.running = False
        self.thread.join(timeout=2)
        self.sock.close()


@async_test(timeout=90)
async def test_srv_records_are_followed_in_priority_order(pair, ca, tmp_path_factory):
    """RFC 6120 §3.2.1: a third server (salon.test on a side port) has no hosts override; it
    finds salon2.test through `_xmpp-server._tcp` SRV records from a DNS responder here, skips
    the first target (nothing listens there) and delivers through the second."""
    _one, two = pair
    dns = TinySrvResponder({
        "_xmpp-server._tcp.salon2.test": [(10, 0, 5999, "salon2.test"), (20, 0, 5469, "salon2.test")],
    })
    three = federated_salon(tmp_path_factory, ca, "fedsrv", "salon.test", 5569, hosts=False,
                            s2s={"dns_timeout_seconds": 2,
                                 "nameserver": f"127.0.0.1:{dns.port}"})
    try:
        (a_jid, a_pw), (b_jid, b_pw) = three.new_user("va"), two.new_user("vb")
        async with Clients() as cs:
            alice = await login(cs, three, a_jid, a_pw)
            bob = await login(cs, two, b_jid, b_pw)
            alice.send_message(b_jid, "found by SRV")
            await bob.wait_message(lambda m: m["body"] == "found by SRV", timeout=30)
        assert "_xmpp-server._tcp.salon2.test" in dns.asked, dns.asked
        assert "_xmpps-server._tcp.salon2.test" in dns.asked, dns.asked
        log = three.log_text()
        assert "salon2.test" in log and "5999" in log, log[-3000:]
    finally:
        three.stop()
        dns.close()


# ----- policies: one side's certificate not trusted by the other ------------------------------

def untrusted_pair(tmp_path_factory, ca, salon_policy: str):
    """salon.test does not trust salon2.test's certificate (another CA); salon2.test trusts
    salon.test's. Side ports (5369) keep them apart from `pair`."""
    return federated_pair(tmp_path_factory, ca, "pol", 5369,
                          one={"s2s": {"domain_policy": {"salon2.test": salon_policy}}},
                          two={"cert_ca": trustme.CA()})


@async_test(timeout=90)
async def test_dialback_when_the_policy_allows_it(tmp_path_factory, ca):
    with untrusted_pair(tmp_path_factory, ca, "allow_dialback") as (one, two):
        (a_jid, a_pw), (b_jid, b_pw) = one.new_user("da"), two.new_user("db")
        async with Clients() as cs:
            alice = await login(cs, one, a_jid, a_pw)
            bob = await login(cs, two, b_jid, b_pw)
            bob.send_message(a_jid, "via dialback")
            await alice.wait_message(lambda m: m["body"] == "via dialback", timeout=30)
            alice.send_message(b_jid, "and back")
            await bob.wait_message(lambda m: m["body"] == "and back", timeout=30)
        # salon.test verified salon2.test by dialback, not by its certificate.
        assert re.search(r"method=\S*dialback", one.log_text()), one.log_text()[-3000:]


@async_test(timeout=90)
async def test_refused_when_the_policy_requires_a_valid_certificate(tmp_path_factory, ca):
    with untrusted_pair(tmp_path_factory, ca, "require_valid_certificate") as (one, two):
        (a_jid, a_pw), (b_jid, b_pw) = one.new_user("na"), two.new_user("nb")
        async with Clients() as cs:
            alice = await login(cs, one, a_jid, a_pw)
            bob = await login(cs, two, b_jid, b_pw)
            mid = bob.send_message(a_jid, "let me in")
            err = await bob.wait_message(lambda m: m["id"] == mid and m["type"] == "error", timeout=40)
            assert stanza_error_condition(err.xml) in ("remote-server-not-found", "remote-server-timeout"), err
            mid = alice.send_message(b_jid, "not to you")
            err = await alice.wait_message(lambda m: m["id"] == mid and m["type"] == "error", timeout=40)
            assert stanza_error_condition(err.xml) == "remote-server-not-found", err
            await asyncio.sleep(0.5)
            assert not [m for m in alice.messages if m["body"] == "let me in"]


@async_test(timeout=90)
async def test_occupants_of_a_vanished_server_leave_the_room(tmp_path_factory, ca):
    """When a remote occupant's server goes away, the room's next message to it bounces
    (remote-server-not-found) and the room removes the ghost, telling the others."""
    with federated_pair(tmp_path_factory, ca, "ghost", 5769,
                        one={"s2s": {"connect_timeout_seconds": 5}},
                        two={"s2s": {"connect_timeout_seconds": 5}}) as (one, two):
        (a_jid, a_pw), (b_jid, b_pw) = one.new_user("ga"), two.new_user("gb")
        room = f"ghost{uid()}@rooms.salon.test"
        async with Clients() as cs:
            alice = await login(cs, one, a_jid, a_pw)
            await create_room(alice, room, "alice")
            bob = await login(cs, two, b_jid, b_pw)
            join = bob.x.make_presence(pto=f"{room}/bob")
            join.append(ET.Element(f"{{{NS_MUC}}}x"))
            join.send()
            await alice.wait_presence(lambda p: str(p["from"]) == f"{room}/bob", timeout=30)
            # Killed: no unavailable presence from bob's server, the room must find out.
            two.proc.kill()
            two.proc.wait(timeout=10)
            alice.x.send_message(mto=room, mbody="anyone there?", mtype="groupchat")
            await alice.wait_presence(
                lambda p: str(p["from"]) == f"{room}/bob" and p["type"] == "unavailable",
                timeout=30,
            )


@async_test(timeout=60)
async def test_blocked_domains_are_refused_both_ways(tmp_path_factory, ca):
    one = federated_salon(tmp_path_factory, ca, "block", "salon.test", 5869, hosts=False,
                          s2s={"blocked_domains": ["evil.test"]})
    try:
        a_jid, a_pw = one.new_user("ba")
        async with Clients() as cs:
            alice = await login(cs, one, a_jid, a_pw)
            started = time.monotonic()
            mid = alice.send_message("mallory@evil.test", "hi")
            err = await alice.wait_message(lambda m: m["id"] == mid and m["type"] == "error", timeout=10)
            assert stanza_error_condition(err.xml) == "not-allowed", err
            assert time.monotonic() - started < 5, "refused without trying to connect"
        # A stream that says it comes from the blocked domain ends at its header.
        sock = socket.create_connection(("127.0.0.10", 5869), timeout=10)
        sock.sendall(b"<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
                     b"xmlns:stream='http://etherx.jabber.org/streams' to='salon.test' "
                     b"from='evil.test' version='1.0'>")
        data = b""
        while b"</stream:stream>" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        sock.close()
        assert b"policy-violation" in data, data
    finally:
        one.stop()


NS_MUC_USER = "http://jabber.org/protocol/muc#user"
NS_VCARD = "vcard-temp"


@async_test(timeout=90)
async def test_mediated_invite_reaches_a_user_on_the_other_salon(pair):
    """XEP-0045 §7.8.2: the owner invites through the room; the room sends the invitation from
    its own JID across federation, naming the owner."""
    one, two = pair
    (a_jid, a_pw), (b_jid, b_pw) = one.new_user("ia"), two.new_user("ib")
    room = f"inv{uid()}@rooms.salon.test"
    async with Clients() as cs:
        alice = await login(cs, one, a_jid, a_pw)
        await create_room(alice, room, "alice")
        bob = await login(cs, two, b_jid, b_pw)
        # The invitation has no body, so it is not kept offline: bob's server must have taken
        # his initial presence first (his session handles its stanzas in order).
        await bob.ping_server()
        alice.x.send_raw(f"<message to='{room}'><x xmlns='{NS_MUC_USER}'>"
                         f"<invite to='{b_jid}'><reason>come</reason></invite></x></message>")
        got = await bob.wait_message(
            lambda m: str(m["from"]) == room
            and m.xml.find(f"{{{NS_MUC_USER}}}x/{{{NS_MUC_USER}}}invite") is not None,
            timeout=30)
        invite = got.xml.find(f"{{{NS_MUC_USER}}}x/{{{NS_MUC_USER}}}invite")
        assert invite.get("from", "").split("/")[0] == a_jid, ET.tostring(got.xml)
        assert invite.findtext(f"{{{NS_MUC_USER}}}reason") == "come"


@async_test(timeout=90)
async def test_vcard_of_a_user_on_the_other_salon(pair):
    """XEP-0054: a vCard get to a remote bare JID is answered by the other Salon, both ways."""
    one, two = pair
    (a_jid, a_pw), (b_jid, b_pw) = one.new_user("va"), two.new_user("vb")
    async with Clients() as cs:
        alice = await login(cs, one, a_jid, a_pw)
        bob = await login(cs, two, b_jid, b_pw)
        for me, name in ((alice, "Alice A"), (bob, "Bob B")):
            resp = await me.iq("set", None, f"<vCard xmlns='{NS_VCARD}'><FN>{name}</FN></vCard>")
            assert resp["type"] == "result", resp
        for asker, whose, name in ((alice, b_jid, "Bob B"), (bob, a_jid, "Alice A")):
            resp = await asker.iq("get", whose, f"<vCard xmlns='{NS_VCARD}'/>", timeout=30)
            assert resp["type"] == "result", resp
            fn = resp.xml.find(f"{{{NS_VCARD}}}vCard/{{{NS_VCARD}}}FN")
            assert fn is not None and fn.text == name, resp


async def user_and_raw_peer(cs: Clients, server, ca: trustme.CA, frm: str,
                            cert_names: list[str], port: int):
    """A new user of `server` logged in, and a raw peer's stream to salon.test (see `raw_s2s`)
    authenticated as `frm` with a certificate for `cert_names`. Returns (user's client, its
    JID, the peer's TLS socket, its reader)."""
    jid, password = server.new_user("mp")
    user = await login(cs, server, jid, password)
    tls, read = await asyncio.get_running_loop().run_in_executor(
        None, lambda: raw_s2s("127.0.0.10", "salon.test", frm, ca, cert_names, port=port))
    return user, jid, tls, read


async def kept_and_refused(tls, read, user: Client, jid: str, kept: str, refused: str):
    """On a raw peer's stream: a message from domain `kept` reaches `user`; one from domain
    `refused`, not authenticated there, ends the stream with <invalid-from/> and is not
    delivered."""
    tls.sendall(f"<message xmlns='jabber:server' from='m@{kept}/x' to='{jid}' type='chat'>"
                "<body>kept pair</body></message>".encode())
    got = await user.wait_message(lambda m: m["body"] == "kept pair", timeout=15)
    assert str(got["from"]) == f"m@{kept}/x", got
    tls.sendall(f"<message xmlns='jabber:server' from='m@{refused}/x' to='{jid}' type='chat'>"
                "<body>smuggled</body></message>".encode())
    closing = await asyncio.get_running_loop().run_in_executor(None, read, b"</stream:stream>")
    assert b"invalid-from" in closing, closing
    await asyncio.sleep(0.5)
    assert not [m for m in user.messages if m["body"] == "smuggled"]


@async_test(timeout=90)
async def test_a_bad_key_for_another_domain_costs_only_that_pair(pair, ca, tmp_path_factory):
    """XEP-0220 §8 from the receiving side: on a stream authenticated for forger.test (SASL
    EXTERNAL), a `<db:result/>` for rooms.salon2.test is verified with salon2.test (the
    authoritative server, which says invalid) and refused with a `<forbidden/>` dialback error
    (§2.5); the stream and its forger.test pair stay, and rooms.salon2.test may not send on it."""
    _one, _two = pair  # salon2.test answers as the authoritative server
    three = federated_salon(tmp_path_factory, ca, "fedmux", "salon.test", 5669, hosts=False,
                            s2s={"hosts": {"rooms.salon2.test": "salon2.test:5469"},
                                 "domain_policy": {"rooms.salon2.test": "allow_dialback"}})
    try:
        async with Clients() as cs:
            alice, a_jid, tls, read = await user_and_raw_peer(
                cs, three, ca, "forger.test", ["forger.test"], 5669)
            try:
                tls.sendall(b"<db:result from='rooms.salon2.test' to='salon.test'>"
                            b"0123456789abcdef</db:result>")
                answer = await asyncio.get_running_loop().run_in_executor(
                    None, read, b"</db:result>")
                assert b"type='error'" in answer and b"forbidden" in answer, answer
                # The stream goes on for the pair it authenticated, not the one it did not.
                await kept_and_refused(tls, read, alice, a_jid, "forger.test",
                                       "rooms.salon2.test")
            finally:
                tls.close()
    finally:
        three.stop()


@async_test(timeout=90)
async def test_domain_pairs_per_stream_are_capped(ca, tmp_path_factory):
    """XEP-0220 §8 from the receiving side, by an attacker: a peer whose certificate names 150
    domains multiplexes all of them on one stream (SASL EXTERNAL as mux.test, then a
    `<db:result/>` for each). `s2s.max_domain_pairs_per_stream` (100 by default) pairs are
    authenticated, the SASL one included; each one beyond gets a `<resource-constraint/>`
    dialback error (§2.5), logged once; the stream and its pairs stay, a refused domain may not
    send on it."""
    three = federated_salon(tmp_path_factory, ca, "fedpairs", "salon.test", 5889, hosts=False)
    domains = [f"d{n}.mux.test" for n in range(150)]
    try:
        async with Clients() as cs:
            alice, a_jid, tls, read = await user_and_raw_peer(
                cs, three, ca, "mux.test", ["mux.test", *domains], 5889)
            try:
                tls.sendall("".join(f"<db:result from='{d}' to='salon.test'>0123456789abcdef"
                                    "</db:result>" for d in domains).encode())

                def answers() -> tuple[list[str], list[str]]:
                    valid, refused, text = [], [], ""
                    deadline = time.monotonic() + 30
                    while len(valid) + len(refused) < len(domains) and time.monotonic() < deadline:
                        text += tls.recv(65536).decode()
                        valid = re.findall(r"to='([^']+)' type='valid'", text)
                        refused = re.findall(
                            r"to='([^']+)' type='error'><error type='cancel'><resource-constraint ",
                            text)
                    return valid, refused

                valid, refused = await asyncio.get_running_loop().run_in_executor(None, answers)
                assert len(valid) == 99 and len(refused) == 51, (len(valid), len(refused))
                assert set(valid) == set(domains[:99]) and set(refused) == set(domains[99:])
                # The stream goes on for the pairs it authenticated, not the ones it refused.
                await kept_and_refused(tls, read, alice, a_jid, domains[98], domains[99])
            finally:
                tls.close()
        log = three.log_text()
        assert log.count("too many domain pairs on one incoming stream") == 1, log[-3000:]
    finally:
        three.stop()


def test_quiet_incoming_streams_get_keepalives_then_close(ca, tmp_path_factory):
    """An authenticated incoming stream that carries nothing gets a whitespace keepalive every
    `keepalive_seconds` (RFC 6120 §4.6.4), so that a dead connection is noticed, and is closed
    after `idle_timeout_seconds` without a stanza from the peer (it reconnects on demand)."""
    three = federated_salon(tmp_path_factory, ca, "fedalive", "salon.test", 5689, hosts=False,
                            s2s={"keepalive_seconds": 1, "idle_timeout_seconds": 10})
    try:
        tls, _read = raw_s2s("127.0.0.10", "salon.test", "quiet.test", ca, "quiet.test",
                             port=5689)
        started = time.monotonic()
        tls.settimeout(20)
        received = b""
        spaces_at = []
        try:
            while b"</stream:stream>" not in received and time.monotonic() - started < 20:
                chunk = tls.recv(4096)
                if not chunk:
                    break
                if chunk.strip() == b"" and b" " in chunk:
                    spaces_at.append(time.monotonic() - started)
                received += chunk
        finally:
            tls.close()
        closed_after = time.monotonic() - started
        assert b"</stream:stream>" in received, received
        # About one space a second while quiet (at least a few, not a flood).
        assert 4 <= len(spaces_at) <= 15, (spaces_at, received)
        assert 8 <= closed_after <= 15, f"closed after {closed_after:.1f}s"
        assert "closing idle incoming stream" in three.log_text()
    finally:
        three.stop()
