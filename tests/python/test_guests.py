"""Rules for visitors of the anonymous host: no direct messages between guests, private
messages between guests in a room only when the room allows it, and a newcomer from the same
address cannot take over an occupant whose session waits for resumption."""

import asyncio

from conftest import server_fixture
from helpers import NS_CLIENT, RawXmpp, async_test, tostr

NS_SM = "urn:xmpp:sm:3"
NS_MUC_USER = "http://jabber.org/protocol/muc#user"
ERR = "urn:ietf:params:xml:ns:xmpp-stanzas"

server = server_fixture("guests", require_encryption=False)


async def guest(server) -> tuple[RawXmpp, str]:
    return await RawXmpp.guest(server.c2s_port)


async def join(raw: RawXmpp, room: str, nick: str, instant: bool = False):
    await raw.send(f"<presence to='{room}/{nick}'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
    own = await raw.expect(f"{{{NS_CLIENT}}}presence", predicate=lambda p: p.get("from") == f"{room}/{nick}")
    if instant:
        await raw.send(f"<iq type='set' to='{room}' id='inst'><query xmlns='http://jabber.org/protocol/muc#owner'>"
                       f"<x xmlns='jabber:x:data' type='submit'/></query></iq>")
        await raw.expect(f"{{{NS_CLIENT}}}iq", predicate=lambda i: i.get("id") == "inst")
    return own


async def drain_until_iq(raw: RawXmpp, room: str, iid: str) -> list:
    await raw.send(f"<iq type='get' to='{room}' id='{iid}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
    seen = []
    while True:
        element = await raw.next_element()
        assert element is not None
        if element.tag == f"{{{NS_CLIENT}}}iq" and element.get("id") == iid:
            return seen
        seen.append(element)


@async_test()
async def test_guests_cannot_message_each_other_directly(server):
    a, a_jid = await guest(server)
    b, b_jid = await guest(server)
    await a.send(f"<message to='{b_jid}' type='chat' id='dm'><body>psst</body></message>")
    error = await a.expect(f"{{{NS_CLIENT}}}message", predicate=lambda m: m.get("id") == "dm")
    assert error.get("type") == "error" and error.find(f".//{{{ERR}}}not-allowed") is not None, tostr(error)
    a.close()
    b.close()


@async_test()
async def test_room_private_messages_between_guests_need_the_room_setting(server):
    room = "guestpm@rooms.localhost"
    a, _ = await guest(server)
    b, _ = await guest(server)
    await join(a, room, "GuestA", instant=True)
    await join(b, room, "GuestB")
    await a.send(f"<message to='{room}/GuestB' type='chat' id='pm1'><body>hello</body></message>")
    error = await a.expect(f"{{{NS_CLIENT}}}message", predicate=lambda m: m.get("id") == "pm1")
    assert error.find(f".//{{{ERR}}}not-allowed") is not None, tostr(error)

    # The owner (guest A created the room) allows private messages between guests.
    await a.send(
        f"<iq type='set' to='{room}' id='cfg'><query xmlns='http://jabber.org/protocol/muc#owner'>"
        "<x xmlns='jabber:x:data' type='submit'>"
        "<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>"
        "<field var='salon#roomconfig_guestpm'><value>1</value></field></x></query></iq>")
    result = await a.expect(f"{{{NS_CLIENT}}}iq", predicate=lambda i: i.get("id") == "cfg")
    assert result.get("type") == "result", tostr(result)
    await a.send(f"<message to='{room}/GuestB' type='chat' id='pm2'><body>hello again</body></message>")
    pm = await b.expect(f"{{{NS_CLIENT}}}message", predicate=lambda m: m.get("id") == "pm2")
    assert pm.get("from") == f"{room}/GuestA"
    a.close()
    b.close()


@async_test()
async def test_a_new_guest_from_the_same_address_cannot_take_a_waiting_owner_over(server):
    """Issue 11 item 5: while the owner's only session waits for resumption, a brand-new guest
    from the same address asks for the owner's nick. It gets a conflict, and neither the
    occupant nor the ownership passes to it."""
    room = "reload@rooms.localhost"
    owner, owner_jid = await guest(server)
    await owner.send(f"<enable xmlns='{NS_SM}' resume='true'/>")
    await owner.expect(f"{{{NS_SM}}}enabled")
    await join(owner, room, "Owner", instant=True)
    watcher, _ = await guest(server)
    await join(watcher, room, "Watcher")
    await drain_until_iq(watcher, room, "d1")

    # The owner's connection drops (its session waits for resumption); a newcomer comes in
    # from the same address (every test client is 127.0.0.1) and asks for the nick.
    owner.close()
    await asyncio.sleep(0.3)
    newcomer, _ = await guest(server)
    refused = await join(newcomer, room, "Owner")
    assert refused.get("type") == "error", f"the newcomer took the nick: {tostr(refused)}"
    assert refused.find(f".//{{{ERR}}}conflict") is not None, tostr(refused)

    # It cannot act as the owner: banning the owner is refused.
    await newcomer.send(
        f"<iq type='set' to='{room}' id='ban'><query xmlns='http://jabber.org/protocol/muc#admin'>"
        f"<item affiliation='outcast' jid='{owner_jid.split('/')[0]}'/></query></iq>")
    result = await newcomer.expect(f"{{{NS_CLIENT}}}iq", predicate=lambda i: i.get("id") == "ban")
    assert result.get("type") == "error", tostr(result)

    # The watcher saw no leave, no join and no ban for the nick.
    seen = await drain_until_iq(watcher, room, "d2")
    presences = [e for e in seen if e.tag == f"{{{NS_CLIENT}}}presence" and e.get("from") == f"{room}/Owner"]
    assert not presences, [tostr(p) for p in presences]
    watcher.close()
    newcomer.close()


@async_test()
async def test_room_info_links_to_the_webchat(server):
    room = "linked@rooms.localhost"
    a, _ = await guest(server)
    await join(a, room, "Linker", instant=True)
    await a.send(f"<iq type='get' to='{room}' id='info'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
    info = await a.expect(f"{{{NS_CLIENT}}}iq", predicate=lambda i: i.get("id") == "info")
    fields = {f.get("var"): f.findtext("{jabber:x:data}value")
              for f in info.iter("{jabber:x:data}field")}
    assert fields.get("muc#roominfo_webchat_url") == f"http://127.0.0.1:{server.http_port}/join/linked", fields
    a.close()


@async_test()
async def test_a_guest_asking_a_room_for_the_registration_form_is_told_it_may_not_register(server):
    # XEP-0045 §7.10: a guest cannot register a nick, so the room says so when asked for the
    # form instead of handing out a form whose submission it then refuses (Converse.js asks on
    # every join and submitted that form, failing with an uncaught not-allowed).
    raw, _ = await guest(server)
    room = "regform@rooms.localhost"
    await join(raw, room, "visitor", instant=True)
    await raw.send(f"<iq type='get' to='{room}' id='reg'><query xmlns='jabber:iq:register'/></iq>")
    reply = await raw.expect(f"{{{NS_CLIENT}}}iq", predicate=lambda i: i.get("id") == "reg")
    assert reply.get("type") == "error" and reply.find(f".//{{{ERR}}}not-allowed") is not None, tostr(reply)
    raw.close()
