"""Room archives an attacker cannot read or grow without end (issue 11 items 6 and 7): a
temporary room's archive ends with the room, and each room's archive is bounded."""

from conftest import server_fixture
from helpers import NS_CLIENT, RawXmpp, async_test, tostr

NS_MAM = "urn:xmpp:mam:2"
NS_RSM = "http://jabber.org/protocol/rsm"

server = server_fixture("archive-limits", require_encryption=False)


async def guest(server) -> RawXmpp:
    raw = await RawXmpp.connect(server.c2s_port)
    await raw.open_stream("anon.localhost")
    result = await raw.auth("ANONYMOUS", b"")
    assert result.tag.endswith("success"), tostr(result)
    await raw.open_stream()
    await raw.bind()
    return raw


async def create(raw: RawXmpp, room: str, nick: str):
    await raw.send(f"<presence to='{room}/{nick}'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
    own = await raw.expect(f"{{{NS_CLIENT}}}presence", predicate=lambda p: p.get("from") == f"{room}/{nick}")
    assert own.get("type") is None, tostr(own)
    await raw.send(f"<iq type='set' to='{room}' id='inst'><query xmlns='http://jabber.org/protocol/muc#owner'>"
                   f"<x xmlns='jabber:x:data' type='submit'/></query></iq>")
    await raw.expect(f"{{{NS_CLIENT}}}iq", predicate=lambda i: i.get("id") == "inst")


async def say(raw: RawXmpp, room: str, nick: str, body: str):
    await raw.send(f"<message to='{room}' type='groupchat'><body>{body}</body></message>")
    await raw.expect(f"{{{NS_CLIENT}}}message",
                     predicate=lambda m: m.get("from") == f"{room}/{nick}"
                     and m.findtext(f"{{{NS_CLIENT}}}body") == body)


async def archived_bodies(raw: RawXmpp, room: str, qid: str) -> list[str]:
    """Every body of the room's archive, oldest first (one page of up to 1,000)."""
    await raw.send(f"<iq type='set' to='{room}' id='{qid}'><query xmlns='{NS_MAM}' queryid='{qid}'>"
                   f"<set xmlns='{NS_RSM}'><max>1000</max></set></query></iq>")
    bodies = []
    while True:
        element = await raw.next_element()
        assert element is not None
        if element.tag == f"{{{NS_CLIENT}}}iq" and element.get("id") == qid:
            assert element.get("type") == "result", tostr(element)
            return bodies
        result = element.find(f"{{{NS_MAM}}}result")
        if result is not None and result.get("queryid") == qid:
            bodies += [b.text for b in result.iter(f"{{{NS_CLIENT}}}body")]


@async_test()
async def test_the_next_creator_of_a_temporary_room_cannot_read_its_archive(server):
    room = "ephemeral@rooms.localhost"
    first = await guest(server)
    await create(first, room, "First")
    for n in range(3):
        await say(first, room, "First", f"secret {n}")
    assert await archived_bodies(first, room, "q1") == [f"secret {n}" for n in range(3)]
    # Everyone leaves: the temporary room ends.
    await first.send(f"<presence to='{room}/First' type='unavailable'/>")
    await first.expect(f"{{{NS_CLIENT}}}presence",
                       predicate=lambda p: p.get("from") == f"{room}/First" and p.get("type") == "unavailable")
    first.close()

    # Another guest creates the same name and becomes its owner: the archive is empty.
    second = await guest(server)
    await create(second, room, "Second")
    assert await archived_bodies(second, room, "q2") == []
    second.close()


capped = server_fixture("archive-cap", require_encryption=False, muc={"max_archive_messages": 5})


@async_test()
async def test_a_rooms_archive_keeps_only_the_newest_messages(capped):
    """Item 7: with `muc.max_archive_messages = 5`, 12 messages leave the newest 5."""
    room = "chatty@rooms.localhost"
    raw = await guest(capped)
    await create(raw, room, "Chatty")
    for n in range(12):
        await say(raw, room, "Chatty", f"m{n}")
    assert await archived_bodies(raw, room, "q") == [f"m{n}" for n in range(7, 12)]
    raw.close()
