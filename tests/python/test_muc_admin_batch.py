"""XEP-0045 §9/§8 admin requests carrying several items at once: each item applies to the
occupant it names, even when earlier items remove occupants; a role change carries its reason
inside the item (§8.4)."""

from conftest import server_fixture
from helpers import NS_CLIENT, RawXmpp, async_test, tostr

NS_MUC_USER = "http://jabber.org/protocol/muc#user"
ROOM = "batch@rooms.localhost"

server = server_fixture("mucbatch", require_encryption=False)


async def member(server, user: str, nick: str, instant: bool = False) -> RawXmpp:
    server.add_user(user, "pw")
    raw = await RawXmpp.connect(server.c2s_port)
    await raw.open_stream("localhost")
    await raw.login_plain(user, "pw", "r")
    await raw.send(f"<presence to='{ROOM}/{nick}'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
    await raw.expect(f"{{{NS_CLIENT}}}presence", predicate=lambda p: p.get("from") == f"{ROOM}/{nick}")
    if instant:
        await raw.send(f"<iq type='set' to='{ROOM}' id='inst'><query xmlns='http://jabber.org/protocol/muc#owner'>"
                       "<x xmlns='jabber:x:data' type='submit'/></query></iq>")
        await raw.expect(f"{{{NS_CLIENT}}}iq", predicate=lambda i: i.get("id") == "inst")
    return raw


@async_test()
async def test_several_kicks_and_a_voice_change_in_one_request(server):
    owner = await member(server, "boss", "Boss", instant=True)
    first = await member(server, "first", "First")
    second = await member(server, "second", "Second")
    stays = await member(server, "stays", "Stays")
    await owner.send(
        f"<iq type='set' to='{ROOM}' id='batch'><query xmlns='http://jabber.org/protocol/muc#admin'>"
        "<item nick='First' role='none'><reason>one</reason></item>"
        "<item nick='Second' role='none'><reason>two</reason></item>"
        "<item nick='Stays' role='visitor'><reason>quiet please</reason></item>"
        "</query></iq>")
    result = await owner.expect(f"{{{NS_CLIENT}}}iq", predicate=lambda i: i.get("id") == "batch")
    assert result.get("type") == "result", tostr(result)
    for raw, nick in ((first, "First"), (second, "Second")):
        gone = await raw.expect(
            f"{{{NS_CLIENT}}}presence",
            predicate=lambda p, nick=nick: p.get("from") == f"{ROOM}/{nick}" and p.get("type") == "unavailable")
        codes = {s.get("code") for s in gone.iter(f"{{{NS_MUC_USER}}}status")}
        assert "307" in codes, tostr(gone)
    quieted = await stays.expect(
        f"{{{NS_CLIENT}}}presence",
        predicate=lambda p: p.get("from") == f"{ROOM}/Stays" and p.get("type") is None)
    item = quieted.find(f"{{{NS_MUC_USER}}}x/{{{NS_MUC_USER}}}item")
    assert item is not None and item.get("role") == "visitor", tostr(quieted)
    assert item.findtext(f"{{{NS_MUC_USER}}}reason") == "quiet please", tostr(quieted)
    # Stays is still there; First and Second are not.
    await owner.send(f"<iq type='get' to='{ROOM}' id='list'><query xmlns='http://jabber.org/protocol/muc#admin'>"
                     "<item role='visitor'/></query></iq>")
    listing = await owner.expect(f"{{{NS_CLIENT}}}iq", predicate=lambda i: i.get("id") == "list")
    nicks = {i.get("nick") for i in listing.iter("{http://jabber.org/protocol/muc#admin}item")}
    assert nicks == {"Stays"}, tostr(listing)
    for raw in (owner, first, second, stays):
        raw.close()
