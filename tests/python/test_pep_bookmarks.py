"""Bookmarks: PEP native bookmarks (XEP-0402) and their compatibility with private XML storage
(XEP-0049 with XEP-0048's `storage:bookmarks`), driven by slixmpp's xep_0048, xep_0049 and
xep_0402 plugins: what one kind of client stores, the other reads, and the owner's other
clients are notified room by room. Guests get proper answers."""

import xml.etree.ElementTree as ET

from slixmpp.exceptions import IqError

from conftest import server_fixture
from helpers import Client, Clients, async_test
from test_pep import events, login

server = server_fixture("pep-bookmarks", require_encryption=True)

NATIVE = "urn:xmpp:bookmarks:1"
NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_EVENT = "http://jabber.org/protocol/pubsub#event"


async def legacy_client(cs, server, jid, pw):
    c = await login(cs, server, jid, pw, caps=False)
    for plugin in ("xep_0048", "xep_0049"):
        c.x.register_plugin(plugin)
    return c


async def native_client(cs, server, jid, pw):
    c = await login(cs, server, jid, pw, interests=[NATIVE])
    c.x.register_plugin("xep_0402")
    return c


async def legacy_rooms(client):
    """{room: (name, autojoin, nick)} and the URLs of the private XML bookmarks."""
    result = await client.x.plugin["xep_0048"].get_bookmarks(method="xep_0049")
    storage = result["private"]["bookmarks"]
    rooms = {str(c["jid"]): (c["name"], c["autojoin"], c["nick"]) for c in storage["conferences"]}
    urls = [u["url"] for u in storage["urls"]]
    return rooms, urls


async def native_rooms(client):
    """{room: (name, autojoin, nick)} from the PEP node."""
    result = await client.x.plugin["xep_0060"].get_items(client.bare, NATIVE)
    return {i["id"]: (i["conference"]["name"], i["conference"]["autojoin"],
                      i["conference"]["nick"])
            for i in result["pubsub"]["items"]}


async def store_legacy(client, rooms):
    from slixmpp.plugins.xep_0048.stanza import Bookmarks
    b = Bookmarks()
    for room, (name, autojoin, nick) in rooms.items():
        b.add_conference(room, nick, name=name, autojoin=autojoin)
    b.add_url("https://salon.example/", name="Home")
    await client.x.plugin["xep_0048"].set_bookmarks(b, method="xep_0049")


def bookmark_events(client):
    return events(client, node=NATIVE)


@async_test
async def test_the_account_announces_compat(server):
    jid, pw = server.new_user("bk")
    async with Clients() as cs:
        c = await login(cs, server, jid, pw, caps=False)
        info = await c.x.plugin["xep_0030"].get_info(jid, local=False)
        assert f"{NATIVE}#compat" in info["disco_info"]["features"]
        assert f"{NS_PUBSUB}#config-node-max" in info["disco_info"]["features"]


@async_test
async def test_legacy_and_native_clients_share_bookmarks(server):
    jid, pw = server.new_user("bl")
    async with Clients() as cs:
        old = await legacy_client(cs, server, jid, pw)
        new = await native_client(cs, server, jid, pw)

        # The legacy client stores two rooms; the native one is notified of each.
        await store_legacy(old, {"tea@rooms.example": ("Tea", True, "al"),
                                 "work@rooms.example": ("Work", False, "alice")})
        for room in ("tea@rooms.example", "work@rooms.example"):
            await new.wait_until(
                lambda room=room: any(e[:2] == ("item", room) for e in bookmark_events(new)),
                what=f"notification of {room}")
        assert await native_rooms(new) == {"tea@rooms.example": ("Tea", True, "al"),
                                           "work@rooms.example": ("Work", False, "alice")}

        # The native client adds one the XEP-0402 way, and removes one.
        item = ET.fromstring(f"<conference xmlns='{NATIVE}' name='Cafe' autojoin='true'>"
                             "<nick>ally</nick></conference>")
        form = new.x.plugin["xep_0004"].make_form(ftype="submit")
        form.add_field(var="FORM_TYPE", ftype="hidden",
                       value="http://jabber.org/protocol/pubsub#publish-options")
        for var, value in (("persist_items", "true"), ("max_items", "max"),
                           ("send_last_published_item", "never"), ("access_model", "whitelist")):
            form.add_field(var=f"pubsub#{var}", value=value)
        await new.x.plugin["xep_0060"].publish(jid, NATIVE, id="cafe@rooms.example",
                                               payload=item, options=form)
        await new.x.plugin["xep_0060"].retract(jid, NATIVE, "work@rooms.example", notify=True)
        rooms, urls = await legacy_rooms(old)
        assert rooms == {"tea@rooms.example": ("Tea", True, "al"),
                         "cafe@rooms.example": ("Cafe", True, "ally")}, rooms
        assert urls == ["https://salon.example/"], urls

        # The legacy client drops a room: the native client sees it retracted.
        await store_legacy(old, {"cafe@rooms.example": ("Cafe", True, "ally")})
        await new.wait_until(lambda: ("retract", "tea@rooms.example") in bookmark_events(new),
                             what="retraction of tea")
        assert await native_rooms(new) == {"cafe@rooms.example": ("Cafe", True, "ally")}
        # Nobody else reads them.
        other_jid, other_pw = server.new_user("bo")
        other = await login(cs, server, other_jid, other_pw, caps=False)
        try:
            await other.x.plugin["xep_0060"].get_items(jid, NATIVE)
            raise AssertionError("someone else read the bookmarks")
        except IqError as e:
            assert e.iq["error"]["condition"] == "not-allowed", str(e.iq)


@async_test
async def test_guests_get_answers_not_errors(server):
    async with Clients() as cs:
        guest = cs.add(Client(server, server.anon_domain, "", mech="ANONYMOUS"))
        for plugin in ("xep_0004", "xep_0030", "xep_0060", "xep_0048", "xep_0049", "xep_0402"):
            guest.x.register_plugin(plugin)
        await guest.login()
        # No bookmarks yet: XEP-0060 §6.5.9.11 item-not-found (clients take it as "none").
        try:
            await guest.x.plugin["xep_0060"].get_items(guest.bare, NATIVE)
            raise AssertionError("bookmarks before any were stored")
        except IqError as e:
            assert e.iq["error"]["condition"] == "item-not-found", str(e.iq)
        rooms, urls = await legacy_rooms(guest)
        assert (rooms, urls) == ({}, [])
        await store_legacy(guest, {"tea@rooms.example": ("Tea", True, "g")})
        assert await native_rooms(guest) == {"tea@rooms.example": ("Tea", True, "g")}
