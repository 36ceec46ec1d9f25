"""Federation with the servers people run (issue 13): real Prosody and ejabberd from Debian's
packages as s2s peers of Salon on loopback, each with its own slixmpp clients.

The harness (federation_peers.py) gives every server its own loopback address and a certificate
from a private CA; the first test proves it with Prosody and ejabberd federating with each other,
before Salon takes part. Each test is bounded: waits of a few seconds, the whole test within
`TEST_TIMEOUT`. Run: `SALON_BIN=... bash tests/run-python.sh -k federation_peers`.
"""

from __future__ import annotations

import asyncio
import shutil
import urllib.request
import xml.etree.ElementTree as ET

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from federation_peers import (
    SALON2_ADDR,
    SALON_ADDR,
    S2S_PORT,
    Ejabberd,
    Peer,
    Prosody,
    TestCA,
    ensure_hosts,
    make_base_dir,
    peers_installed,
    self_signed_cert,
)
from helpers import Client, Clients, async_test, stanza_error_condition, uid
from salon_server import SalonServer

C = "{jabber:client}"
NS_MUC = "http://jabber.org/protocol/muc"
NS_MUC_USER = NS_MUC + "#user"
NS_MUC_ADMIN = NS_MUC + "#admin"
NS_MUC_OWNER = NS_MUC + "#owner"
NS_OID = "urn:xmpp:occupant-id:0"
NS_DELAY = "urn:xmpp:delay"
NS_ROSTER = "jabber:iq:roster"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_VCARD = "vcard-temp"
NS_SID = "urn:xmpp:sid:0"
NS_RETRACT = "urn:xmpp:message-retract:1"
NS_MODERATE = "urn:xmpp:message-moderate:1"

# Across s2s a first stanza waits for DNS, TCP, TLS, authentication (and dialback's extra
# round trip): a few seconds on a busy machine. Later stanzas reuse the stream.
S2S_WAIT = 15.0
QUIET = 4.0  # how long "nothing arrives" is watched
TEST_TIMEOUT = 120.0


# ---------------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(request):
    """/etc/hosts names, a temporary directory the peers' users can read, and the CA. The
    directory (configs, logs of every server) is kept when a test failed."""
    missing = peers_installed()
    assert not missing, (
        f"{missing} not found: tests/run-python.sh installs Debian's prosody and ejabberd"
    )
    ensure_hosts()
    base = make_base_dir()
    ca = TestCA(base / "ca")
    failed_before = request.session.testsfailed
    yield base, ca
    if request.session.testsfailed == failed_before:
        shutil.rmtree(base, ignore_errors=True)
    else:
        print(f"\nfederation peers' configs and logs kept in {base}")


@pytest.fixture(scope="module")
def prosody(world):
    base, ca = world
    peer = Prosody(base, ca).start()
    yield peer
    peer.stop()


@pytest.fixture(scope="module")
def ejabberd(world):
    base, ca = world
    peer = Ejabberd(base, ca).start()
    yield peer
    peer.stop()


def salon_server(base, ca: TestCA, domain: str, address: str, s2s: dict) -> SalonServer:
    """A Salon for `domain` with s2s on ADDRESS:5269 and a certificate covering its hosts."""
    cert = ca.issue(domain, domain, f"rooms.{domain}", f"anon.{domain}", f"upload.{domain}")
    return SalonServer(
        base / domain, domain,
        domain=domain,
        listen={"s2s": f"{address}:{S2S_PORT}"},
        tls={"cert": str(cert["cert"]), "key": str(cert["key"])},
        s2s={"ca_file": str(ca.ca_file), "dns_timeout_seconds": 1, **s2s},
        metrics=True,
    )


@pytest.fixture(scope="module")
def salon(world):
    """salon.test: valid certificates required, except from ejabberd.test (dialback allowed)."""
    base, ca = world
    srv = salon_server(base, ca, "salon.test", SALON_ADDR, {
        "default_policy": "require_valid_certificate",
        "domain_policy": {"ejabberd.test": "allow_dialback"},
    })
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(params=["prosody", "ejabberd"])
def peer(request):
    """Each peer in turn, for the tests that run the same scenario against both."""
    return request.getfixturevalue(request.param)


@pytest.fixture(autouse=True)
def logs_on_failure(request):
    """Prints the tails of the peers' logs when a test failed (conftest's hook prints Salon's)."""
    failed_before = request.session.testsfailed
    yield
    if request.session.testsfailed == failed_before:
        return
    seen = set()
    for name, server in (getattr(request.node, "funcargs", {}) or {}).items():
        if isinstance(server, Peer) and id(server) not in seen:
            seen.add(id(server))
            print(f"\n===== {name} ({server.domain}) =====\n{server.log_tail(60)}")


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def xml_of(st) -> ET.Element:
    return st.xml if hasattr(st, "xml") else st


def body(st) -> str | None:
    b = xml_of(st).find(f"{C}body")
    return None if b is None else (b.text or "")


def bare(jid: str) -> str:
    return jid.split("/", 1)[0].lower()


async def login(cs: Clients, server, account=None, plugins=("xep_0030",)) -> Client:
    """A fresh account on `server` (Salon, Prosody or ejabberd) logged in with slixmpp."""
    jid, pw = account or server.new_user("f")
    c = Client(server, f"{jid}/r{uid()}", pw)
    for p in plugins:
        c.x.register_plugin(p)
    cs.add(c)
    return await c.login()


async def guest_login(cs: Clients, server: SalonServer) -> Client:
    c = Client(server, server.anon_domain, "", mech="ANONYMOUS")
    cs.add(c)
    return await c.login()


def message_with_body(text: str, mtype: str | None = None):
    return lambda m: body(m) == text and (mtype is None or m["type"] == mtype)


async def chat_reaches(sender: Client, receiver: Client, to: str | None = None,
                       timeout: float = S2S_WAIT):
    """`sender` sends a chat message to `to` (default: receiver's bare JID); it must arrive
    with the sender's full JID as `from`."""
    text = f"hello from {sender.bare} {uid()}"
    sender.send_message(to or receiver.bare, text)
    m = await receiver.wait_message(message_with_body(text), timeout,
                                    what=f"chat from {sender.bare}")
    assert str(m["from"]) == sender.jid, f"from should be the sender's full JID: {m}"
    assert m["type"] == "chat", m
    return m


async def nothing_arrives(receiver: Client, text: str, seconds: float = QUIET):
    await asyncio.sleep(seconds)
    got = [m for m in receiver.messages if body(m) == text]
    assert not got, f"{receiver.bare} received what it should not have: {got}"


async def error_reply(sender: Client, mid: str, timeout: float = S2S_WAIT):
    m = await sender.wait_message(lambda m: m["id"] == mid and m["type"] == "error", timeout,
                                  what=f"error reply to message {mid}")
    return m, stanza_error_condition(xml_of(m))


async def roster_item(c: Client, jid: str):
    resp = await c.iq("get", None, f"<query xmlns='{NS_ROSTER}'/>")
    assert resp["type"] == "result", f"roster get failed: {resp}"
    for item in xml_of(resp).iter(f"{{{NS_ROSTER}}}item"):
        if bare(item.get("jid", "")) == bare(jid):
            return item
    return None


async def wait_subscription(c: Client, jid: str, want: str = "both", timeout: float = S2S_WAIT):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    item = None
    while loop.time() < deadline:
        item = await roster_item(c, jid)
        if item is not None and item.get("subscription") == want:
            return item
        await asyncio.sleep(0.3)
    shown = None if item is None else ET.tostring(item, encoding="unicode")
    raise AssertionError(f"{c.bare}: roster item for {jid} not '{want}' after {timeout}s: {shown}")


def presence_from(frm: str, ptype: str | None = None):
    def pred(p):
        # slixmpp's p["type"] gives the <show/> of an available presence: read the attribute.
        return bare(str(p["from"])) == bare(frm) and xml_of(p).get("type") == ptype
    return pred


def status_codes(st) -> set[str]:
    x = xml_of(st).find(f"{{{NS_MUC_USER}}}x")
    return set() if x is None else {s.get("code") for s in x.findall(f"{{{NS_MUC_USER}}}status")}


def occupant_id(st) -> str | None:
    oid = xml_of(st).find(f"{{{NS_OID}}}occupant-id")
    return None if oid is None else oid.get("id")


async def join_room(c: Client, room: str, nick: str, timeout: float = S2S_WAIT,
                    instant: bool = False):
    """Joins `room` as `nick`; waits for the self-presence (status 110) and the subject that
    ends the join (XEP-0045 §7.2.16). Returns (self-presence, messages received from the room
    before the subject). `instant`: submit the empty configuration form if the room is new."""
    start = len(c.messages)
    full = f"{room}/{nick}"
    c.x.send_raw(f"<presence to='{full}'><x xmlns='{NS_MUC}'/></presence>")
    own = await c.wait_presence(
        lambda p: str(p["from"]) == full and (p["type"] == "error" or "110" in status_codes(p)),
        timeout, what=f"self-presence from {full}")
    assert own["type"] != "error", f"{c.bare} could not join {full}: {own}"
    if instant and "201" in status_codes(own):
        resp = await c.iq("set", room, f"<query xmlns='{NS_MUC_OWNER}'>"
                          "<x xmlns='jabber:x:data' type='submit'/></query>", timeout)
        assert resp["type"] == "result", f"instant room refused: {resp}"
    subject = await c.wait_message(
        lambda m: bare(str(m["from"])) == bare(room) and m["type"] == "groupchat"
        and xml_of(m).find(f"{C}subject") is not None,
        timeout, what=f"subject from {room}")
    during = [m for m in c.messages[start:] if m is not subject
              and bare(str(m["from"])) == bare(room) and m["type"] == "groupchat"]
    return own, during


def groupchat(c: Client, room: str, text: str):
    m = c.x.make_message(mto=room, mbody=text, mtype="groupchat")
    m["id"] = uid()
    m.send()


def groupchat_from(room: str, nick: str, text: str):
    return lambda m: (m["type"] == "groupchat" and str(m["from"]) == f"{room}/{nick}"
                      and body(m) == text)


# ---------------------------------------------------------------------------------------------
# the harness itself: Prosody and ejabberd federate with each other
# ---------------------------------------------------------------------------------------------


@async_test(timeout=TEST_TIMEOUT)
async def test_harness_prosody_and_ejabberd_federate_with_each_other(prosody, ejabberd):
    """Proves the hosts, the CA and both launchers without Salon: certificate-verified s2s
    between the two peers, both ways."""
    async with Clients() as cs:
        p = await login(cs, prosody)
        e = await login(cs, ejabberd)
        await chat_reaches(p, e)
        await chat_reaches(e, p, to=p.jid)


# ---------------------------------------------------------------------------------------------
# Salon and the peers
# ---------------------------------------------------------------------------------------------


@async_test(timeout=TEST_TIMEOUT)
async def test_chat_both_ways(salon, peer):
    """1:1 messages Salon -> peer (to the bare JID) and back (to the full JID)."""
    async with Clients() as cs:
        s = await login(cs, salon)
        r = await login(cs, peer)
        await chat_reaches(s, r)
        await chat_reaches(r, s, to=s.jid)
        # And the other direction first on a fresh pair (the peer opens its stream first).
        r2 = await login(cs, peer)
        s2 = await login(cs, salon)
        await chat_reaches(r2, s2)
        await chat_reaches(s2, r2, to=r2.jid)


@async_test(timeout=TEST_TIMEOUT)
async def test_presence_subscription_reaches_both(salon, peer):
    """RFC 6121 §3: Salon user subscribes, the remote user approves and subscribes back, the
    Salon user approves; both rosters say `both` and each sees the other's presence."""
    async with Clients() as cs:
        s = await login(cs, salon)
        r = await login(cs, peer)
        s.x.send_presence(pto=r.bare, ptype="subscribe")
        await r.wait_presence(presence_from(s.bare, "subscribe"), S2S_WAIT,
                              what="subscription request from Salon")
        r.x.send_presence(pto=s.bare, ptype="subscribed")
        r.x.send_presence(pto=s.bare, ptype="subscribe")
        await s.wait_presence(presence_from(r.bare, "subscribed"), S2S_WAIT,
                              what="subscription approval from the peer")
        await s.wait_presence(presence_from(r.bare, "subscribe"), S2S_WAIT,
                              what="subscription request from the peer")
        s.x.send_presence(pto=r.bare, ptype="subscribed")
        await wait_subscription(s, r.bare)
        await wait_subscription(r, s.bare)
        # Available presence crosses in both directions once subscribed (probes or broadcast).
        await s.wait_presence(presence_from(r.bare), S2S_WAIT, what="peer's available presence")
        await r.wait_presence(presence_from(s.bare), S2S_WAIT, what="Salon's available presence")
        # A presence change is broadcast to the remote contact.
        s.x.send_presence(pshow="away", pstatus="brb")
        await r.wait_presence(lambda p: presence_from(s.bare)(p) and p["show"] == "away",
                              S2S_WAIT, what="Salon user's away presence")


@async_test(timeout=TEST_TIMEOUT)
async def test_prosody_and_ejabberd_users_in_a_salon_room(salon, prosody, ejabberd):
    """A Prosody user and an ejabberd user join a Salon room next to its owner and a guest:
    history, live messages with occupant ids, private messages, a message moderated and a kick
    by the owner."""
    room = f"fed{uid()}@{salon.muc_domain}"
    async with Clients() as cs:
        owner = await login(cs, salon)
        await join_room(owner, room, "owner", instant=True)
        history = [f"before-{i}-{uid()}" for i in range(2)]
        for text in history:
            groupchat(owner, room, text)
            await owner.wait_message(groupchat_from(room, "owner", text), what="own echo")
        guest = await guest_login(cs, salon)
        await join_room(guest, room, "guest")

        p = await login(cs, prosody)
        own, during = await join_room(p, room, "pros")
        assert occupant_id(own), f"self-presence to a Prosody user lacks an occupant id: {own}"
        got = [body(m) for m in during if xml_of(m).find(f"{{{NS_DELAY}}}delay") is not None]
        assert got[-2:] == history, f"Prosody user's history: {got}, expected {history}"

        e = await login(cs, ejabberd)
        _, during = await join_room(e, room, "ejab")
        got = [body(m) for m in during if xml_of(m).find(f"{{{NS_DELAY}}}delay") is not None]
        assert got[-2:] == history, f"ejabberd user's history: {got}, expected {history}"
        await p.wait_presence(lambda x: str(x["from"]) == f"{room}/ejab", S2S_WAIT,
                              what="ejabberd user's join seen by the Prosody user")

        # Live groupchat from each remote user reaches everyone, with the same occupant id.
        for sender, nick in ((p, "pros"), (e, "ejab")):
            text = f"live from {nick} {uid()}"
            groupchat(sender, room, text)
            seen = []
            for c in (owner, guest, p, e):
                m = await c.wait_message(groupchat_from(room, nick, text), S2S_WAIT,
                                         what=f"{nick}'s groupchat at {c.bare}")
                seen.append(occupant_id(m))
            assert seen[0] and len(set(seen)) == 1, f"occupant ids of {nick}'s message: {seen}"

        # Private messages through the room: guest <-> Prosody user, ejabberd -> Prosody user.
        text = f"pm guest->pros {uid()}"
        guest.send_message(f"{room}/pros", text)
        m = await p.wait_message(message_with_body(text), S2S_WAIT, what="guest's PM")
        assert str(m["from"]) == f"{room}/guest", m
        text = f"pm pros->guest {uid()}"
        p.send_message(f"{room}/guest", text)
        m = await guest.wait_message(message_with_body(text), S2S_WAIT, what="Prosody's PM")
        assert str(m["from"]) == f"{room}/pros", m
        text = f"pm ejab->pros {uid()}"
        e.send_message(f"{room}/pros", text)
        m = await p.wait_message(message_with_body(text), S2S_WAIT, what="ejabberd's PM")
        assert str(m["from"]) == f"{room}/ejab", m

        # Moderation: the owner retracts the ejabberd user's message (XEP-0425); both remote
        # occupants are told which message went.
        text = f"to be moderated {uid()}"
        groupchat(e, room, text)
        m = await owner.wait_message(groupchat_from(room, "ejab", text), S2S_WAIT,
                                     what="the message to moderate")
        sids = [s for s in xml_of(m).findall(f"{{{NS_SID}}}stanza-id") if s.get("by") == room]
        assert sids and sids[0].get("id"), f"no stanza-id by the room: {m}"
        sid = sids[0].get("id")
        resp = await owner.iq("set", room, f"<moderate id='{sid}' xmlns='{NS_MODERATE}'>"
                              f"<retract xmlns='{NS_RETRACT}'/><reason>test</reason></moderate>")
        assert resp["type"] == "result", f"moderation refused: {resp}"
        for c in (p, e):
            await c.wait_message(
                lambda x: bare(str(x["from"])) == bare(room)
                and any(r.get("id") == sid for r in xml_of(x).iter(f"{{{NS_RETRACT}}}retract")),
                S2S_WAIT, what="the moderation announcement")

        # A moderator action: the owner kicks the ejabberd user (XEP-0045 §8.2).
        resp = await owner.iq("set", room, f"<query xmlns='{NS_MUC_ADMIN}'>"
                              "<item nick='ejab' role='none'><reason>test</reason></item></query>")
        assert resp["type"] == "result", f"kick refused: {resp}"
        kicked = await e.wait_presence(
            lambda x: str(x["from"]) == f"{room}/ejab" and x["type"] == "unavailable",
            S2S_WAIT, what="kick presence at the ejabberd user")
        assert "307" in status_codes(kicked), f"kick presence lacks status 307: {kicked}"
        await p.wait_presence(
            lambda x: str(x["from"]) == f"{room}/ejab" and x["type"] == "unavailable"
            and "307" in status_codes(x), S2S_WAIT, what="kick seen by the Prosody user")


@async_test(timeout=TEST_TIMEOUT)
async def test_salon_account_joins_a_remote_room(salon, peer):
    """A Salon account creates and joins a room on conference.prosody.test (and on
    conference.ejabberd.test); messages flow both ways between it and a local user there, and
    the Salon account sees that user's join."""
    room = f"fed{uid()}@{peer.muc_domain}"
    async with Clients() as cs:
        s = await login(cs, salon)
        await join_room(s, room, "salonuser", instant=True)
        r = await login(cs, peer)
        await join_room(r, room, "localuser")
        await s.wait_presence(lambda x: str(x["from"]) == f"{room}/localuser", S2S_WAIT,
                              what=f"{peer.kind} user's join seen by the Salon account")
        text = f"from salon {uid()}"
        groupchat(s, room, text)
        await r.wait_message(groupchat_from(room, "salonuser", text), S2S_WAIT,
                             what="Salon account's groupchat")
        text = f"from {peer.kind} {uid()}"
        groupchat(r, room, text)
        await s.wait_message(groupchat_from(room, "localuser", text), S2S_WAIT,
                             what=f"{peer.kind} user's groupchat at the Salon account")


@async_test(timeout=TEST_TIMEOUT)
async def test_guest_cannot_reach_remote_accounts(salon, prosody):
    """XEP-0175: an anonymous guest's stanza to another domain gets an error from Salon and
    never leaves it, while a registered account's message to the same address arrives (so the
    refusal is the guest rule, not a broken link)."""
    async with Clients() as cs:
        guest = await guest_login(cs, salon)
        p = await login(cs, prosody)
        s = await login(cs, salon)
        await chat_reaches(s, p)
        text = f"guest to remote {uid()}"
        mid = guest.send_message(p.bare, text)
        m, condition = await error_reply(guest, mid, timeout=QUIET)
        assert condition, f"error without a defined condition: {m}"
        await nothing_arrives(p, text)
        # A guest cannot subscribe to a remote account either.
        guest.x.send_presence(pto=p.bare, ptype="subscribe")
        await asyncio.sleep(QUIET)
        assert not [x for x in p.presences if x["type"] == "subscribe"], p.presences


@async_test(timeout=TEST_TIMEOUT)
async def test_vcard_and_disco_of_remote_users(salon, prosody, ejabberd):
    """A Salon user reads a Prosody user's and an ejabberd user's vCard (IQ to the bare JID,
    answered by their server) and asks a remote client what it supports (IQ to a full JID,
    answered by the client); and the remote side does the same with the Salon user."""
    async with Clients() as cs:
        s = await login(cs, salon)
        for peer in (prosody, ejabberd):
            r = await login(cs, peer)
            name = f"Remote {peer.kind} {uid()}"
            resp = await r.iq("set", None, f"<vCard xmlns='{NS_VCARD}'><FN>{name}</FN></vCard>")
            assert resp["type"] == "result", f"{peer.kind} refused the vCard: {resp}"
            resp = await s.iq("get", r.bare, f"<vCard xmlns='{NS_VCARD}'/>", S2S_WAIT)
            assert resp["type"] == "result", f"vCard of {r.bare}: {resp}"
            fn = xml_of(resp).find(f"{{{NS_VCARD}}}vCard/{{{NS_VCARD}}}FN")
            assert fn is not None and fn.text == name, f"vCard of {r.bare}: {resp}"

            resp = await s.iq("get", r.jid, f"<query xmlns='{NS_DISCO_INFO}'/>", S2S_WAIT)
            assert resp["type"] == "result", f"disco#info of {r.jid}: {resp}"
            features = {f.get("var") for f in xml_of(resp).iter(f"{{{NS_DISCO_INFO}}}feature")}
            assert NS_DISCO_INFO in features, f"disco#info of {r.jid}: {resp}"

            # And back: the Salon user's client and the Salon server, asked from the peer.
            for target in (s.jid, salon.domain):
                resp = await r.iq("get", target, f"<query xmlns='{NS_DISCO_INFO}'/>", S2S_WAIT)
                assert resp["type"] == "result", f"disco#info of {target} from {peer.kind}: {resp}"
                identities = list(xml_of(resp).iter(f"{{{NS_DISCO_INFO}}}identity"))
                assert identities, f"disco#info of {target} from {peer.kind} lost its payload: {resp}"


@async_test(timeout=TEST_TIMEOUT)
async def test_messages_from_remote_senders_wait_offline(salon, prosody, ejabberd):
    """A message from a Prosody user and one from an ejabberd user to a Salon account with no
    session are stored and delivered at its next login (RFC 6121 §8.5.2.2.1, XEP-0160)."""
    jid, pw = salon.new_user("off")
    texts = {}
    async with Clients() as cs:
        for peer in (prosody, ejabberd):
            r = await login(cs, peer)
            texts[peer.kind] = (r.bare, f"while you were away, from {peer.kind} {uid()}")
            r.send_message(jid, texts[peer.kind][1])
            # A ping to salon.test behind it on the same s2s stream: once answered, Salon has
            # handled the message, and the login below cannot race it.
            resp = await r.iq("get", salon.domain, "<ping xmlns='urn:xmpp:ping'/>", S2S_WAIT)
            assert resp["type"] == "result", f"ping to {salon.domain} from {peer.kind}: {resp}"
        s = await login(cs, salon, (jid, pw))
        for kind, (sender, text) in texts.items():
            m = await s.wait_message(message_with_body(text), S2S_WAIT,
                                     what=f"offline message from {kind}")
            assert bare(str(m["from"])) == sender, m
            assert xml_of(m).find(f"{{{NS_DELAY}}}delay") is not None, (
                f"an offline message should carry its delay (XEP-0203): {m}")


@async_test(timeout=TEST_TIMEOUT)
async def test_remote_users_invited_to_a_salon_room_and_reading_its_archive(salon, prosody,
                                                                            ejabberd):
    """The owner invites an ejabberd user through the room (XEP-0045 §7.8.2) and the invitation
    crosses; a Prosody occupant pages the room's archive (XEP-0313 to the room's JID)."""
    room = f"inv{uid()}@{salon.muc_domain}"
    async with Clients() as cs:
        owner = await login(cs, salon)
        await join_room(owner, room, "owner", instant=True)
        said = f"archived {uid()}"
        groupchat(owner, room, said)
        await owner.wait_message(groupchat_from(room, "owner", said), what="own echo")

        e = await login(cs, ejabberd)
        owner.x.send_raw(f"<message to='{room}'><x xmlns='{NS_MUC_USER}'>"
                         f"<invite to='{e.bare}'><reason>come</reason></invite></x></message>")
        inv = await e.wait_message(
            lambda m: bare(str(m["from"])) == bare(room)
            and xml_of(m).find(f"{{{NS_MUC_USER}}}x/{{{NS_MUC_USER}}}invite") is not None,
            S2S_WAIT, what="mediated invitation from the Salon room")
        invite = xml_of(inv).find(f"{{{NS_MUC_USER}}}x/{{{NS_MUC_USER}}}invite")
        assert bare(invite.get("from", "")) == owner.bare, f"invitation without the owner: {inv}"

        p = await login(cs, prosody)
        await join_room(p, room, "pros")
        qid = uid()
        resp = await p.iq("set", room, f"<query xmlns='urn:xmpp:mam:2' queryid='{qid}'>"
                          "<set xmlns='http://jabber.org/protocol/rsm'><max>10</max></set>"
                          "</query>", S2S_WAIT)
        assert resp["type"] == "result", f"room archive query from a Prosody user: {resp}"
        assert xml_of(resp).find("{urn:xmpp:mam:2}fin") is not None, (
            f"XEP-0313 §4.3: the result of a query ends with <fin/>: {resp}")
        results = [m for m in p.messages
                   if xml_of(m).find(f"{{urn:xmpp:mam:2}}result[@queryid='{qid}']") is not None]
        texts = [f.text for m in results for f in xml_of(m).iter(f"{C}body")]
        assert said in texts, f"archive results at the Prosody user: {texts}"


# ---------------------------------------------------------------------------------------------
# dialback: ejabberd with a certificate no one trusts
# ---------------------------------------------------------------------------------------------


def incoming_dialbacks(server: SalonServer) -> float:
    """salon_s2s_authentications_total{direction="incoming",method="dialback"} from /metrics."""
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (sample.name == "salon_s2s_authentications_total"
                    and sample.labels == {"direction": "incoming", "method": "dialback"}):
                return sample.value
    return 0.0


@pytest.fixture
def untrusted_ejabberd(world, ejabberd):
    """The module's ejabberd restarted with a self-signed certificate (then restored): ejabberd
    offers SASL EXTERNAL anyway and falls back to dialback (XEP-0220)."""
    base, ca = world
    trusted = ejabberd.cert
    ejabberd.stop()
    ejabberd.use_cert(self_signed_cert(base / "ca", "ejabberd-self-signed", ejabberd.domain,
                                       ejabberd.muc_domain))
    ejabberd.start()
    try:
        yield ejabberd
    finally:
        ejabberd.stop()
        ejabberd.use_cert(trusted)
        ejabberd.start()


@pytest.fixture
def strict_salon(world):
    """salon2.test: requires a valid certificate from every peer."""
    base, ca = world
    srv = salon_server(base, ca, "salon2.test", SALON2_ADDR,
                       {"default_policy": "require_valid_certificate"})
    srv.start()
    yield srv
    srv.stop()


@async_test(timeout=TEST_TIMEOUT)
async def test_ejabberd_with_untrusted_certificate_uses_dialback_where_allowed(
        salon, untrusted_ejabberd):
    """salon.test allows dialback for ejabberd.test: chat works both ways although ejabberd's
    certificate cannot be verified."""
    before = incoming_dialbacks(salon)
    async with Clients() as cs:
        e = await login(cs, untrusted_ejabberd)
        s = await login(cs, salon)
        await chat_reaches(e, s)
        await chat_reaches(s, e, to=e.jid)
    # ejabberd's own stream into Salon could only have been authenticated by dialback (Prosody,
    # the only other peer, always authenticates with its certificate).
    assert incoming_dialbacks(salon) > before, (
        "Salon's metrics count no incoming stream authenticated by dialback")


@async_test(timeout=TEST_TIMEOUT)
async def test_ejabberd_with_untrusted_certificate_refused_where_valid_one_required(
        strict_salon, untrusted_ejabberd, prosody):
    """salon2.test requires valid certificates: nothing from ejabberd.test gets in, and a Salon
    user's message to it is bounced with an error instead of being dropped. Prosody, whose
    certificate is valid, still gets through (so the refusal is the policy, not a broken link)."""
    async with Clients() as cs:
        p = await login(cs, prosody)
        s0 = await login(cs, strict_salon)
        await chat_reaches(p, s0)
        await chat_reaches(s0, p, to=p.jid)
        e = await login(cs, untrusted_ejabberd)
        s = await login(cs, strict_salon)
        text = f"through dialback? {uid()}"
        e.send_message(s.bare, text)
        mid = s.send_message(e.bare, f"to an untrusted peer {uid()}")
        m, condition = await error_reply(s, mid, timeout=30.0)
        assert condition in ("remote-server-not-found", "remote-server-timeout",
                             "not-authorized", "not-allowed", "policy-violation"), m
        await nothing_arrives(s, text)
        assert not [x for x in e.messages if body(x) and x["type"] != "error"], e.messages
