"""XEP-0198 stream management over raw TCP: enable with resumption, acknowledgements both
ways, a dropped connection resumed on a new one with the missed stanzas sent again, the same
full JID and no presence change seen by a contact or room; refusals for wrong ids and owners."""

import asyncio

import pytest

from conftest import server_fixture
from helpers import NS_CLIENT, RawXmpp, async_test, tostr

NS_SM = "urn:xmpp:sm:3"
NS_MUC_USER = "http://jabber.org/protocol/muc#user"

server = server_fixture("sm", require_encryption=False)


async def logged_in(server, user: str, resource: str = "r") -> tuple[RawXmpp, str]:
    raw = await RawXmpp.connect(server.c2s_port)
    features = await raw.open_stream("localhost")
    assert features is not None
    full = await raw.login_plain(user, "pw", resource)
    return raw, full


async def reconnect_and_authenticate(server, user: str) -> tuple[RawXmpp, object]:
    raw = await RawXmpp.connect(server.c2s_port)
    await raw.open_stream("localhost")
    result = await raw.auth_plain(user, "pw")
    assert result.tag.endswith("success"), tostr(result)
    features = await raw.open_stream()
    return raw, features


@async_test()
async def test_enable_ack_and_resume_after_drop(server):
    server.add_user("smuser", "pw")
    server.add_user("smfriend", "pw")
    raw, full = await logged_in(server, "smuser")
    friend, friend_full = await logged_in(server, "smfriend", "f")

    await raw.send(f"<enable xmlns='{NS_SM}' resume='true'/>")
    enabled = await raw.expect(f"{{{NS_SM}}}enabled")
    assert enabled.get("resume") in ("true", "1"), tostr(enabled)
    previd = enabled.get("id")
    assert previd

    # The server counts what we send: one message, then ask.
    await raw.send(f"<message to='{friend_full}' type='chat'><body>one</body></message>")
    await friend.expect(f"{{{NS_CLIENT}}}message")
    await raw.send(f"<r xmlns='{NS_SM}'/>")
    ack = await raw.expect(f"{{{NS_SM}}}a")
    assert ack.get("h") == "1", tostr(ack)

    # We acknowledge the first stanza we got, then the connection drops without a goodbye.
    await friend.send(f"<message to='{full}' type='chat'><body>first</body></message>")
    await raw.expect(f"{{{NS_CLIENT}}}message")
    await raw.send(f"<a xmlns='{NS_SM}' h='1'/>")
    raw.close()
    await asyncio.sleep(0.3)

    # While we are away, messages keep coming to the same full JID.
    for text in ("missed-1", "missed-2"):
        await friend.send(f"<message to='{full}' type='chat'><body>{text}</body></message>")

    back, features = await reconnect_and_authenticate(server, "smuser")
    assert features.find(f"{{{NS_SM}}}sm") is not None, tostr(features)
    await back.send(f"<resume xmlns='{NS_SM}' previd='{previd}' h='1'/>")
    resumed = await back.expect(f"{{{NS_SM}}}resumed")
    assert resumed.get("previd") == previd
    assert resumed.get("h") == "1", "the server had handled our one stanza"
    bodies = []
    while len(bodies) < 2:
        message = await back.expect(f"{{{NS_CLIENT}}}message")
        bodies.append(message.findtext(f"{{{NS_CLIENT}}}body"))
    assert bodies == ["missed-1", "missed-2"]

    # The resumed stream works and still has our JID.
    await back.send(f"<message to='{friend_full}' type='chat'><body>i am back</body></message>")
    got = await friend.expect(f"{{{NS_CLIENT}}}message",
                              predicate=lambda m: m.findtext(f"{{{NS_CLIENT}}}body") == "i am back")
    assert got.get("from") == full
    back.close()
    friend.close()


@async_test()
async def test_resume_keeps_room_occupancy_without_leave(server):
    server.add_user("roomer", "pw")
    server.add_user("watcher", "pw")
    raw, full = await logged_in(server, "roomer")
    watcher, _ = await logged_in(server, "watcher", "w")
    room = "resumers@rooms.localhost"

    await raw.send(f"<enable xmlns='{NS_SM}' resume='true'/>")
    previd = (await raw.expect(f"{{{NS_SM}}}enabled")).get("id")
    await raw.send(f"<presence to='{room}/Roomer'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
    await raw.expect(f"{{{NS_CLIENT}}}presence", predicate=lambda p: p.get("from") == f"{room}/Roomer")
    await raw.send(f"<iq type='set' to='{room}' id='inst'><query xmlns='http://jabber.org/protocol/muc#owner'>"
                   f"<x xmlns='jabber:x:data' type='submit'/></query></iq>")
    await raw.expect(f"{{{NS_CLIENT}}}iq", predicate=lambda i: i.get("id") == "inst")
    await watcher.send(f"<presence to='{room}/Watcher'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
    await watcher.expect(f"{{{NS_CLIENT}}}presence", predicate=lambda p: p.get("from") == f"{room}/Watcher")

    raw.close()
    await asyncio.sleep(0.3)
    await watcher.send(f"<message to='{room}' type='groupchat'><body>while you were away</body></message>")

    back, _ = await reconnect_and_authenticate(server, "roomer")
    await back.send(f"<resume xmlns='{NS_SM}' previd='{previd}' h='0'/>")
    await back.expect(f"{{{NS_SM}}}resumed")
    missed = await back.expect(
        f"{{{NS_CLIENT}}}message",
        predicate=lambda m: m.findtext(f"{{{NS_CLIENT}}}body") == "while you were away")
    assert missed.get("to") == full

    # The watcher never saw Roomer leave: an IQ round trip flushes anything the room sent.
    await watcher.send(f"<iq type='get' to='{room}' id='flush'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
    seen = []
    while True:
        element = await watcher.next_element()
        assert element is not None
        seen.append(element)
        if element.tag == f"{{{NS_CLIENT}}}iq" and element.get("id") == "flush":
            break
    leaves = [e for e in seen if e.tag == f"{{{NS_CLIENT}}}presence" and e.get("type") == "unavailable"]
    assert not leaves, [tostr(e) for e in leaves]
    back.close()
    watcher.close()


@async_test()
async def test_resume_refused_for_unknown_id_or_other_user(server):
    server.add_user("owner1", "pw")
    server.add_user("thief", "pw")
    raw, _ = await logged_in(server, "owner1")
    await raw.send(f"<enable xmlns='{NS_SM}' resume='true'/>")
    previd = (await raw.expect(f"{{{NS_SM}}}enabled")).get("id")
    raw.close()

    other, _ = await reconnect_and_authenticate(server, "thief")
    await other.send(f"<resume xmlns='{NS_SM}' previd='{previd}' h='0'/>")
    failed = await other.expect(f"{{{NS_SM}}}failed")
    assert failed.find("{urn:ietf:params:xml:ns:xmpp-stanzas}not-authorized") is not None, tostr(failed)
    # The refused connection can still bind normally.
    assert (await other.bind("fresh")).endswith("/fresh")
    other.close()

    stranger, _ = await reconnect_and_authenticate(server, "thief")
    await stranger.send(f"<resume xmlns='{NS_SM}' previd='no-such-session' h='0'/>")
    failed = await stranger.expect(f"{{{NS_SM}}}failed")
    assert failed.find("{urn:ietf:params:xml:ns:xmpp-stanzas}item-not-found") is not None, tostr(failed)
    stranger.close()


@async_test()
async def test_acknowledging_too_much_is_a_stream_error(server):
    server.add_user("counter", "pw")
    raw, _ = await logged_in(server, "counter")
    await raw.send(f"<enable xmlns='{NS_SM}'/>")
    enabled = await raw.expect(f"{{{NS_SM}}}enabled")
    assert enabled.get("id") is None, "no resumption asked, none offered"
    await raw.send(f"<a xmlns='{NS_SM}' h='50'/>")
    condition = await raw.expect_stream_error()
    assert condition == "undefined-condition"


@async_test()
async def test_unacknowledged_messages_are_kept_when_the_session_ends(server):
    """XEP-0198 §4: a session that ends without acknowledging messages (here: no resumption
    asked for, connection dropped) does not lose them; they wait in offline storage."""
    server.add_user("smlossy", "pw")
    server.add_user("smsender", "pw")
    raw, full = await logged_in(server, "smlossy")
    sender, _ = await logged_in(server, "smsender", "s")
    # The echo of the initial presence that logged_in sent comes before counting starts.
    await raw.expect(f"{{{NS_CLIENT}}}presence")
    await raw.send(f"<enable xmlns='{NS_SM}'/>")
    await raw.expect(f"{{{NS_SM}}}enabled")

    await sender.send(f"<message to='{full}' type='chat' id='seen'><body>seen</body></message>")
    await raw.expect(f"{{{NS_CLIENT}}}message", predicate=lambda m: m.get("id") == "seen")
    await raw.send(f"<a xmlns='{NS_SM}' h='1'/>")
    await sender.send(f"<message to='{full}' type='chat' id='unseen'><body>unseen</body></message>")
    await raw.expect(f"{{{NS_CLIENT}}}message", predicate=lambda m: m.get("id") == "unseen")
    await asyncio.sleep(0.2)  # the acknowledgement of 'seen' is processed
    raw.close()  # gone without acknowledging 'unseen'
    await asyncio.sleep(0.5)

    back, _ = await logged_in(server, "smlossy", "again")
    held = await back.expect(f"{{{NS_CLIENT}}}message",
                             predicate=lambda m: m.findtext(f"{{{NS_CLIENT}}}body") is not None)
    assert held.findtext(f"{{{NS_CLIENT}}}body") == "unseen", tostr(held)
    assert held.find("{urn:xmpp:delay}delay") is not None, f"offline delivery is stamped: {tostr(held)}"
    # Only that one: the acknowledged message is not delivered twice.
    await back.send("<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
    await back.expect(f"{{{NS_CLIENT}}}iq", predicate=lambda i: i.get("id") == "p")
    assert "seen</body>" not in back.received.decode().replace("unseen</body>", ""), (
        "the acknowledged message came again")
    back.close()
    sender.close()
