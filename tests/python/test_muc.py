"""Multi-user chat (XEP-0045) on rooms.localhost, with the XEPs a modern MUC service carries:
history with XEP-0203 delays, XEP-0359 stanza ids, XEP-0421 occupant ids, XEP-0313 archives
with XEP-0059 paging, XEP-0425 moderated retraction, XEP-0410 self-ping and XEP-0249 direct
invitations.

Every test uses rooms of its own (random names) on one module-scoped server. Clients are the
suite's slixmpp `Client` with the xep_0045 plugin registered; stanzas the plugin cannot express
(odd nicks, forged ids, MAM with RSM, moderation) are sent raw with `send_raw`.

Negative checks ("nothing was delivered") use a barrier instead of sleeping: the sender and then
each observer do an IQ round trip with the room. A room handles its stanzas in order and each
session's output is FIFO, so anything the room would have sent the observer arrives before the
observer's IQ result.

The helpers here are imported by test_muc_restart.py and test_muc_policy.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

from slixmpp import JID
from slixmpp.exceptions import PresenceError

from conftest import server_fixture
from helpers import NS_DELAY, TIMEOUT, Client, Clients, async_test, stanza_error_condition, tostr, uid

# Guests here send messages back to back; slow mode has its own tests.
server = server_fixture("muc", require_encryption=True, muc={"guest_slow_mode_seconds": 0})

NS_MUC = "http://jabber.org/protocol/muc"
NS_MUC_USER = NS_MUC + "#user"
NS_MUC_ADMIN = NS_MUC + "#admin"
NS_MUC_OWNER = NS_MUC + "#owner"
NS_ROOMCONFIG = NS_MUC + "#roomconfig"
NS_ROOMINFO = NS_MUC + "#roominfo"
NS_DATA = "jabber:x:data"
NS_SID = "urn:xmpp:sid:0"
NS_OID = "urn:xmpp:occupant-id:0"
NS_MAM = "urn:xmpp:mam:2"
NS_RSM = "http://jabber.org/protocol/rsm"
NS_FORWARD = "urn:xmpp:forward:0"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
NS_RETRACT = "urn:xmpp:message-retract:1"
NS_MODERATE = "urn:xmpp:message-moderate:1"
NS_CONFERENCE = "jabber:x:conference"
NS_REGISTER = "jabber:iq:register"
NS_PING = "urn:xmpp:ping"
C = "{jabber:client}"

PLUGINS = ("xep_0030", "xep_0004", "xep_0045")


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def _with_plugins(c: Client) -> Client:
    for p in PLUGINS:
        c.x.register_plugin(p)
    return c


async def muc_login(cs: Clients, server, account=None, prefix: str = "m") -> Client:
    """Logs in an account (a fresh one by default) with the MUC plugin registered."""
    jid, pw = account or server.new_user(prefix)
    c = _with_plugins(Client(server, f"{jid}/r{uid()}", pw, mech="SCRAM-SHA-256"))
    cs.add(c)
    return await c.login()


async def anon_login(cs: Clients, server) -> Client:
    c = _with_plugins(Client(server, server.anon_domain, "", mech="ANONYMOUS"))
    cs.add(c)
    return await c.login()


def new_room(server, prefix: str = "room") -> str:
    return f"{prefix}{uid()}@{server.muc_domain}"


def xml_of(st) -> ET.Element:
    return st.xml if hasattr(st, "xml") else st


def attr(st, name: str) -> str:
    return xml_of(st).get(name) or ""


def cond(st) -> str | None:
    return stanza_error_condition(xml_of(st))


def muc_x(st) -> ET.Element | None:
    return xml_of(st).find(f"{{{NS_MUC_USER}}}x")


def status_codes(st) -> set[str]:
    x = muc_x(st)
    if x is None:
        return set()
    return {s.get("code") for s in x.findall(f"{{{NS_MUC_USER}}}status")}


def muc_item(st) -> ET.Element | None:
    x = muc_x(st)
    return None if x is None else x.find(f"{{{NS_MUC_USER}}}item")


def body(st) -> str | None:
    b = xml_of(st).find(f"{C}body")
    return None if b is None else (b.text or "")


def stanza_ids(st) -> list[ET.Element]:
    return xml_of(st).findall(f"{{{NS_SID}}}stanza-id")


def room_stanza_id(st, room: str) -> str:
    ids = [s for s in stanza_ids(st) if s.get("by") == room]
    assert len(ids) == 1, f"expected exactly one stanza-id by={room}: {st}"
    assert ids[0].get("id"), f"empty stanza-id: {st}"
    return ids[0].get("id")


def occupant_id(st) -> str:
    oids = xml_of(st).findall(f"{{{NS_OID}}}occupant-id")
    assert len(oids) == 1, f"expected exactly one occupant-id: {st}"
    assert oids[0].get("id"), f"empty occupant-id: {st}"
    return oids[0].get("id")


def from_room(room: str):
    return lambda st: attr(st, "from").split("/", 1)[0].lower() == room.lower()


def is_groupchat(room: str, text: str | None = None):
    def pred(m):
        return (attr(m, "type") == "groupchat" and attr(m, "from").startswith(room + "/")
                and (text is None or body(m) == text))
    return pred


def is_subject_message(room: str):
    def pred(m):
        x = xml_of(m)
        return (attr(m, "type") == "groupchat" and from_room(room)(m)
                and x.find(f"{C}subject") is not None and x.find(f"{C}body") is None)
    return pred


@dataclass
class Joined:
    presence: object  # own presence (status 110)
    subject: object  # the subject message that ends the join sequence
    during: list = field(default_factory=list)  # messages from the room before the subject

    @property
    def codes(self) -> set[str]:
        return status_codes(self.presence)

    @property
    def history(self) -> list:
        return [m for m in self.during
                if xml_of(m).find(f"{{{NS_DELAY}}}delay") is not None and body(m) is not None]


async def join(c: Client, room: str, nick: str, **kw) -> Joined:
    """Joins with the xep_0045 plugin (password, maxstanzas, maxchars, seconds, since)."""
    start = len(c.messages)
    try:
        pres, subject, _occ, _hist = await c.x.plugin["xep_0045"].join_muc_wait(
            JID(room), nick, timeout=TIMEOUT, **kw)
    except PresenceError as e:
        raise AssertionError(f"{c.jid} could not join {room}/{nick}: {e.presence}") from None
    except asyncio.TimeoutError:
        raise AssertionError(
            f"{c.jid}: join {room}/{nick} got no self-presence and subject within {TIMEOUT}s; "
            f"presences: {[str(p) for p in c.presences[-5:]]}") from None
    assert "110" in status_codes(pres), f"self-presence without status 110: {pres}"
    await c.wait_message(lambda m: m is subject, what="subject recorded")
    end = next(i for i, m in enumerate(c.messages) if m is subject)
    during = [m for m in c.messages[start:end] if from_room(room)(m)]
    return Joined(pres, subject, during)


def presence_xml(to: str, pid: str, password: str | None = None, ptype: str | None = None,
                 extra: str = "", muc: bool = True) -> str:
    pw = f"<password>{escape(password)}</password>" if password is not None else ""
    x = f"<x xmlns='{NS_MUC}'>{pw}</x>" if muc else ""
    t = f" type='{ptype}'" if ptype else ""
    return f"<presence to={quoteattr(to)} id='{pid}'{t}>{x}{extra}</presence>"


async def join_refused(c: Client, room: str, nick: str, password: str | None = None) -> str:
    """Sends a raw join; expects a presence error (never a self-presence); returns the
    condition."""
    pid = "join-" + uid()
    old = {id(p) for p in c.presences}
    c.x.send_raw(presence_xml(f"{room}/{nick}", pid, password))

    def answer(p):
        if id(p) in old:
            return False
        if attr(p, "id") == pid and attr(p, "type") == "error":
            return True
        return from_room(room)(p) and "110" in status_codes(p) and attr(p, "type") != "unavailable"

    p = await c.wait_presence(answer, what=f"answer to join {room}/{nick!r}")
    assert attr(p, "type") == "error", f"join to {room}/{nick!r} was accepted: {p}"
    assert from_room(room)(p), f"error presence not from the room: {p}"
    return cond(p)


async def leave(c: Client, room: str, nick: str):
    pid = "leave-" + uid()
    old = {id(p) for p in c.presences}
    c.x.send_raw(presence_xml(f"{room}/{nick}", pid, ptype="unavailable", muc=False))
    await c.wait_presence(
        lambda p: id(p) not in old and attr(p, "from") == f"{room}/{nick}" and attr(p, "type") == "unavailable"
        and "110" in status_codes(p), what="own unavailable presence")


def form_xml(fields: dict, ftype: str = "submit", form_type: str = NS_ROOMCONFIG) -> str:
    out = [f"<field var='FORM_TYPE'><value>{form_type}</value></field>"]
    for var, value in fields.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        vs = "".join(
            f"<value>{escape(('1' if v else '0') if isinstance(v, bool) else str(v))}</value>"
            for v in values)
        out.append(f"<field var={quoteattr(var)}>{vs}</field>")
    return f"<x xmlns='{NS_DATA}' type='{ftype}'>{''.join(out)}</x>"


async def owner_set(c: Client, room: str, fields: dict | None):
    """Submits the configuration form (an empty instant-room form when `fields` is None)."""
    x = f"<x xmlns='{NS_DATA}' type='submit'/>" if fields is None else form_xml(fields)
    return await c.iq("set", room, f"<query xmlns='{NS_MUC_OWNER}'>{x}</query>")


async def configure(c: Client, room: str, fields: dict | None):
    resp = await owner_set(c, room, fields)
    assert resp["type"] == "result", f"configuration {fields} refused: {resp}"


async def owner_form(c: Client, room: str) -> dict[str, list[str]]:
    resp = await c.iq("get", room, f"<query xmlns='{NS_MUC_OWNER}'/>")
    assert resp["type"] == "result", f"config form refused: {resp}"
    x = resp.xml.find(f"{{{NS_MUC_OWNER}}}query/{{{NS_DATA}}}x")
    assert x is not None and x.get("type") == "form", f"no data form in {resp}"
    return {f.get("var"): [v.text or "" for v in f.findall(f"{{{NS_DATA}}}value")]
            for f in x.findall(f"{{{NS_DATA}}}field")}


async def create_room(c: Client, room: str, nick: str = "owner",
                      config: dict | None = None) -> Joined:
    """Creates a room (201), then an instant room or one configured with `config`."""
    j = await join(c, room, nick)
    assert "201" in j.codes, f"new room: self-presence lacks status 201: {j.presence}"
    await configure(c, room, config)
    return j


def send_groupchat(c: Client, room: str, text: str, extra: str = "", mid: str | None = None) -> str:
    mid = mid or "gc-" + uid()
    c.x.send_raw(f"<message to={quoteattr(room)} type='groupchat' id='{mid}'>"
                 f"<body>{escape(text)}</body>{extra}</message>")
    return mid


async def say(c: Client, room: str, text: str, extra: str = "") -> object:
    """Sends a groupchat message and waits for its reflection; returns the reflected message."""
    mid = send_groupchat(c, room, text, extra)
    return await c.wait_message(
        lambda m: (attr(m, "id") == mid and attr(m, "type") == "groupchat") or
        (attr(m, "id") == mid and attr(m, "type") == "error"),
        what=f"reflection of {text!r}")


async def say_ok(c: Client, room: str, text: str, extra: str = ""):
    m = await say(c, room, text, extra)
    assert attr(m, "type") == "groupchat", f"groupchat message {text!r} refused: {m}"
    return m


async def message_error(c: Client, mid: str) -> str:
    m = await c.wait_message(lambda m: attr(m, "id") == mid and attr(m, "type") == "error",
                             what=f"error for message {mid}")
    return cond(m)


async def sync(c: Client, room: str):
    resp = await c.iq("get", room, f"<query xmlns='{NS_DISCO_INFO}'/>")
    return resp


async def barrier(room: str, *clients: Client):
    for c in clients:
        await sync(c, room)


async def admin(c: Client, room: str, items: str):
    return await c.iq("set", room, f"<query xmlns='{NS_MUC_ADMIN}'>{items}</query>")


def item(reason: str | None = None, **attrs) -> str:
    a = "".join(f" {k}={quoteattr(v)}" for k, v in attrs.items())
    r = f"<reason>{escape(reason)}</reason>" if reason else ""
    return f"<item{a}>{r}</item>"


async def admin_list(c: Client, room: str, affiliation: str):
    return await c.iq("get", room, f"<query xmlns='{NS_MUC_ADMIN}'>{item(affiliation=affiliation)}</query>")


def list_jids(resp) -> set[str]:
    q = resp.xml.find(f"{{{NS_MUC_ADMIN}}}query")
    assert q is not None, f"no admin query in {resp}"
    return {i.get("jid") for i in q.findall(f"{{{NS_MUC_ADMIN}}}item")}


async def disco_info(c: Client, room: str):
    resp = await c.iq("get", room, f"<query xmlns='{NS_DISCO_INFO}'/>")
    assert resp["type"] == "result", f"disco#info on {room} failed: {resp}"
    q = resp.xml.find(f"{{{NS_DISCO_INFO}}}query")
    features = {f.get("var") for f in q.findall(f"{{{NS_DISCO_INFO}}}feature")}
    info = {}
    for x in q.findall(f"{{{NS_DATA}}}x"):
        for f in x.findall(f"{{{NS_DATA}}}field"):
            info[f.get("var")] = [v.text or "" for v in f.findall(f"{{{NS_DATA}}}value")]
    return features, info, q


def unavailable_of(room: str, nick: str):
    return lambda p: attr(p, "from") == f"{room}/{nick}" and attr(p, "type") == "unavailable"


def available_of(room: str, nick: str):
    return lambda p: attr(p, "from") == f"{room}/{nick}" and attr(p, "type") in ("", "available")


# ---------------------------------------------------------------------------------------------
# creation and configuration (§10.1, §10.2)
# ---------------------------------------------------------------------------------------------


@async_test
async def test_create_room_locked_until_configured(server):
    async with Clients() as cs:
        owner = await muc_login(cs, server)
        other = await muc_login(cs, server)
        room = new_room(server)
        j = await join(owner, room, "boss")
        assert "201" in j.codes, f"§10.1.1: creation must carry status 201: {j.presence}"
        it = muc_item(j.presence)
        assert it is not None and it.get("affiliation") == "owner" and it.get("role") == "moderator", (
            f"creator must be owner/moderator: {j.presence}")
        # §10.1.1: the room is locked until configured.
        assert await join_refused(other, room, "early") == "item-not-found"
        form = await owner_form(owner, room)
        assert form.get("FORM_TYPE") == [NS_ROOMCONFIG], f"not a roomconfig form: {form}"
        await configure(owner, room, {"muc#roomconfig_roomname": "Unlocked"})
        j2 = await join(other, room, "late")
        assert "201" not in j2.codes, f"201 sent to a non-creator: {j2.presence}"
        it = muc_item(j2.presence)
        assert it.get("affiliation") == "none" and it.get("role") == "participant", str(j2.presence)
        await owner.wait_presence(available_of(room, "late"), what="owner sees the newcomer")


@async_test
async def test_instant_room(server):
    async with Clients() as cs:
        owner = await muc_login(cs, server)
        other = await muc_login(cs, server)
        room = new_room(server)
        await create_room(owner, room, "boss")  # empty submit = instant room (§10.1.2)
        j = await join(other, room, "guest")
        assert j.during == [] or all(body(m) is None for m in j.during), j.during
        features, _, _ = await disco_info(other, room)
        for f in (NS_MUC, "muc_temporary", "muc_open", "muc_unmoderated", "muc_unsecured"):
            assert f in features, f"instant room defaults: {f} missing from {sorted(features)}"


@async_test
async def test_reserved_room_configured_with_form(server):
    async with Clients() as cs:
        owner = await muc_login(cs, server)
        room = new_room(server)
        j = await join(owner, room, "boss")
        assert "201" in j.codes
        form = await owner_form(owner, room)
        wanted = {
            "muc#roomconfig_roomname": "Reserved room",
            "muc#roomconfig_roomdesc": "Configured by form",
            "muc#roomconfig_persistentroom": True,
            "muc#roomconfig_publicroom": False,
            "muc#roomconfig_membersonly": True,
            "muc#roomconfig_moderatedroom": True,
            "muc#roomconfig_passwordprotectedroom": True,
            "muc#roomconfig_roomsecret": "s3cret",
            "muc#roomconfig_whois": "anyone",
            "muc#roomconfig_maxusers": "30",
            "muc#roomconfig_historylength": "7",
            "muc#roomconfig_changesubject": True,
            "muc#roomconfig_allowpm": "none",
        }
        missing = [v for v in wanted if v not in form]
        assert not missing, f"config form lacks {missing}: {sorted(form)}"
        await configure(owner, room, wanted)
        after = await owner_form(owner, room)
        for var, value in wanted.items():
            expect = ("1" if value else "0") if isinstance(value, bool) else value
            assert after.get(var) == [expect], f"{var}: submitted {expect!r}, form now shows {after.get(var)}"
        features, info, q = await disco_info(owner, room)
        for f in ("muc_persistent", "muc_hidden", "muc_membersonly", "muc_moderated",
                  "muc_passwordprotected", "muc_nonanonymous"):
            assert f in features, f"{f} missing after configuration: {sorted(features)}"
        for f in ("muc_temporary", "muc_public", "muc_open", "muc_unmoderated", "muc_unsecured",
                  "muc_semianonymous"):
            assert f not in features, f"{f} still advertised after configuration: {sorted(features)}"
        assert info.get("muc#roominfo_description") == ["Configured by form"], info
        ident = q.find(f"{{{NS_DISCO_INFO}}}identity")
        assert ident is not None and ident.get("category") == "conference", tostr(q)
        assert ident.get("name") == "Reserved room", tostr(q)
        # Clean up: the room is persistent and would stay in this module's server.
        resp = await owner.iq("set", room, f"<query xmlns='{NS_MUC_OWNER}'><destroy/></query>")
        assert resp["type"] == "result", str(resp)


@async_test
async def test_config_get_and_set_by_non_owner_refused(server):
    async with Clients() as cs:
        owner = await muc_login(cs, server)
        other = await muc_login(cs, server)
        room = new_room(server)
        await create_room(owner, room, "boss")
        await join(other, room, "pleb")
        resp = await other.iq("get", room, f"<query xmlns='{NS_MUC_OWNER}'/>")
        assert resp["type"] == "error" and cond(resp) == "forbidden", f"§10.2: {resp}"
        resp = await owner_set(other, room, {"muc#roomconfig_roomname": "Hijacked"})
        assert resp["type"] == "error" and cond(resp) == "forbidden", f"§10.2: {resp}"
        form = await owner_form(owner, room)
        assert form.get("muc#roomconfig_roomname") != ["Hijacked"], form


# ---------------------------------------------------------------------------------------------
# history (§7.2.15)
# ---------------------------------------------------------------------------------------------


async def room_with_messages(cs, server, texts, config=None):
    owner = await muc_login(cs, server)
    room = new_room(server)
    await create_room(owner, room, "speaker", config)
    reflected = [await say_ok(owner, room, t) for t in texts]
    return owner, room, reflected


def check_history(j: Joined, room: str, expected: list[str], sender_nick: str = "speaker"):
    got = [body(m) for m in j.history]
    assert got == expected, f"history: expected {expected}, got {got}"
    for m in j.history:
        assert attr(m, "from") == f"{room}/{sender_nick}", f"history from: {m}"
        assert attr(m, "type") == "groupchat", str(m)
        d = xml_of(m).find(f"{{{NS_DELAY}}}delay")
        assert d.get("from") == room, f"XEP-0203 delay must name the room as 'from': {m}"
        stamp = dt.datetime.fromisoformat(d.get("stamp").replace("Z", "+00:00"))
        now = dt.datetime.now(dt.timezone.utc)
        assert abs((now - stamp).total_seconds()) < 120, f"implausible delay stamp: {m}"


@async_test
async def test_history_maxstanzas_and_subject_order(server):
    async with Clients() as cs:
        texts = [f"history {i}" for i in range(5)]
        owner, room, _ = await room_with_messages(cs, server, texts)
        subject_mid = "subj-" + uid()
        owner.x.send_raw(f"<message to='{room}' type='groupchat' id='{subject_mid}'>"
                         f"<subject>Today's topic</subject></message>")
        await owner.wait_message(lambda m: attr(m, "id") == subject_mid, what="subject reflection")
        reader = await muc_login(cs, server)
        j = await join(reader, room, "reader", maxstanzas=2)
        check_history(j, room, texts[-2:])
        # §7.2.15/§7.2.16: the subject comes after the history, and it is the current one.
        subj = xml_of(j.subject).find(f"{C}subject")
        assert subj.text == "Today's topic", f"subject on join: {j.subject}"
        last_history = max(reader.messages.index(m) for m in j.history)
        assert reader.messages.index(j.subject) > last_history, "subject came before the history"
        # The subject does not count as history and is sent once.
        subjects = [m for m in reader.messages if is_subject_message(room)(m)]
        assert len(subjects) == 1, [str(m) for m in subjects]


@async_test
async def test_history_maxchars_zero_and_maxstanzas_zero(server):
    async with Clients() as cs:
        owner, room, _ = await room_with_messages(cs, server, ["a", "b", "c"])
        r1 = await muc_login(cs, server)
        j = await join(r1, room, "nochars", maxchars=0)
        check_history(j, room, [])
        r2 = await muc_login(cs, server)
        j = await join(r2, room, "nostanzas", maxstanzas=0)
        check_history(j, room, [])
        r3 = await muc_login(cs, server)
        j = await join(r3, room, "all")
        check_history(j, room, ["a", "b", "c"])


@async_test
async def test_history_seconds_and_since(server):
    async with Clients() as cs:
        owner, room, _ = await room_with_messages(cs, server, ["old 1", "old 2"])
        await asyncio.sleep(3.2)
        since = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)
        await say_ok(owner, room, "new 1")
        await say_ok(owner, room, "new 2")
        r1 = await muc_login(cs, server)
        j = await join(r1, room, "bysecs", seconds=2)
        check_history(j, room, ["new 1", "new 2"])
        r2 = await muc_login(cs, server)
        j = await join(r2, room, "bysince", since=since)
        check_history(j, room, ["new 1", "new 2"])


@async_test
async def test_history_length_setting(server):
    async with Clients() as cs:
        texts = [f"m{i}" for i in range(6)]
        owner, room, _ = await room_with_messages(
            cs, server, texts, config={"muc#roomconfig_historylength": "3"})
        r1 = await muc_login(cs, server)
        j = await join(r1, room, "default")
        check_history(j, room, texts[-3:])
        r2 = await muc_login(cs, server)
        j = await join(r2, room, "greedy", maxstanzas=10)
        check_history(j, room, texts[-3:])


# ---------------------------------------------------------------------------------------------
# messages, stanza-id, occupant-id, PMs (§7.4, §7.5; XEP-0359, XEP-0421)
# ---------------------------------------------------------------------------------------------


@async_test
async def test_groupchat_fanout_stanza_id_and_occupant_id(server):
    async with Clients() as cs:
        a = await muc_login(cs, server)
        b = await muc_login(cs, server)
        c = await muc_login(cs, server)
        room = new_room(server)
        await create_room(a, room, "alice")
        await join(b, room, "bob")
        await join(c, room, "carol")
        mine = await say_ok(a, room, "hello all")
        seen = [mine]
        for other in (b, c):
            seen.append(await other.wait_message(is_groupchat(room, "hello all"),
                                                 what="groupchat from alice"))
        ids = set()
        oids = set()
        for m in seen:
            assert attr(m, "from") == f"{room}/alice", f"from must be room/nick: {m}"
            ids.add(room_stanza_id(m, room))
            oids.add(occupant_id(m))
        assert len(ids) == 1, f"occupants saw different stanza-ids for one message: {ids}"
        assert len(oids) == 1, f"occupants saw different occupant-ids for one sender: {oids}"
        m2 = await say_ok(b, room, "second")
        assert room_stanza_id(m2, room) not in ids, "stanza-id reused for a different message"
        assert occupant_id(m2) not in oids, "two accounts share an occupant-id"
        # The occupant-id is also on the sender's presence (XEP-0421 §4).
        pres = await c.wait_presence(available_of(room, "alice"), what="alice's presence")
        assert occupant_id(pres) in oids, f"presence occupant-id differs from message's: {pres}"


@async_test
async def test_forged_stanza_id_and_occupant_id_are_replaced(server):
    async with Clients() as cs:
        a = await muc_login(cs, server)
        b = await muc_login(cs, server)
        room = new_room(server)
        await create_room(a, room, "alice")
        await join(b, room, "mallory")
        honest = await say_ok(b, room, "honest")
        real_oid = occupant_id(honest)
        forged = (f"<stanza-id xmlns='{NS_SID}' id='forged-sid' by='{room}'/>"
                  f"<occupant-id xmlns='{NS_OID}' id='forged-oid'/>")
        await say_ok(b, room, "forged", forged)
        m = await a.wait_message(is_groupchat(room, "forged"), what="forged message at alice")
        sid = room_stanza_id(m, room)  # exactly one by=room
        assert sid != "forged-sid", f"XEP-0359 §3.3: client's stanza-id by=room kept: {m}"
        oid = occupant_id(m)  # exactly one
        assert oid == real_oid and oid != "forged-oid", (
            f"XEP-0421: the room must replace a client's occupant-id: {m}")


@async_test
async def test_unarchived_chat_state_has_no_stanza_id(server):
    # XEP-0359/XEP-0313: a stanza-id names a stored message; a chat state with <no-store/> is
    # not stored, so it must not carry one, while a message with a body still does.
    async with Clients() as cs:
        a = await muc_login(cs, server)
        b = await muc_login(cs, server)
        room = new_room(server)
        await create_room(a, room, "alice")
        await join(b, room, "bob")
        mid = "cs-" + uid()
        a.x.send_raw(f"<message to={quoteattr(room)} type='groupchat' id='{mid}'>"
                     "<composing xmlns='http://jabber.org/protocol/chatstates'/>"
                     "<no-store xmlns='urn:xmpp:hints'/></message>")
        m = await b.wait_message(lambda m: attr(m, "id") == mid, what="alice's chat state")
        assert attr(m, "type") == "groupchat", f"chat state refused: {m}"
        assert stanza_ids(m) == [], f"an unarchived chat state carries a stanza-id: {m}"
        said = await say_ok(a, room, "stored")
        room_stanza_id(said, room)  # exactly one by=room


@async_test
async def test_private_messages_between_occupants(server):
    async with Clients() as cs:
        a = await muc_login(cs, server)
        b = await muc_login(cs, server)
        c = await muc_login(cs, server)
        room = new_room(server)
        await create_room(a, room, "alice")
        await join(b, room, "bob")
        await join(c, room, "carol")
        bobs_oid = occupant_id(await say_ok(b, room, "hello all"))
        mid = "pm-" + uid()
        # With a forged occupant-id and room stanza-id, which the room must replace/drop.
        b.x.send_raw(f"<message to='{room}/carol' type='chat' id='{mid}'><body>psst</body>"
                     f"<x xmlns='{NS_MUC_USER}'/><occupant-id xmlns='{NS_OID}' id='forged-oid'/>"
                     f"<stanza-id xmlns='{NS_SID}' id='forged-sid' by='{room}'/></message>")
        m = await c.wait_message(lambda m: attr(m, "id") == mid, what="PM at carol")
        assert attr(m, "from") == f"{room}/bob", f"§7.5: PM from must be the occupant JID: {m}"
        assert attr(m, "type") == "chat" and body(m) == "psst", str(m)
        assert attr(m, "to") == c.jid, str(m)
        assert occupant_id(m) == bobs_oid, f"XEP-0421: the PM carries bob's occupant-id: {m}"
        assert "forged-sid" not in str(m), f"XEP-0359 §3.3: forged stanza-id kept: {m}"
        await barrier(room, b, a)
        assert not [x for x in a.messages if attr(x, "id") == mid], "PM leaked to a third occupant"
        # §7.5: groupchat-type PM → bad-request; PM to a missing nick → item-not-found.
        mid2 = "pm-" + uid()
        b.x.send_raw(f"<message to='{room}/carol' type='groupchat' id='{mid2}'><body>x</body></message>")
        assert await message_error(b, mid2) == "bad-request"
        mid3 = "pm-" + uid()
        b.x.send_raw(f"<message to='{room}/nobody' type='chat' id='{mid3}'><body>x</body></message>")
        assert await message_error(b, mid3) == "item-not-found"


@async_test
async def test_private_messages_refused_when_allow_pm_none(server):
    async with Clients() as cs:
        a = await muc_login(cs, server)
        b = await muc_login(cs, server)
        c = await muc_login(cs, server)
        room = new_room(server)
        await create_room(a, room, "alice", {"muc#roomconfig_allowpm": "none"})
        await join(b, room, "bob")
        await join(c, room, "carol")
        mid = "pm-" + uid()
        b.x.send_raw(f"<message to='{room}/carol' type='chat' id='{mid}'><body>psst</body></message>")
        condition = await message_error(b, mid)
        assert condition in ("not-allowed", "forbidden", "not-acceptable"), condition
        await barrier(room, b, c)
        assert not [x for x in c.messages if attr(x, "id") == mid and attr(x, "type") != "error"], (
            "PM delivered although allow_pm=none")
        # Queries through the room follow the same rule (self-ping is still answered).
        resp = await b.iq("get", f"{room}/carol", f"<ping xmlns='{NS_PING}'/>")
        assert resp["type"] == "error" and cond(resp) == "not-allowed", resp
        resp = await b.iq("get", f"{room}/bob", f"<ping xmlns='{NS_PING}'/>")
        assert resp["type"] == "result", resp


@async_test
async def test_message_to_room_not_joined_not_acceptable(server):
    async with Clients() as cs:
        a = await muc_login(cs, server)
        outsider = await muc_login(cs, server)
        room = new_room(server)
        await create_room(a, room, "alice")
        mid = send_groupchat(outsider, room, "let me in")
        assert await message_error(outsider, mid) == "not-acceptable", "§7.4 non-occupant"
        pm = "pm-" + uid()
        outsider.x.send_raw(f"<message to='{room}/alice' type='chat' id='{pm}'><body>hi</body></message>")
        assert await message_error(outsider, pm) == "not-acceptable", "§7.5 non-occupant PM"
        await barrier(room, outsider, a)
        leaked = [m for m in a.messages if attr(m, "id") in (mid, pm)]
        assert not leaked, f"delivered from a non-occupant: {[str(m) for m in leaked]}"
        # A message to a room that does not exist.
        ghost = new_room(server, "ghost")
        mid = send_groupchat(outsider, ghost, "anyone?")
        assert await message_error(outsider, mid) in ("item-not-found", "not-acceptable")


# ---------------------------------------------------------------------------------------------
# nicks (§7.2.9, §7.6)
# ---------------------------------------------------------------------------------------------


@async_test
async def test_nick_change(server):
    async with Clients() as cs:
        a = await muc_login(cs, server)
        b = await muc_login(cs, server)
        room = new_room(server)
        await create_room(a, room, "alice")
        await join(b, room, "bob")
        pid = "nick-" + uid()
        b.x.send_raw(presence_xml(f"{room}/robert", pid, muc=False))
        for who in (a, b):
            un = await who.wait_presence(unavailable_of(room, "bob"), what="unavailable with 303")
            assert "303" in status_codes(un), f"§7.6: 303 missing: {un}"
            it = muc_item(un)
            assert it is not None and it.get("nick") == "robert", f"§7.6: new nick missing: {un}"
            av = await who.wait_presence(available_of(room, "robert"), what="available as robert")
            assert who.presences.index(av) > who.presences.index(un), "available before unavailable"
        own = await b.wait_presence(lambda p: available_of(room, "robert")(p) and "110" in status_codes(p),
                                    what="own presence with 110 under the new nick")
        assert own is not None
        await say_ok(b, room, "as robert")
        m = await a.wait_message(is_groupchat(room, "as robert"))
        assert attr(m, "from") == f"{room}/robert", str(m)


@async_test
async def test_nick_conflicts_and_look_alikes(server):
    async with Clients() as cs:
        a = await muc_login(cs, server)
        b = await muc_login(cs, server)
        room = new_room(server)
        await create_room(a, room, "Alice")
        for nick in ("Alice", "alice", "ALICE", "\u0410lice"):  # last: Cyrillic А
            assert await join_refused(b, room, nick) == "conflict", f"§7.2.9 conflict for {nick!r}"
        await join(b, room, "bob")
        # Changing to a look-alike of an occupant's nick is refused too (§7.6).
        pid = "nick-" + uid()
        b.x.send_raw(presence_xml(f"{room}/\u0430lice", pid, muc=False))
        p = await b.wait_presence(lambda p: attr(p, "id") == pid and attr(p, "type") == "error",
                                  what="nick change conflict")
        assert cond(p) == "conflict", str(p)
        await barrier(room, b, a)
        assert not [p for p in a.presences if "303" in status_codes(p)], "nick changed despite conflict"


@async_test
async def test_bad_nicks_refused_without_changing_the_room(server):
    async with Clients() as cs:
        a = await muc_login(cs, server)
        b = await muc_login(cs, server)
        room = new_room(server)
        await create_room(a, room, "alice")
        _, before, _ = await disco_info(a, room)
        presences_before = len(a.presences)
        # Empty nick: room@service/ is not even a JID; no nick → jid-malformed (§7.2.1).
        for nick, allowed in (
            ("", {"jid-malformed"}),
            ("\u200b", {"jid-malformed"}),
            ("\u200b\u200d ", {"jid-malformed"}),
            ("x" * 1024, {"jid-malformed", "not-acceptable"}),
            ("\u00e9" * 600, {"jid-malformed", "not-acceptable"}),  # 1200 bytes
        ):
            got = await join_refused(b, room, nick)
            assert got in allowed, f"nick {nick[:20]!r}… ({len(nick.encode())} bytes): {got}, want {allowed}"
        # Bare room JID without nick.
        pid = "join-" + uid()
        b.x.send_raw(presence_xml(room, pid))
        p = await b.wait_presence(lambda p: attr(p, "id") == pid, what="no-nick join answer")
        assert attr(p, "type") == "error" and cond(p) == "jid-malformed", f"§7.2.1: {p}"
        await barrier(room, b, a)
        new = [p for p in a.presences[presences_before:] if from_room(room)(p)]
        assert not new, f"the room announced something for refused nicks: {[str(p) for p in new]}"
        _, after, _ = await disco_info(a, room)
        assert after.get("muc#roominfo_occupants") == before.get("muc#roominfo_occupants") == ["1"], (
            before, after)
        # And a nick change to an invisible nick is refused as well.
        await join(b, room, "bob")
        pid = "nick-" + uid()
        b.x.send_raw(presence_xml(f"{room}/\u200b", pid, muc=False))
        p = await b.wait_presence(lambda p: attr(p, "id") == pid, what="invisible nick change answer")
        assert attr(p, "type") == "error" and cond(p) in ("jid-malformed", "not-acceptable"), str(p)


# ---------------------------------------------------------------------------------------------
# subject (§8.1)
# ---------------------------------------------------------------------------------------------


@async_test
async def test_subject_change_by_moderator_and_refused_for_participant(server):
    async with Clients() as cs:
        a = await muc_login(cs, server)
        b = await muc_login(cs, server)
        room = new_room(server)
        await create_room(a, room, "mod", {"muc#roomconfig_changesubject": False})
        await join(b, room, "part")
        mid = "subj-" + uid()
        a.x.send_raw(f"<message to='{room}' type='groupchat' id='{mid}'><subject>New topic</subject></message>")
        m = await b.wait_message(lambda m: attr(m, "id") == mid, what="subject at participant")
        assert attr(m, "from") == f"{room}/mod", str(m)
        assert xml_of(m).find(f"{C}subject").text == "New topic", str(m)
        mid = "subj-" + uid()
        b.x.send_raw(f"<message to='{room}' type='groupchat' id='{mid}'><subject>Mine now</subject></message>")
        assert await message_error(b, mid) == "forbidden", "§8.1 participant subject change"
        await barrier(room, b, a)
        assert not [x for x in a.messages if attr(x, "id") == mid], "refused subject was broadcast"
        _, info, _ = await disco_info(b, room)
        assert info.get("muc#roominfo_subject") == ["New topic"], info


# ---------------------------------------------------------------------------------------------
# kick, ban, lists (§8.2, §9.1, §9.2)
# ---------------------------------------------------------------------------------------------


@async_test
async def test_kick_and_ban_with_reason(server):
    async with Clients() as cs:
        owner = await muc_login(cs, server)
        k = await muc_login(cs, server)
        bn = await muc_login(cs, server)
        room = new_room(server)
        await create_room(owner, room, "boss")
        await join(k, room, "kicked")
        await join(bn, room, "banned")
        resp = await admin(owner, room, item(nick="kicked", role="none", reason="be nice"))
        assert resp["type"] == "result", str(resp)
        for who in (k, owner, bn):
            p = await who.wait_presence(unavailable_of(room, "kicked"), what="kick presence")
            assert "307" in status_codes(p), f"§8.2 kick needs 307: {p}"
            it = muc_item(p)
            assert it.get("role") == "none", str(p)
            reason = it.find(f"{{{NS_MUC_USER}}}reason")
            assert reason is not None and reason.text == "be nice", f"kick reason missing: {p}"
        own = await k.wait_presence(unavailable_of(room, "kicked"))
        assert "110" in status_codes(own), f"kicked user's own presence lacks 110: {own}"
        # Kicked (not banned) users may come back.
        await join(k, room, "kicked")
        ban_jid = bn.bare
        resp = await admin(owner, room, item(jid=ban_jid, affiliation="outcast", reason="spam"))
        assert resp["type"] == "result", str(resp)
        for who in (bn, owner, k):
            p = await who.wait_presence(unavailable_of(room, "banned"), what="ban presence")
            assert "301" in status_codes(p), f"§9.1 ban needs 301: {p}"
            it = muc_item(p)
            assert it.get("affiliation") == "outcast", str(p)
            reason = it.find(f"{{{NS_MUC_USER}}}reason")
            assert reason is not None and reason.text == "spam", f"ban reason missing: {p}"
        assert await join_refused(bn, room, "again") == "forbidden", "§7.2.7 banned user rejoined"
        outcasts = list_jids(await admin_list(owner, room, "outcast"))
        assert ban_jid in outcasts, outcasts


@async_test
async def test_ban_list_edit_by_non_admin_refused(server):
    async with Clients() as cs:
        owner = await muc_login(cs, server)
        p = await muc_login(cs, server)
        victim = await muc_login(cs, server)
        room = new_room(server)
        await create_room(owner, room, "boss")
        await join(p, room, "pleb")
        await join(victim, room, "victim")
        resp = await admin(p, room, item(jid=victim.bare, affiliation="outcast"))
        assert resp["type"] == "error" and cond(resp) == "forbidden", f"§9.1: {resp}"
        resp = await p.iq("get", room, f"<query xmlns='{NS_MUC_ADMIN}'>{item(affiliation='outcast')}</query>")
        assert resp["type"] == "error" and cond(resp) == "forbidden", f"§9.2 ban list to participant: {resp}"
        resp = await admin(p, room, item(nick="victim", role="none"))
        assert resp["type"] == "error" and cond(resp) in ("forbidden", "not-allowed"), f"§8.2: {resp}"
        await barrier(room, p, victim)
        assert not [x for x in victim.presences if unavailable_of(room, "victim")(x)], "victim removed"
        assert victim.bare not in list_jids(await admin_list(owner, room, "outcast"))
        await say_ok(victim, room, "still here")


@async_test
async def test_members_only_room(server):
    async with Clients() as cs:
        owner = await muc_login(cs, server)
        m = await muc_login(cs, server)
        room = new_room(server)
        await create_room(owner, room, "boss", {"muc#roomconfig_membersonly": True})
        assert await join_refused(m, room, "hopeful") == "registration-required", "§7.2.6"
        plugin = owner.x.plugin["xep_0045"]
        await plugin.set_affiliation(JID(room), "member", jid=JID(m.bare), timeout=TIMEOUT)
        j = await join(m, room, "member")
        assert muc_item(j.presence).get("affiliation") == "member", str(j.presence)
        members = await plugin.get_affiliation_list(JID(room), "member", timeout=TIMEOUT)
        assert m.bare in {str(x) for x in members}, members
        # Revoking membership removes the occupant (§9.4, status 321).
        await plugin.set_affiliation(JID(room), "none", jid=JID(m.bare), timeout=TIMEOUT)
        p = await m.wait_presence(unavailable_of(room, "member"), what="removal on revocation")
        assert "321" in status_codes(p), str(p)
        assert await join_refused(m, room, "member") == "registration-required"


@async_test
async def test_password_room(server):
    async with Clients() as cs:
        owner = await muc_login(cs, server)
        u = await muc_login(cs, server)
        room = new_room(server)
        await create_room(owner, room, "boss", {"muc#roomconfig_passwordprotectedroom": True,
                                                "muc#roomconfig_roomsecret": "open sesame"})
        assert await join_refused(u, room, "nopw") == "not-authorized", "§7.2.5 missing password"
        assert await join_refused(u, room, "badpw", password="wrong") == "not-authorized"
        j = await join(u, room, "goodpw", password="open sesame")
        assert "110" in j.codes


@async_test
async def test_moderated_room_voice(server):
    async with Clients() as cs:
        owner = await muc_login(cs, server)
        v = await muc_login(cs, server)
        room = new_room(server)
        await create_room(owner, room, "boss", {"muc#roomconfig_moderatedroom": True})
        j = await join(v, room, "visitor")
        assert muc_item(j.presence).get("role") == "visitor", f"§7.1 moderated: {j.presence}"
        mid = send_groupchat(v, room, "can I talk?")
        assert await message_error(v, mid) == "forbidden", "§7.4 visitor in moderated room"
        await barrier(room, v, owner)
        assert not [x for x in owner.messages if attr(x, "id") == mid and attr(x, "type") == "groupchat"]
        await owner.x.plugin["xep_0045"].set_role(JID(room), "visitor", "participant", timeout=TIMEOUT)
        p = await v.wait_presence(lambda p: available_of(room, "visitor")(p)
                                  and muc_item(p) is not None and muc_item(p).get("role") == "participant",
                                  what="voice granted")
        assert p is not None
        await say_ok(v, room, "now I can")
        await owner.wait_message(is_groupchat(room, "now I can"))
        mark = len(v.presences)
        await owner.x.plugin["xep_0045"].set_role(JID(room), "visitor", "visitor", timeout=TIMEOUT)
        await v.wait_presence(
            lambda p: v.presences.index(p) >= mark and available_of(room, "visitor")(p)
            and muc_item(p) is not None and muc_item(p).get("role") == "visitor",
            what="voice revoked")
        mid = send_groupchat(v, room, "silenced?")
        assert await message_error(v, mid) == "forbidden", "revoked voice still speaks"


# ---------------------------------------------------------------------------------------------
# destroy (§10.9), invitations (§7.8, XEP-0249), nick registration (§7.10)
# ---------------------------------------------------------------------------------------------


@async_test
async def test_destroy_with_alternate_venue(server):
    async with Clients() as cs:
        owner = await muc_login(cs, server)
        b = await muc_login(cs, server)
        c = await muc_login(cs, server)
        room = new_room(server)
        venue = new_room(server, "venue")
        await create_room(owner, room, "boss")
        await join(b, room, "bob")
        await join(c, room, "carol")
        await say_ok(owner, room, "before the end")
        await owner.x.plugin["xep_0045"].destroy(JID(room), reason="moving", altroom=JID(venue),
                                                 timeout=TIMEOUT)
        for who, nick in ((b, "bob"), (c, "carol"), (owner, "boss")):
            p = await who.wait_presence(unavailable_of(room, nick), what=f"destroy notice for {nick}")
            d = muc_x(p).find(f"{{{NS_MUC_USER}}}destroy") if muc_x(p) is not None else None
            assert d is not None, f"§10.9: unavailable presence lacks <destroy/>: {p}"
            assert d.get("jid") == venue, f"§10.9: alternate venue missing: {p}"
            r = d.find(f"{{{NS_MUC_USER}}}reason")
            assert r is not None and r.text == "moving", f"§10.9: reason missing: {p}"
            it = muc_item(p)
            # (§10.9's example shows affiliation='none' too; the text only requires <destroy/>.)
            assert it is not None and it.get("role") == "none", str(p)
        mid = send_groupchat(b, room, "hello?")
        assert await message_error(b, mid) in ("item-not-found", "not-acceptable"), "room still there"
        resp = await b.iq("get", room, f"<query xmlns='{NS_DISCO_INFO}'/>")
        assert resp["type"] == "error" and cond(resp) == "item-not-found", f"destroyed room answers: {resp}"
        # The name is free again: joining creates a new room with an empty history.
        j = await join(b, room, "bob")
        assert "201" in j.codes, f"re-created room lacks 201: {j.presence}"
        assert j.history == [], f"re-created room shows old history: {j.history}"


@async_test
async def test_mediated_invitation(server):
    async with Clients() as cs:
        owner = await muc_login(cs, server)
        invitee = await muc_login(cs, server)
        room = new_room(server)
        await create_room(owner, room, "boss", {"muc#roomconfig_passwordprotectedroom": True,
                                                "muc#roomconfig_roomsecret": "pw1"})
        mid = "inv-" + uid()
        owner.x.send_raw(f"<message to='{room}' id='{mid}'><x xmlns='{NS_MUC_USER}'>"
                         f"<invite to='{invitee.bare}'><reason>join us</reason></invite></x></message>")
        m = await invitee.wait_message(
            lambda m: muc_x(m) is not None and muc_x(m).find(f"{{{NS_MUC_USER}}}invite") is not None,
            what="mediated invitation")
        assert attr(m, "from") == room, f"§7.8.2: invitation must come from the room: {m}"
        inv = muc_x(m).find(f"{{{NS_MUC_USER}}}invite")
        assert inv.get("from") in (owner.jid, owner.bare, f"{room}/boss"), f"§7.8.2 inviter: {m}"
        r = inv.find(f"{{{NS_MUC_USER}}}reason")
        assert r is not None and r.text == "join us", str(m)
        pw = muc_x(m).find(f"{{{NS_MUC_USER}}}password")
        assert pw is not None and pw.text == "pw1", f"§7.8.2 SHOULD add the password: {m}"
        # A non-occupant cannot use the room to send invitations.
        mid = "inv-" + uid()
        invitee.x.send_raw(f"<message to='{room}' id='{mid}'><x xmlns='{NS_MUC_USER}'>"
                           f"<invite to='{owner.bare}'/></x></message>")
        assert await message_error(invitee, mid) is not None


@async_test
async def test_invitation_to_an_offline_account_waits_for_its_next_login(server):
    """A mediated invitation usually has no body; it is still something its addressee would
    miss, so offline storage keeps it (XEP-0160) and the next login gets it, with a delay."""
    invitee_account = server.new_user("away")
    async with Clients() as cs:
        owner = await muc_login(cs, server)
        room = new_room(server)
        await create_room(owner, room, "boss", {})
        owner.x.send_raw(f"<message to='{room}'><x xmlns='{NS_MUC_USER}'>"
                         f"<invite to='{invitee_account[0]}'/></x></message>")
        await owner.ping_server()
        await asyncio.sleep(0.3)
        invitee = await muc_login(cs, server, account=invitee_account)
        m = await invitee.wait_message(
            lambda m: muc_x(m) is not None and muc_x(m).find(f"{{{NS_MUC_USER}}}invite") is not None,
            what="the stored invitation")
        assert attr(m, "from") == room, str(m)
        assert xml_of(m).find("{urn:xmpp:delay}delay") is not None, f"no delay stamp: {m}"


@async_test
async def test_direct_invitation_routed(server):
    async with Clients() as cs:
        a = await muc_login(cs, server)
        b = await muc_login(cs, server)
        room = new_room(server)
        await create_room(a, room, "alice")
        mid = "dinv-" + uid()
        a.x.send_raw(f"<message to='{b.bare}' id='{mid}'><x xmlns='{NS_CONFERENCE}' jid='{room}' "
                     f"reason='come' password='pw'/></message>")
        m = await b.wait_message(lambda m: attr(m, "id") == mid, what="XEP-0249 invitation")
        assert attr(m, "from") == a.jid, str(m)
        x = xml_of(m).find(f"{{{NS_CONFERENCE}}}x")
        assert x is not None and x.get("jid") == room and x.get("reason") == "come", str(m)
        assert x.get("password") == "pw", str(m)


@async_test
async def test_nick_registration(server):
    async with Clients() as cs:
        owner = await muc_login(cs, server)
        reg = await muc_login(cs, server)
        other = await muc_login(cs, server)
        room = new_room(server)
        await create_room(owner, room, "boss")
        resp = await reg.iq("get", room, f"<query xmlns='{NS_REGISTER}'/>")
        assert resp["type"] == "result", str(resp)
        x = resp.xml.find(f"{{{NS_REGISTER}}}query/{{{NS_DATA}}}x")
        assert x is not None, f"§7.10: registration form expected: {resp}"
        fields = {f.get("var") for f in x.findall(f"{{{NS_DATA}}}field")}
        assert "muc#register_roomnick" in fields, fields
        form = form_xml({"muc#register_roomnick": "Reggie"},
                        form_type="http://jabber.org/protocol/muc#register")
        resp = await reg.iq("set", room, f"<query xmlns='{NS_REGISTER}'>{form}</query>")
        assert resp["type"] == "result", f"registration refused: {resp}"
        resp = await reg.iq("get", room, f"<query xmlns='{NS_REGISTER}'/>")
        q = resp.xml.find(f"{{{NS_REGISTER}}}query")
        assert q is not None and q.find(f"{{{NS_REGISTER}}}registered") is not None, (
            f"§7.10: already registered → <registered/>: {resp}")
        assert q.findtext(f"{{{NS_REGISTER}}}username") == "Reggie", str(resp)
        # The nick is reserved against others, also as a look-alike (§7.10, §7.2.9).
        assert await join_refused(other, room, "Reggie") == "conflict"
        assert await join_refused(other, room, "reggie") == "conflict"
        form = form_xml({"muc#register_roomnick": "REGGIE"},
                        form_type="http://jabber.org/protocol/muc#register")
        resp = await other.iq("set", room, f"<query xmlns='{NS_REGISTER}'>{form}</query>")
        assert resp["type"] == "error" and cond(resp) == "conflict", f"§7.10 conflict: {resp}"
        await join(reg, room, "Reggie")
        members = list_jids(await admin_list(owner, room, "member"))
        assert reg.bare in members, f"registered user should be on the member list: {members}"


# ---------------------------------------------------------------------------------------------
# archive (XEP-0313 on the room) and moderation (XEP-0425)
# ---------------------------------------------------------------------------------------------


async def mam(c: Client, room: str, fields: dict | None = None, rsm: str = ""):
    qid = "q" + uid()
    form = form_xml(fields, form_type=NS_MAM) if fields else ""
    resp = await c.iq("set", room, f"<query xmlns='{NS_MAM}' queryid='{qid}'>{form}{rsm}</query>")
    assert resp["type"] == "result", f"MAM query failed: {resp}"
    fin = resp.xml.find(f"{{{NS_MAM}}}fin")
    assert fin is not None, f"MAM result without <fin/>: {resp}"
    await asyncio.sleep(0.05)
    results = []
    for m in c.messages:
        r = xml_of(m).find(f"{{{NS_MAM}}}result")
        if r is not None and r.get("queryid") == qid:
            assert attr(m, "from") == room, f"MAM result must come from the archive (room): {m}"
            results.append(r)
    return fin, results


def rsm(max_: int, after: str | None = None, before: str | None = None) -> str:
    a = f"<after>{after}</after>" if after is not None else ""
    if before is None:
        b = ""
    elif before == "":
        b = "<before/>"
    else:
        b = f"<before>{before}</before>"
    return f"<set xmlns='{NS_RSM}'><max>{max_}</max>{a}{b}</set>"


def forwarded(r: ET.Element) -> ET.Element:
    m = r.find(f"{{{NS_FORWARD}}}forwarded/{C}message")
    assert m is not None, f"MAM result without forwarded message: {tostr(r)}"
    return m


def rsm_last(fin) -> str:
    return fin.findtext(f"{{{NS_RSM}}}set/{{{NS_RSM}}}last")


def rsm_first(fin) -> str:
    return fin.findtext(f"{{{NS_RSM}}}set/{{{NS_RSM}}}first")


def complete(fin) -> bool:
    return fin.get("complete") in ("true", "1")


@async_test
async def test_archive_paging_and_filters(server):
    async with Clients() as cs:
        owner = await muc_login(cs, server)
        b = await muc_login(cs, server)
        room = new_room(server)
        await create_room(owner, room, "boss")
        await join(b, room, "bob")
        live = []  # (stanza-id, body, nick)
        for i in range(25):
            who, nick = (b, "bob") if i % 5 == 4 else (owner, "boss")
            m = await say_ok(who, room, f"archived {i}")
            live.append((room_stanza_id(m, room), f"archived {i}", nick))
        ids = [x[0] for x in live]

        def check(results, expected_slice):
            got = [r.get("id") for r in results]
            assert got == [x[0] for x in expected_slice], f"MAM ids {got} != live {[x[0] for x in expected_slice]}"
            for r, (_, text, nick) in zip(results, expected_slice):
                fm = forwarded(r)
                assert body(fm) == text, tostr(r)
                assert fm.get("from") == f"{room}/{nick}", f"XEP-0313 §MUC: from = occupant JID: {tostr(r)}"
                assert fm.get("to") is None, f"XEP-0313: forwarded MUC message must not have 'to': {tostr(r)}"
                assert r.find(f"{{{NS_FORWARD}}}forwarded/{{{NS_DELAY}}}delay") is not None, tostr(r)

        # Forward paging.
        fin, res = await mam(owner, room, rsm=rsm(10))
        check(res, live[0:10])
        assert not complete(fin), "complete on the first of three pages"
        assert rsm_first(fin) == ids[0] and rsm_last(fin) == ids[9], tostr(fin)
        fin, res = await mam(owner, room, rsm=rsm(10, after=ids[9]))
        check(res, live[10:20])
        assert not complete(fin)
        fin, res = await mam(owner, room, rsm=rsm(10, after=rsm_last(fin)))
        check(res, live[20:25])
        assert complete(fin), f"XEP-0313: last page must be complete='true': {tostr(fin)}"
        count = fin.findtext(f"{{{NS_RSM}}}set/{{{NS_RSM}}}count")
        assert count is None or count == "25", tostr(fin)
        # Backward paging from the end.
        fin, res = await mam(owner, room, rsm=rsm(10, before=""))
        check(res, live[15:25])
        assert not complete(fin)
        fin, res = await mam(owner, room, rsm=rsm(10, before=rsm_first(fin)))
        check(res, live[5:15])
        assert not complete(fin)
        fin, res = await mam(owner, room, rsm=rsm(10, before=rsm_first(fin)))
        check(res, live[0:5])
        assert complete(fin), f"backward paging: oldest page must be complete: {tostr(fin)}"
        # 'with' an occupant JID.
        fin, res = await mam(b, room, {"with": f"{room}/bob"})
        check(res, [x for x in live if x[2] == "bob"])
        assert complete(fin)
        # start/end (inclusive) by the archive's own timestamps.
        _, all_res = await mam(owner, room, rsm=rsm(50))
        stamps = [r.find(f"{{{NS_FORWARD}}}forwarded/{{{NS_DELAY}}}delay").get("stamp") for r in all_res]
        assert len(stamps) == 25
        fin, res = await mam(owner, room, {"start": stamps[5], "end": stamps[9]})
        check(res, live[5:10])
        fin, res = await mam(owner, room, {"start": stamps[20]})
        check(res, live[20:25])
        fin, res = await mam(owner, room, {"end": stamps[2]})
        check(res, live[0:3])


@async_test
async def test_moderated_retraction(server):
    async with Clients() as cs:
        mod = await muc_login(cs, server)
        b = await muc_login(cs, server)
        room = new_room(server)
        await create_room(mod, room, "mod")
        await join(b, room, "bob")
        keep = await say_ok(mod, room, "keep this")
        keep_id = room_stanza_id(keep, room)
        await say_ok(b, room, "bad words")
        at_mod = await mod.wait_message(is_groupchat(room, "bad words"))
        bad_id = room_stanza_id(at_mod, room)
        # A participant may not moderate (XEP-0425 §error).
        resp = await b.iq("set", room, f"<moderate id='{keep_id}' xmlns='{NS_MODERATE}'>"
                                       f"<retract xmlns='{NS_RETRACT}'/></moderate>")
        assert resp["type"] == "error" and cond(resp) == "forbidden", f"participant moderation: {resp}"
        resp = await mod.iq("set", room, f"<moderate id='{bad_id}' xmlns='{NS_MODERATE}'>"
                                         f"<retract xmlns='{NS_RETRACT}'/><reason>rude</reason></moderate>")
        assert resp["type"] == "result", f"moderation refused: {resp}"
        for who in (mod, b):
            m = await who.wait_message(
                lambda m: xml_of(m).find(f"{{{NS_RETRACT}}}retract") is not None, what="retraction")
            assert attr(m, "from") == room and attr(m, "type") == "groupchat", f"XEP-0425: {m}"
            r = xml_of(m).find(f"{{{NS_RETRACT}}}retract")
            assert r.get("id") == bad_id, f"retraction names the wrong stanza-id: {m}"
            md = r.find(f"{{{NS_MODERATE}}}moderated")
            assert md is not None and md.get("by") == f"{room}/mod", f"XEP-0425 moderated/by: {m}"
            assert r.findtext(f"{{{NS_RETRACT}}}reason") == "rude", str(m)
        fin, res = await mam(mod, room)
        by_id = {r.get("id"): forwarded(r) for r in res}
        assert body(by_id[keep_id]) == "keep this", "unrelated message changed"
        tomb = by_id.get(bad_id)
        assert tomb is not None, f"retracted message missing from MAM (tombstone expected): {list(by_id)}"
        assert body(tomb) is None, f"tombstone still has the body: {tostr(tomb)}"
        assert "bad words" not in tostr(tomb), tostr(tomb)
        rt = tomb.find(f"{{{NS_RETRACT}}}retracted")
        assert rt is not None and rt.find(f"{{{NS_MODERATE}}}moderated") is not None, (
            f"XEP-0425 tombstone must carry <retracted><moderated/>: {tostr(tomb)}")
        # Not redistributed to newcomers either.
        late = await muc_login(cs, server)
        j = await join(late, room, "late")
        assert "bad words" not in [body(m) for m in j.history], [str(m) for m in j.history]


# ---------------------------------------------------------------------------------------------
# occupant-id stability (XEP-0421), self-ping (XEP-0410), disco (§6)
# ---------------------------------------------------------------------------------------------


@async_test
async def test_occupant_id_stability(server):
    async with Clients() as cs:
        owner = await muc_login(cs, server)
        room = new_room(server)
        await create_room(owner, room, "boss")
        account = server.new_user("oid")
        a1 = await muc_login(cs, server, account)
        await join(a1, room, "first")
        oid1 = occupant_id(await say_ok(a1, room, "one"))
        await leave(a1, room, "first")
        await a1.close()
        a2 = await muc_login(cs, server, account)  # same account, new session and resource
        await join(a2, room, "second-name")
        oid2 = occupant_id(await say_ok(a2, room, "two"))
        assert oid1 == oid2, "XEP-0421: occupant-id must be stable for an account across rejoins"
        other = await muc_login(cs, server)
        await join(other, room, "other")
        assert occupant_id(await say_ok(other, room, "three")) != oid1, "different accounts share an id"
        anon = await anon_login(cs, server)
        j = await join(anon, room, "guest")
        x1 = occupant_id(await say_ok(anon, room, "anon 1"))
        x2 = occupant_id(await say_ok(anon, room, "anon 2"))
        assert x1 == x2 == occupant_id(j.presence), "anonymous occupant-id changed within a session"
        assert x1 not in (oid1,), "anonymous visitor shares an occupant-id"


@async_test
async def test_self_ping(server):
    async with Clients() as cs:
        owner = await muc_login(cs, server)
        b = await muc_login(cs, server)
        room = new_room(server)
        await create_room(owner, room, "boss")
        await join(b, room, "bob")
        resp = await b.iq("get", f"{room}/bob", f"<ping xmlns='{NS_PING}'/>")
        assert resp["type"] == "result", f"XEP-0410: self-ping while joined: {resp}"
        await leave(b, room, "bob")
        resp = await b.iq("get", f"{room}/bob", f"<ping xmlns='{NS_PING}'/>")
        assert resp["type"] == "error" and cond(resp) == "not-acceptable", f"XEP-0410 after leaving: {resp}"


@async_test
async def test_iq_to_an_occupant_is_relayed_without_revealing_real_jids(server):
    from slixmpp.xmlstream.handler import Callback
    from slixmpp.xmlstream.matcher import MatchXPath

    async with Clients() as cs:
        owner = await muc_login(cs, server)
        b = await muc_login(cs, server)
        room = new_room(server)
        await create_room(owner, room, "boss")
        await join(b, room, "bob")
        seen = []

        def answer_ping(iq):
            seen.append(iq)
            iq.reply().send()

        b.x.register_handler(Callback("relay test ping", MatchXPath(
            f"{{jabber:client}}iq/{{{NS_PING}}}ping"), answer_ping))
        resp = await owner.iq("get", f"{room}/bob", f"<ping xmlns='{NS_PING}'/>")
        assert resp["type"] == "result", f"relayed ping to another occupant: {resp}"
        assert str(resp["from"]) == f"{room}/bob", f"the answer names the occupant JID: {resp}"
        assert len(seen) == 1, seen
        assert str(seen[0]["from"]) == f"{room}/boss", f"the asker's real JID leaked: {seen[0]}"
        assert str(owner.jid).split("/")[0] not in str(seen[0]), seen[0]

        # An unanswered kind of query comes back as the occupant's own error.
        resp = await owner.iq("get", f"{room}/bob", "<query xmlns='urn:example:nothing'/>")
        assert resp["type"] == "error" and str(resp["from"]) == f"{room}/bob", resp

        # vCards are asked of the occupant's account, where the server keeps them.
        resp = await owner.iq("get", f"{room}/bob", "<vCard xmlns='vcard-temp'/>")
        assert str(resp["from"]) == f"{room}/bob", resp
        assert resp["type"] == "result" or cond(resp) == "item-not-found", resp

        # No one by that nickname; and answers nobody asked for are dropped.
        resp = await owner.iq("get", f"{room}/nobody", f"<ping xmlns='{NS_PING}'/>")
        assert resp["type"] == "error" and cond(resp) == "item-not-found", resp
        b.x.send_raw(f"<iq type='result' id='forged' to='{room}/boss'/>")
        await owner.ping_server()


@async_test
async def test_disco_info_and_items(server):
    async with Clients() as cs:
        owner = await muc_login(cs, server)
        b = await muc_login(cs, server)
        public = new_room(server, "pub")
        hidden = new_room(server, "hid")
        await create_room(owner, public, "boss", {"muc#roomconfig_roomname": "Public place",
                                                  "muc#roomconfig_publicroom": True})
        await create_room(owner, hidden, "boss", {"muc#roomconfig_publicroom": False})
        await join(b, public, "bob")
        mid = "subj-" + uid()
        owner.x.send_raw(f"<message to='{public}' type='groupchat' id='{mid}'><subject>Topic A</subject></message>")
        await owner.wait_message(lambda m: attr(m, "id") == mid)
        features, info, q = await disco_info(b, public)
        for f in (NS_MUC, "muc_temporary", "muc_open", "muc_public", "muc_unsecured", NS_SID, NS_OID):
            assert f in features, f"{f} missing: {sorted(features)}"
        assert info.get("FORM_TYPE") == [NS_ROOMINFO], f"muc#roominfo form missing: {info}"
        assert info.get("muc#roominfo_occupants") == ["2"], info
        assert info.get("muc#roominfo_subject") == ["Topic A"], info
        ident = q.find(f"{{{NS_DISCO_INFO}}}identity")
        assert (ident.get("category"), ident.get("type"), ident.get("name")) == (
            "conference", "text", "Public place"), tostr(q)
        features, _, _ = await disco_info(b, hidden)
        assert "muc_hidden" in features and "muc_public" not in features, sorted(features)
        resp = await b.iq("get", server.muc_domain, f"<query xmlns='{NS_DISCO_ITEMS}'/>")
        assert resp["type"] == "result", str(resp)
        items = {i.get("jid"): i.get("name")
                 for i in resp.xml.findall(f"{{{NS_DISCO_ITEMS}}}query/{{{NS_DISCO_ITEMS}}}item")}
        assert items.get(public) == "Public place", f"public room not listed: {items}"
        assert hidden not in items, f"§6.3: hidden room listed: {items}"
        resp = await b.iq("get", server.muc_domain, f"<query xmlns='{NS_DISCO_INFO}'/>")
        idents = [(i.get("category"), i.get("type"))
                  for i in resp.xml.findall(f"{{{NS_DISCO_INFO}}}query/{{{NS_DISCO_INFO}}}identity")]
        assert ("conference", "text") in idents, str(resp)


@async_test
async def test_whois_semi_and_non_anonymous(server):
    async with Clients() as cs:
        owner = await muc_login(cs, server)
        p = await muc_login(cs, server)
        semi = new_room(server, "semi")
        await create_room(owner, semi, "boss")  # default: semi-anonymous
        j = await join(p, semi, "pleb")
        assert "100" not in j.codes, f"semi-anonymous room sent 100: {j.presence}"
        boss = await p.wait_presence(available_of(semi, "boss"))
        assert muc_item(boss).get("jid") is None, f"§7.2.4 real JID leaked to a participant: {boss}"
        # The moderator does see the participant's real JID.
        seen = await owner.wait_presence(available_of(semi, "pleb"))
        assert muc_item(seen).get("jid") == p.jid, f"§7.2.4 moderators see real JIDs: {seen}"
        open_ = new_room(server, "nonanon")
        await create_room(owner, open_, "boss", {"muc#roomconfig_whois": "anyone"})
        j = await join(p, open_, "pleb")
        assert "100" in j.codes, f"§7.2.5 non-anonymous room must send 100 on join: {j.presence}"
        boss = await p.wait_presence(available_of(open_, "boss"))
        assert muc_item(boss).get("jid") == owner.jid, f"non-anonymous: real JID expected: {boss}"


@async_test
async def test_max_users(server):
    async with Clients() as cs:
        owner = await muc_login(cs, server)
        b = await muc_login(cs, server)
        c = await muc_login(cs, server)
        room = new_room(server)
        await create_room(owner, room, "boss", {"muc#roomconfig_maxusers": "2"})
        await join(b, room, "bob")
        assert await join_refused(c, room, "carol") == "service-unavailable", "§7.2.11 room full"


@async_test
async def test_participant_may_change_subject_when_allowed(server):
    async with Clients() as cs:
        owner = await muc_login(cs, server)
        b = await muc_login(cs, server)
        room = new_room(server)
        await create_room(owner, room, "boss", {"muc#roomconfig_changesubject": True})
        await join(b, room, "bob")
        mid = "subj-" + uid()
        b.x.send_raw(f"<message to='{room}' type='groupchat' id='{mid}'><subject>By bob</subject></message>")
        m = await owner.wait_message(lambda m: attr(m, "id") == mid, what="participant's subject")
        assert attr(m, "type") == "groupchat" and attr(m, "from") == f"{room}/bob", str(m)
        _, info, _ = await disco_info(owner, room)
        assert info.get("muc#roominfo_subject") == ["By bob"], info
