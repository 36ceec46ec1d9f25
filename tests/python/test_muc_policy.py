"""MUC room-creation policy (`[muc] create_rooms`) and what anonymous visitors may do."""


from conftest import server_fixture
from helpers import Clients, async_test
from test_muc import (
    NS_DISCO_INFO, anon_login, attr, configure, create_room, join, join_refused, muc_login,
    new_room, owner_set, cond, say_ok,
)

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
