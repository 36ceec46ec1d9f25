"""MUC room-creation policy (`[muc] create_rooms`) and what anonymous visitors may do."""


import asyncio
import datetime as dt

from conftest import server_fixture
from helpers import Clients, async_test, uid
from test_muc import (
    NS_DISCO_INFO, NS_MUC_ADMIN, anon_login, attr, configure, create_room, from_room, join,
    join_refused, muc_login, new_room, owner_set, cond, presence_xml, say_ok, status_codes,
)

NS_VISITOR = "urn:salon:visitor:0"
NS_BAN = "urn:salon:ban:0"

registered_only = server_fixture("muc-registered", muc={"create_rooms": "registered"})
open_server = server_fixture("muc-anyone", muc={"create_rooms": "anyone"})


@async_test
async def test_anonymous_cannot_create_room_when_registered_only(registered_only):
    server = registered_only
    async with Clients() as cs:
        anon = await anon_login(cs, server)
        room = new_room(server)
        assert await join_refused(anon, room, "guest") == "not-allowed", (
            "create_rooms=registered: a guest creating a room must get not-allowed")
        # The refused attempt did not leave a room behind.
        resp = await anon.iq("get", room, f"<query xmlns='{NS_DISCO_INFO}'/>")
        assert resp["type"] == "error" and cond(resp) == "item-not-found", str(resp)
        # A registered user creates it; then the guest may join.
        owner = await muc_login(cs, server)
        await create_room(owner, room, "boss")
        j = await join(anon, room, "guest")
        assert "201" not in j.codes
        await say_ok(anon, room, "hello from a guest")
        await owner.wait_message(lambda m: attr(m, "from") == f"{room}/guest")


@async_test
async def test_anonymous_room_cannot_be_made_persistent(open_server):
    server = open_server
    async with Clients() as cs:
        anon = await anon_login(cs, server)
        room = new_room(server)
        j = await join(anon, room, "guest")
        assert "201" in j.codes, f"create_rooms=anyone: a guest may create rooms: {j.presence}"
        resp = await owner_set(anon, room, {"muc#roomconfig_persistentroom": True})
        assert resp["type"] == "error" and cond(resp) == "forbidden", (
            f"a guest-owned room must not become persistent: {resp}")
        # Still configurable otherwise, and still temporary.
        await configure(anon, room, {"muc#roomconfig_roomname": "Guest room"})
        resp = await anon.iq("get", room, f"<query xmlns='{NS_DISCO_INFO}'/>")
        feats = {f.get("var") for f in resp.xml.iter(f"{{{NS_DISCO_INFO}}}feature")}
        assert "muc_temporary" in feats and "muc_persistent" not in feats, sorted(feats)


async def join_raw(c, room: str, nick: str, extra: str = ""):
    """Sends a join with `extra` children; returns the self-presence or the error presence."""
    pid = "join-" + uid()
    old = {id(p) for p in c.presences}
    c.x.send_raw(presence_xml(f"{room}/{nick}", pid, extra=extra))

    def answer(p):
        if id(p) in old:
            return False
        if attr(p, "id") == pid and attr(p, "type") == "error":
            return True
        return from_room(room)(p) and "110" in status_codes(p) and attr(p, "type") != "unavailable"

    return await c.wait_presence(answer, what=f"answer to join {room}/{nick!r}")


def bare_of(c) -> str:
    return str(c.x.boundjid.bare)


def visitor_secret(presence) -> str | None:
    v = presence.xml.find(f"{{{NS_VISITOR}}}visitor")
    return None if v is None else v.get("secret")


@async_test
async def test_a_guests_browser_secret_and_a_ban_for_the_duration_the_moderator_chose(open_server):
    """A guest gets its browser secret (urn:salon:visitor:0) in its self-presence, and none
    when it offers it again; a moderator bans it for 3 s (urn:salon:ban:0): the outcast list
    shows the end and that its address and browser are banned, the same browser logging in
    again is refused, and once the 3 s are over it gets in."""
    server = open_server
    async with Clients() as cs:
        owner = await muc_login(cs, server)
        room = new_room(server)
        await create_room(owner, room, "boss")
        guest = await anon_login(cs, server)
        joined = await join_raw(guest, room, "troll")
        assert attr(joined, "type") != "error", str(joined)
        secret = visitor_secret(joined)
        assert secret, f"no browser secret in the guest's self-presence: {joined}"
        offered = f"<visitor xmlns='{NS_VISITOR}' secret='{secret}'/>"
        other_room = new_room(server)
        again = await join_raw(guest, other_room, "troll", extra=offered)
        assert attr(again, "type") != "error" and visitor_secret(again) is None, str(again)

        ban = (f"<query xmlns='{NS_MUC_ADMIN}'><item affiliation='outcast' "
               f"jid='{bare_of(guest)}'><reason>flood</reason>"
               f"<ban xmlns='{NS_BAN}' duration='3'/></item></query>")
        resp = await owner.iq("set", room, ban)
        assert resp["type"] == "result", str(resp)
        banned_at = dt.datetime.now(dt.timezone.utc)
        resp = await owner.iq("get", room,
                              f"<query xmlns='{NS_MUC_ADMIN}'><item affiliation='outcast'/></query>")
        items = list(resp.xml.iter(f"{{{NS_MUC_ADMIN}}}item"))
        assert [i.get("jid") for i in items] == [bare_of(guest)], str(resp)
        details = items[0].find(f"{{{NS_BAN}}}ban")
        assert details is not None, str(resp)
        assert details.get("address") == "true" and details.get("browser") == "true", str(resp)
        ends = dt.datetime.fromisoformat(details.get("expires").replace("Z", "+00:00"))
        assert 1 <= (ends - banned_at).total_seconds() <= 4, details.get("expires")

        back = await anon_login(cs, server)
        refused = await join_raw(back, room, "troll2", extra=offered)
        assert attr(refused, "type") == "error" and cond(refused) == "forbidden", str(refused)
        await asyncio.sleep(max(0.0, (ends - dt.datetime.now(dt.timezone.utc)).total_seconds()) + 1.2)
        admitted = await join_raw(back, room, "troll2", extra=offered)
        assert attr(admitted, "type") != "error", f"the ban did not end: {admitted}"
        resp = await owner.iq("get", room,
                              f"<query xmlns='{NS_MUC_ADMIN}'><item affiliation='outcast'/></query>")
        assert not list(resp.xml.iter(f"{{{NS_MUC_ADMIN}}}item")), str(resp)
