"""Room invite links (issue 16 item 3): an owner of a members-only room makes a link by
XEP-0050 ad-hoc command on the room (or the operator with `salon room invite`); a join that
shows the token (`<invite xmlns='urn:salon:room-invite:0'/>` in the MUC `<x/>`) gets in, an
account becoming a member and a guest let in for the visit; used-up, revoked and other rooms'
links do not; only owners see and run the commands."""

import urllib.request
import xml.etree.ElementTree as ET

from conftest import server_fixture
from helpers import Clients, async_test, uid
from test_muc import (
    NS_DATA, NS_DISCO_ITEMS, NS_MUC, NS_MUC_USER, anon_login, attr, cond, create_room,
    configure, from_room, join, leave, muc_login, muc_item, new_room, status_codes,
)

NS_LINK = "urn:salon:room-invite:0"
NS_COMMANDS = "http://jabber.org/protocol/commands"
CREATE = NS_LINK + "#create"
LIST = NS_LINK + "#list"
REVOKE = NS_LINK + "#revoke"

server = server_fixture("room-invites", require_encryption=False,
                        muc={"guest_slow_mode_seconds": 0})


async def join_with(c, room: str, nick: str, token: str | None):
    """A raw join showing `token`; the self-presence or the error presence."""
    pid = "join-" + uid()
    old = {id(p) for p in c.presences}
    link = f"<invite xmlns='{NS_LINK}' token='{token}'/>" if token else ""
    c.x.send_raw(f"<presence to='{room}/{nick}' id='{pid}'><x xmlns='{NS_MUC}'>{link}</x></presence>")

    def answer(p):
        if id(p) in old:
            return False
        if attr(p, "id") == pid and attr(p, "type") == "error":
            return True
        return from_room(room)(p) and "110" in status_codes(p) and attr(p, "type") != "unavailable"

    return await c.wait_presence(answer, what=f"answer to join {room}/{nick}")


async def members_only_room(cs, owner_nick="boss"):
    owner = await muc_login(cs, server_of(cs))
    room = new_room(server_of(cs), "club")
    await create_room(owner, room, owner_nick, {"muc#roomconfig_membersonly": True})
    return owner, room


def server_of(cs):
    return cs.server


def command(node: str, form: dict | None = None, action: str = "execute") -> str:
    x = ""
    if form is not None:
        fields = "".join(f"<field var='{k}'><value>{v}</value></field>" for k, v in form.items())
        x = f"<x xmlns='{NS_DATA}' type='submit'>{fields}</x>"
    return f"<command xmlns='{NS_COMMANDS}' node='{node}' action='{action}'>{x}</command>"


def fields_of(iq) -> dict[str, list[str]]:
    x = iq.xml.find(f"{{{NS_COMMANDS}}}command/{{{NS_DATA}}}x")
    assert x is not None, f"no form in {iq}"
    return {f.get("var"): [v.text or "" for v in f.findall(f"{{{NS_DATA}}}value")]
            for f in x.findall(f"{{{NS_DATA}}}field")}


async def make_link(owner, room: str, uses: int = 1) -> dict[str, list[str]]:
    form = await owner.iq("set", room, command(CREATE))
    assert form["type"] == "result", str(form)
    assert form.xml.find(f"{{{NS_COMMANDS}}}command").get("status") == "executing", str(form)
    done = await owner.iq("set", room, command(CREATE, {"uses": uses, "expires": 3600}))
    assert done["type"] == "result", str(done)
    assert done.xml.find(f"{{{NS_COMMANDS}}}command").get("status") == "completed", str(done)
    return fields_of(done)


@async_test
async def test_an_owner_makes_a_link_by_ad_hoc_command_and_an_account_becomes_a_member(server):
    async with Clients() as cs:
        cs.server = server
        owner, room = await members_only_room(cs)
        friend = await muc_login(cs, server)
        stranger = await muc_login(cs, server)

        # The commands node lists the three commands for the owner, none for anyone else,
        # and only the owner may run them.
        items = await owner.iq("get", room, f"<query xmlns='{NS_DISCO_ITEMS}' node='{NS_COMMANDS}'/>")
        nodes = {i.get("node") for i in items.xml.iter(f"{{{NS_DISCO_ITEMS}}}item")}
        assert nodes == {CREATE, LIST, REVOKE}, str(items)
        items = await stranger.iq("get", room, f"<query xmlns='{NS_DISCO_ITEMS}' node='{NS_COMMANDS}'/>")
        assert not list(items.xml.iter(f"{{{NS_DISCO_ITEMS}}}item")), str(items)
        refused = await stranger.iq("set", room, command(CREATE, {"uses": 5, "expires": 3600}))
        assert cond(refused) == "forbidden", str(refused)

        # Without a link the room is closed to non-members.
        closed = await join_with(friend, room, "friend", None)
        assert cond(closed) == "registration-required", str(closed)

        link = await make_link(owner, room, uses=1)
        token = link["token"][0]
        assert link["uri"] == [f"xmpp:{room}?join;invite={token}"], link
        assert link["url"][0].endswith(f"/join/{room.split('@')[0]}?invite={token}"), link

        # A wrong token does not open it; the right one does, and makes the friend a member,
        # who comes back later without the link.
        wrong = await join_with(friend, room, "friend", "nottherighttoken")
        assert cond(wrong) == "registration-required", str(wrong)
        joined = await join_with(friend, room, "friend", token)
        assert attr(joined, "type") != "error", str(joined)
        assert muc_item(joined).get("affiliation") == "member", str(joined)
        await leave(friend, room, "friend")
        again = await join_with(friend, room, "friend", None)
        assert attr(again, "type") != "error", str(again)

        # Its one use is spent: the stranger is still kept out with it.
        used = await join_with(stranger, room, "stranger", token)
        assert cond(used) == "registration-required", str(used)

        # The owner lists the link (used up) and revokes it; revoking twice is item-not-found.
        listed = await owner.iq("set", room, command(LIST))
        lines = fields_of(listed)["links"]
        assert any(line.startswith(token) and "used up" in line for line in lines), lines
        form = await owner.iq("set", room, command(REVOKE))
        choices = [o.find(f"{{{NS_DATA}}}value").text
                   for o in form.xml.iter(f"{{{NS_DATA}}}option")]
        assert token in choices, str(form)
        revoked = await owner.iq("set", room, command(REVOKE, {"token": token}))
        assert revoked["type"] == "result", str(revoked)
        twice = await owner.iq("set", room, command(REVOKE, {"token": token}))
        assert cond(twice) == "item-not-found", str(twice)


@async_test
async def test_the_operators_link_lets_guests_in_until_revoked_and_only_into_its_room(server):
    async with Clients() as cs:
        cs.server = server
        owner, room = await members_only_room(cs)
        _, other_room = await members_only_room(cs)
        out = server.cli("room", "invite", room, "--uses", "3", "--expires", "1h").stdout
        url = next(line for line in out.splitlines() if line.startswith("http"))
        token = url.rsplit("invite=", 1)[1]
        assert f"/join/{room.split('@')[0]}?invite=" in url, out

        # The web page behind the link is the built-in client's.
        with urllib.request.urlopen(url.replace("localhost", "127.0.0.1"), timeout=10) as r:
            assert r.status == 200 and "<script" in r.read().decode()

        guest = await anon_login(cs, server)
        elsewhere = await join_with(guest, other_room, "guest", token)
        assert cond(elsewhere) == "registration-required", str(elsewhere)
        joined = await join_with(guest, room, "guest", token)
        assert attr(joined, "type") != "error", str(joined)
        assert muc_item(joined).get("affiliation") == "none", str(joined)

        listed = server.cli("room", "invites", room).stdout
        assert token in listed and "2 uses left" in listed, listed
        server.cli("room", "revoke", room, token)
        assert server.cli("room", "revoke", room, token, check=False).returncode == 1

        late = await anon_login(cs, server)
        refused = await join_with(late, room, "late", token)
        assert cond(refused) == "registration-required", str(refused)


@async_test
async def test_a_temporary_room_takes_its_links_with_it(server):
    """Whoever creates the name of a temporary room that ended does not inherit the links an
    earlier owner handed out (as with its archive, issue 11 item 6)."""
    import asyncio

    async with Clients() as cs:
        cs.server = server
        owner = await muc_login(cs, server)
        room = new_room(server, "brief")
        await create_room(owner, room, "first", {"muc#roomconfig_membersonly": True,
                                                 "muc#roomconfig_persistentroom": False})
        token = (await make_link(owner, room, uses=5))["url"][0].rsplit("invite=", 1)[1]
        await leave(owner, room, "first")

        successor = await muc_login(cs, server)
        for _ in range(50):
            joined = await join(successor, room, "second")
            if "201" in joined.codes:
                break
            await leave(successor, room, "second")
            await asyncio.sleep(0.1)
        assert "201" in joined.codes, "the temporary room did not end"
        await configure(successor, room, {"muc#roomconfig_membersonly": True})

        guest = await anon_login(cs, server)
        refused = await join_with(guest, room, "guest", token)
        assert cond(refused) == "registration-required", str(refused)
