"""Instant messaging: subscriptions and rosters, presence, 1:1 messages, offline storage,
vCard, errors for unknown users (RFC 6121, XEP-0203, XEP-0054)."""

import asyncio
import xml.etree.ElementTree as ET

from conftest import server_fixture
from helpers import (
    NS_DELAY, Client, Clients, async_test, stanza_error_condition, uid,
)

server = server_fixture("im", require_encryption=True)

NS_ROSTER = "jabber:iq:roster"
NS_VCARD = "vcard-temp"


async def login(cs, server, jid, password, resource=None, **kw):
    resource = resource or ("r" + uid())
    return await cs.login(server, f"{jid}/{resource}", password, mech="SCRAM-SHA-256", **kw)


async def roster_items(c: Client) -> dict:
    resp = await c.iq("get", None, f"<query xmlns='{NS_ROSTER}'/>")
    assert resp["type"] == "result", f"roster get failed: {resp}"
    query = resp.xml.find(f"{{{NS_ROSTER}}}query")
    assert query is not None, f"roster result without query: {resp}"
    return {item.get("jid"): item for item in query.findall(f"{{{NS_ROSTER}}}item")}


def is_presence(p, ptype, frm):
    return p["type"] == ptype and str(p["from"]) == frm


@async_test
async def test_subscription_handshake_roster_and_presence(server):
    (a_jid, a_pw), (b_jid, b_pw) = server.new_user("sa"), server.new_user("sb")
    async with Clients() as cs:
        alice = await login(cs, server, a_jid, a_pw)
        bob = await login(cs, server, b_jid, b_pw)

        # alice -> bob: subscribe / subscribed
        alice.x.send_presence(pto=b_jid, ptype="subscribe")
        sub = await bob.wait_presence(lambda p: p["type"] == "subscribe", what="subscribe from alice")
        assert str(sub["from"]) == a_jid, f"subscribe must come from alice's bare JID: {sub}"
        bob.x.send_presence(pto=a_jid, ptype="subscribed")
        ok = await alice.wait_presence(lambda p: p["type"] == "subscribed", what="subscribed from bob")
        assert str(ok["from"]) == b_jid, str(ok)

        # bob -> alice: subscribe / subscribed
        bob.x.send_presence(pto=a_jid, ptype="subscribe")
        sub = await alice.wait_presence(lambda p: p["type"] == "subscribe", what="subscribe from bob")
        assert str(sub["from"]) == b_jid, str(sub)
        alice.x.send_presence(pto=b_jid, ptype="subscribed")
        ok = await bob.wait_presence(lambda p: p["type"] == "subscribed", what="subscribed from alice")
        assert str(ok["from"]) == a_jid, str(ok)

        # Rosters: both = both (the server may need a moment to apply the last subscribed).
        async def both(c, contact):
            for _ in range(20):
                items = await roster_items(c)
                if contact in items and items[contact].get("subscription") == "both":
                    return items
                await asyncio.sleep(0.2)
            raise AssertionError(
                f"{c.bare}'s roster does not show {contact} with subscription=both: "
                f"{ {j: i.attrib for j, i in items.items()} }"
            )

        a_items = await both(alice, b_jid)
        b_items = await both(bob, a_jid)
        assert a_items[b_jid].get("ask") is None, ET.tostring(a_items[b_jid])
        assert b_items[a_jid].get("ask") is None, ET.tostring(b_items[a_jid])

        # Presence: a fresh broadcast from alice reaches bob from alice's full JID, and vice versa.
        status = "here-" + uid()
        alice.x.send_presence(pstatus=status)
        p = await bob.wait_presence(
            lambda p: str(p["from"]) == alice.jid and p["status"] == status,
            what="alice's presence broadcast",
        )
        assert p["type"] in ("available", ""), str(p)
        status_b = "bob-" + uid()
        bob.x.send_presence(pstatus=status_b, pshow="away")
        p = await alice.wait_presence(
            lambda p: str(p["from"]) == bob.jid and p["status"] == status_b,
            what="bob's presence broadcast",
        )
        assert p["show"] == "away", str(p)

        # A second bob resource gets alice's current presence, as she last sent it (status
        # included: the server keeps it as text and reads it back), when it comes online.
        bob2 = await login(cs, server, b_jid, b_pw)
        p = await bob2.wait_presence(
            lambda p: str(p["from"]) == alice.jid and p["type"] != "unavailable",
            what="alice's presence on bob's initial presence (presence probe)",
        )
        assert p["status"] == status, str(p)

        # alice goes offline: bob sees unavailable from alice's full JID.
        alice_full = alice.jid
        await alice.close()
        await bob.wait_presence(
            lambda p: is_presence(p, "unavailable", alice_full),
            what="unavailable presence from alice on disconnect",
        )


NS_PRE_APPROVAL = "urn:xmpp:features:pre-approval"


async def roster_item_until(c: Client, contact: str, check, what: str) -> ET.Element:
    """Polls the roster until `contact`'s item satisfies `check` (the server applies
    subscription stanzas asynchronously)."""
    items = {}
    for _ in range(25):
        items = await roster_items(c)
        if contact in items and check(items[contact]):
            return items[contact]
        await asyncio.sleep(0.2)
    raise AssertionError(
        f"{c.bare}'s roster never showed {what} for {contact}: "
        f"{ {j: i.attrib for j, i in items.items()} }"
    )


@async_test
async def test_subscription_pre_approval(server):
    """RFC 6121 §3.4: a user approves a contact's subscription before it is asked for; the
    contact's later request is answered by the server, and the user is not asked."""
    (a_jid, a_pw), (b_jid, b_pw), (c_jid, c_pw) = (
        server.new_user("pa"), server.new_user("pb"), server.new_user("pc"))
    async with Clients() as cs:
        alice = await login(cs, server, a_jid, a_pw)
        bob = await login(cs, server, b_jid, b_pw)
        carol = await login(cs, server, c_jid, c_pw)
        # Offered as a stream feature after authentication.
        assert any(f.find(f"{{{NS_PRE_APPROVAL}}}sub") is not None for f in alice.features_seen), (
            f"no pre-approval feature: {[ET.tostring(f) for f in alice.features_seen]}")
        assert await roster_items(alice) == {}

        # Alice approves bob in advance: her roster shows it, bob hears nothing yet.
        alice.x.send_presence(pto=b_jid, ptype="subscribed")
        item = await roster_item_until(
            alice, b_jid, lambda i: i.get("approved") == "true", "approved='true'")
        assert item.get("subscription") == "none", ET.tostring(item)
        await alice.ping_server()
        await asyncio.sleep(0.3)
        assert not [p for p in bob.presences if p["type"] == "subscribed"], (
            "a pre-approval must not reach the contact")

        # Bob asks: the server approves for alice, bob gets her presence, alice is not asked.
        bob.x.send_presence(pto=a_jid, ptype="subscribe")
        ok = await bob.wait_presence(lambda p: p["type"] == "subscribed", what="auto-approval")
        assert str(ok["from"]) == a_jid, str(ok)
        await bob.wait_presence(
            lambda p: str(p["from"]) == alice.jid and p["type"] in ("available", ""),
            what="alice's presence after the approval")
        item = await roster_item_until(
            alice, b_jid, lambda i: i.get("subscription") == "from", "subscription='from'")
        assert item.get("approved") is None, ET.tostring(item)
        await alice.ping_server()
        assert not [p for p in alice.presences if p["type"] == "subscribe"], (
            "a pre-approved request must not be shown to the user")

        # A pre-approval withdrawn with unsubscribed is gone: carol's request reaches alice.
        alice.x.send_presence(pto=c_jid, ptype="subscribed")
        await roster_item_until(alice, c_jid, lambda i: i.get("approved") == "true", "approved")
        alice.x.send_presence(pto=c_jid, ptype="unsubscribed")
        await roster_item_until(alice, c_jid, lambda i: i.get("approved") is None,
                                "the pre-approval withdrawn")
        carol.x.send_presence(pto=a_jid, ptype="subscribe")
        sub = await alice.wait_presence(lambda p: p["type"] == "subscribe", what="carol's request")
        assert str(sub["from"]) == c_jid, str(sub)
        assert not [p for p in carol.presences if p["type"] == "subscribed"], (
            "a withdrawn pre-approval must not approve")


@async_test
async def test_no_presence_leak_without_subscription(server):
    (a_jid, a_pw), (c_jid, c_pw) = server.new_user("pl"), server.new_user("pc")
    async with Clients() as cs:
        carol = await login(cs, server, c_jid, c_pw)
        alice = await login(cs, server, a_jid, a_pw)
        status = "secret-" + uid()
        alice.x.send_presence(pstatus=status)
        await alice.ping_server()  # make sure the broadcast was processed
        await asyncio.sleep(0.5)
        leaked = [p for p in carol.presences if p["status"] == status]
        assert not leaked, f"presence sent to a non-subscriber: {leaked[0]}"


@async_test
async def test_chat_messages_both_ways(server):
    (a_jid, a_pw), (b_jid, b_pw) = server.new_user("ma"), server.new_user("mb")
    async with Clients() as cs:
        alice = await login(cs, server, a_jid, a_pw)
        bob = await login(cs, server, b_jid, b_pw)

        mid = "m1-" + uid()
        body = "hello bob ✓ <&> " + uid()
        alice.send_message(bob.jid, body, mid=mid)
        m = await bob.wait_message(lambda m: m["id"] == mid, what="alice's message")
        assert m["body"] == body
        assert str(m["from"]) == alice.jid, f"from must be alice's full JID: {m}"
        assert str(m["to"]) == bob.jid, str(m)
        assert m["type"] == "chat"

        mid2 = "m2-" + uid()
        body2 = "hi alice " + uid()
        bob.send_message(alice.jid, body2, mid=mid2)
        m = await alice.wait_message(lambda m: m["id"] == mid2, what="bob's reply")
        assert m["body"] == body2
        assert str(m["from"]) == bob.jid, str(m)

        # To the bare JID: delivered to the online resource.
        mid3 = "m3-" + uid()
        alice.send_message(b_jid, "to bare " + mid3, mid=mid3)
        m = await bob.wait_message(lambda m: m["id"] == mid3, what="message to bob's bare JID")
        assert m["body"] == "to bare " + mid3
        assert str(m["from"]) == alice.jid


@async_test
async def test_offline_message_delivered_with_delay(server):
    (a_jid, a_pw), (b_jid, b_pw) = server.new_user("oa"), server.new_user("ob")
    async with Clients() as cs:
        alice = await login(cs, server, a_jid, a_pw)
        mid = "off-" + uid()
        body = "while you were away " + uid()
        alice.send_message(b_jid, body, mid=mid)
        await alice.ping_server()
        await asyncio.sleep(0.5)
        errors = [m for m in alice.messages if m["type"] == "error"]
        assert not errors, f"offline message bounced: {errors[0]}"

        bob = await login(cs, server, b_jid, b_pw)
        m = await bob.wait_message(lambda m: m["id"] == mid, what="offline message")
        assert m["body"] == body
        assert m["from"].bare == a_jid, str(m)
        delay = m.xml.find(f"{{{NS_DELAY}}}delay")
        assert delay is not None, f"offline message without XEP-0203 delay: {m}"
        assert delay.get("stamp"), f"delay without stamp: {m}"
        stamp = delay.get("stamp")
        assert "T" in stamp and (stamp.endswith("Z") or "+" in stamp), f"bad stamp {stamp!r}"

        # Delivered once: a second session of bob does not get it again.
        bob2 = await login(cs, server, b_jid, b_pw)
        await bob2.ping_server()
        await asyncio.sleep(0.5)
        assert not [m for m in bob2.messages if m["id"] == mid], "offline message delivered twice"


@async_test
async def test_message_to_unknown_user_bounces(server):
    a_jid, a_pw = server.new_user("ua")
    async with Clients() as cs:
        alice = await login(cs, server, a_jid, a_pw)
        mid = "nx-" + uid()
        alice.send_message(f"nosuchuser{uid()}@localhost", "anyone?", mid=mid)
        err = await alice.wait_message(lambda m: m["id"] == mid, what="error bounce")
        assert err["type"] == "error", f"expected an error bounce: {err}"
        assert stanza_error_condition(err.xml) == "service-unavailable", str(err)


@async_test
async def test_vcard_set_get_and_fetch_by_other(server):
    (a_jid, a_pw), (b_jid, b_pw) = server.new_user("va"), server.new_user("vb")
    fn = "Alice " + uid()
    async with Clients() as cs:
        alice = await login(cs, server, a_jid, a_pw)
        bob = await login(cs, server, b_jid, b_pw)

        # Before any set: empty vCard (result, possibly empty) or item-not-found.
        resp = await bob.iq("get", a_jid, f"<vCard xmlns='{NS_VCARD}'/>")
        if resp["type"] == "result":
            assert resp.xml.find(f"{{{NS_VCARD}}}vCard/{{{NS_VCARD}}}FN") is None
        else:
            assert stanza_error_condition(resp.xml) == "item-not-found", str(resp)

        vcard = (
            f"<vCard xmlns='{NS_VCARD}'><FN>{fn}</FN><NICKNAME>al</NICKNAME>"
            f"<EMAIL><INTERNET/><USERID>alice@example.org</USERID></EMAIL></vCard>"
        )
        resp = await alice.iq("set", None, vcard)
        assert resp["type"] == "result", f"vCard set failed: {resp}"

        for who, to in ((alice, None), (alice, a_jid), (bob, a_jid)):
            resp = await who.iq("get", to, f"<vCard xmlns='{NS_VCARD}'/>")
            assert resp["type"] == "result", f"vCard get by {who.bare} failed: {resp}"
            card = resp.xml.find(f"{{{NS_VCARD}}}vCard")
            assert card is not None, str(resp)
            assert card.findtext(f"{{{NS_VCARD}}}FN") == fn, str(resp)
            assert card.findtext(f"{{{NS_VCARD}}}NICKNAME") == "al", str(resp)
            assert card.findtext(f"{{{NS_VCARD}}}EMAIL/{{{NS_VCARD}}}USERID") == "alice@example.org"

        # bob cannot write alice's vCard.
        resp = await bob.iq("set", a_jid, f"<vCard xmlns='{NS_VCARD}'><FN>evil</FN></vCard>")
        assert resp["type"] == "error", f"bob could set alice's vCard: {resp}"
        resp = await alice.iq("get", None, f"<vCard xmlns='{NS_VCARD}'/>")
        assert resp.xml.findtext(f"{{{NS_VCARD}}}vCard/{{{NS_VCARD}}}FN") == fn


@async_test
async def test_message_carbons(server):
    """XEP-0280 with slixmpp's carbons plugin: a user's clients that enabled carbons see the
    chats their other clients send and receive; others, private messages and the sender do not."""
    (a_jid, a_pw), (b_jid, b_pw) = server.new_user("ca"), server.new_user("cb")
    async with Clients() as cs:
        desk = await login(cs, server, a_jid, a_pw, resource="desk")
        phone = await login(cs, server, a_jid, a_pw, resource="phone")
        tablet = await login(cs, server, a_jid, a_pw, resource="tablet")
        bob = await login(cs, server, b_jid, b_pw)

        info = await desk.iq("get", server.domain, "<query xmlns='http://jabber.org/protocol/disco#info'/>")
        features = {f.get("var") for f in info.xml.iter("{http://jabber.org/protocol/disco#info}feature")}
        assert "urn:xmpp:carbons:2" in features, features

        copies = {}
        for c in (desk, phone, tablet):
            c.x.register_plugin("xep_0280")
            copies[c] = {"received": [], "sent": []}
            c.x.add_event_handler(
                "carbon_received",
                lambda m, c=c: (copies[c]["received"].append(m["carbon_received"]), c._poke()))
            c.x.add_event_handler(
                "carbon_sent",
                lambda m, c=c: (copies[c]["sent"].append(m["carbon_sent"]), c._poke()))
        await desk.x.plugin["xep_0280"].enable()
        await phone.x.plugin["xep_0280"].enable()

        def bodies(c, kind):
            return [str(m["body"]) for m in copies[c][kind]]

        # Bob writes to alice's desk: the phone gets a received copy, the tablet (carbons off)
        # and the desk itself (it has the message) get none.
        bob.x.send_message(mto=desk.jid, mbody="to the desk", mtype="chat")
        await desk.wait_message(lambda m: m["body"] == "to the desk", what="bob's chat")
        await phone.wait_until(lambda: "to the desk" in bodies(phone, "received"),
                               what="received carbon on the phone")
        copy = copies[phone]["received"][0]
        assert str(copy["from"]) == bob.jid and str(copy["to"]) == desk.jid, str(copy)

        # The desk writes to bob: the phone gets a sent copy.
        desk.x.send_message(mto=bob.jid, mbody="from the desk", mtype="chat")
        await bob.wait_message(lambda m: m["body"] == "from the desk", what="alice's chat")
        await phone.wait_until(lambda: "from the desk" in bodies(phone, "sent"),
                               what="sent carbon on the phone")
        assert str(copies[phone]["sent"][0]["from"]) == desk.jid

        # A private message (XEP-0280 §7) is not copied.
        private = desk.x.make_message(mto=bob.jid, mbody="just here", mtype="chat")
        private.xml.append(ET.fromstring("<private xmlns='urn:xmpp:carbons:2'/>"))
        private.xml.append(ET.fromstring("<no-copy xmlns='urn:xmpp:hints'/>"))
        private.send()
        await bob.wait_message(lambda m: m["body"] == "just here", what="the private chat")

        # After disabling, the phone gets no more copies.
        await phone.x.plugin["xep_0280"].disable()
        bob.x.send_message(mto=desk.jid, mbody="after disable", mtype="chat")
        await desk.wait_message(lambda m: m["body"] == "after disable", what="bob's second chat")
        for c in (desk, phone, tablet, bob):
            await c.ping_server()
        await asyncio.sleep(0.3)
        assert bodies(phone, "received") == ["to the desk"], bodies(phone, "received")
        assert bodies(phone, "sent") == ["from the desk"], bodies(phone, "sent")
        assert copies[tablet] == {"received": [], "sent": []}, "carbons went to a client that did not enable them"
        assert copies[desk] == {"received": [], "sent": []}, "a client got copies of its own traffic"

        # A note to self (to the account's own bare JID) from the phone: the desk gets a sent
        # copy, which goes once the message is routed and archived as it arrived.
        phone.x.send_message(mto=a_jid, mbody="note to self", mtype="chat")
        await desk.wait_until(lambda: "note to self" in bodies(desk, "sent"),
                              what="sent carbon of a note to self on the desk")
        note = next(m for m in copies[desk]["sent"] if str(m["body"]) == "note to self")
        assert str(note["from"]) == phone.jid and str(note["to"]) == a_jid, str(note)


NS_BLOCKING_ERRORS = "urn:xmpp:blocking:errors"


async def subscribe(watcher: Client, watched: Client):
    """`watcher` subscribes to `watched`'s presence, approved."""
    watcher.x.send_presence(pto=watched.bare, ptype="subscribe")
    await watched.wait_presence(lambda p: p["type"] == "subscribe" and str(p["from"]) == watcher.bare,
                                what="subscription request")
    watched.x.send_presence(pto=watcher.bare, ptype="subscribed")
    await watcher.wait_presence(lambda p: p["type"] == "subscribed", what="approval")


@async_test
async def test_blocking_command(server):
    """XEP-0191 with slixmpp's blocking plugin: a blocked contact cannot reach the user, sees
    the user go offline, is refused when the user writes to it; the list is pushed to the
    user's clients that asked for it, survives logins, and unblocking restores everything."""
    (a_jid, a_pw), (b_jid, b_pw), (c_jid, c_pw) = (
        server.new_user("ba"), server.new_user("bb"), server.new_user("bc"))
    async with Clients() as cs:
        alice = await login(cs, server, a_jid, a_pw)
        other = await login(cs, server, a_jid, a_pw)  # another client of alice's
        bob = await login(cs, server, b_jid, b_pw)
        carol = await login(cs, server, c_jid, c_pw)
        for c in (alice, other):
            c.x.register_plugin("xep_0191")
        pushes = []
        other.x.add_event_handler("blocked", lambda iq: (pushes.append(iq), other._poke()))

        info = await alice.iq("get", server.domain, "<query xmlns='http://jabber.org/protocol/disco#info'/>")
        assert "urn:xmpp:blocking" in {
            f.get("var") for f in info.xml.iter("{http://jabber.org/protocol/disco#info}feature")}
        await subscribe(bob, alice)
        assert await other.x.plugin["xep_0191"].get_blocked_jids() == set()

        await alice.x.plugin["xep_0191"].block([b_jid, carol.jid])
        assert {str(j) for j in await alice.x.plugin["xep_0191"].get_blocked_jids()} == {b_jid, carol.jid}
        await other.wait_until(lambda: pushes, what="the block push")
        assert {str(i["jid"]) for i in pushes[0]["block"]["items"]} == {b_jid, carol.jid}
        # Bob, who saw alice online, sees her leave.
        await bob.wait_presence(lambda p: str(p["from"]) == alice.jid and p["type"] == "unavailable",
                                what="alice unavailable after the block")

        # Bob cannot reach alice: his message bounces as if she were not there.
        bob.x.send_message(mto=a_jid, mbody="let me in", mtype="chat")
        err = await bob.wait_message(lambda m: m["type"] == "error", what="bounce")
        assert stanza_error_condition(err.xml) == "service-unavailable", str(err)
        # Alice cannot write to him either.
        alice.x.send_message(mto=b_jid, mbody="hello?", mtype="chat")
        err = await alice.wait_message(lambda m: m["type"] == "error", what="blocked error")
        assert stanza_error_condition(err.xml) == "not-acceptable", str(err)
        assert err.xml.find(f".//{{{NS_BLOCKING_ERRORS}}}blocked") is not None, str(err)
        # A full-JID block is only that resource: carol's other client gets through.
        carol2 = await login(cs, server, c_jid, c_pw)
        carol2.x.send_message(mto=a_jid, mbody="from the other carol", mtype="chat")
        await alice.wait_message(lambda m: m["body"] == "from the other carol", what="carol2")
        # Presence changes of alice's do not reach bob.
        alice.x.send_presence(pstatus="busy-" + uid())
        await alice.ping_server()
        await asyncio.sleep(0.3)
        assert not [m for m in alice.messages + other.messages if m["body"] == "let me in"]
        assert not [p for p in bob.presences if p["status"].startswith("busy-")]

        # The list is stored: a new login of alice's sees it.
        await alice.close()
        alice = await login(cs, server, a_jid, a_pw)
        alice.x.register_plugin("xep_0191")
        assert b_jid in {str(j) for j in await alice.x.plugin["xep_0191"].get_blocked_jids()}

        # Unblocked, bob sees alice's presence and they talk again.
        await alice.x.plugin["xep_0191"].unblock([b_jid])
        await bob.wait_presence(
            lambda p: str(p["from"]) == alice.jid and p["type"] in ("available", ""),
            what="alice's presence after unblocking")
        await chat_once(bob, alice, "welcome back")
        # Unblocking everything (an empty <unblock/>, which slixmpp cannot send) empties the list.
        await alice.x.plugin["xep_0191"].block(["spam.example"])
        resp = await alice.iq("set", None, "<unblock xmlns='urn:xmpp:blocking'/>")
        assert resp["type"] == "result", str(resp)
        assert await alice.x.plugin["xep_0191"].get_blocked_jids() == set()


async def chat_once(sender: Client, receiver: Client, body: str):
    sender.x.send_message(mto=receiver.bare, mbody=body, mtype="chat")
    await receiver.wait_message(lambda m: m["body"] == body, what=f"'{body}'")


@async_test
async def test_client_state_indication_holds_what_can_wait(server):
    """XEP-0352 with slixmpp's CSI plugin: while bob's client is inactive, alice's presence
    updates and chat states wait; her next chat message brings them, in order; becoming active
    releases the rest."""
    (a_jid, a_pw), (b_jid, b_pw) = server.new_user("sa"), server.new_user("sb")
    async with Clients() as cs:
        alice = await login(cs, server, a_jid, a_pw)
        bob = cs.add(Client(server, f"{b_jid}/phone", b_pw, mech="SCRAM-SHA-256"))
        bob.x.register_plugin("xep_0352")
        await bob.login()
        assert bob.x.plugin["xep_0352"].enabled, "the <csi/> stream feature was not offered"
        await subscribe(bob, alice)

        bob.x.plugin["xep_0352"].send_inactive()
        await bob.ping_server()  # the nonza is processed before the ping's answer
        first = "away-" + uid()
        alice.x.send_presence(pstatus=first, pshow="away")
        composing = alice.x.make_message(mto=bob.jid, mtype="chat")
        composing.xml.append(ET.fromstring("<composing xmlns='http://jabber.org/protocol/chatstates'/>"))
        composing.send()
        await alice.ping_server()
        await asyncio.sleep(0.5)
        assert not [p for p in bob.presences if p["status"] == first], "presence reached an inactive client"
        assert not [m for m in bob.messages if m["type"] == "chat"], "a chat state reached it"
        # IQs are answered at once even so.
        await bob.ping_server()

        alice.x.send_message(mto=bob.jid, mbody="wake up", mtype="chat")
        await bob.wait_message(lambda m: m["body"] == "wake up", what="the urgent message")
        got_presence = [i for i, p in enumerate(bob.presences) if p["status"] == first]
        assert got_presence, "held presence not sent with the urgent message"
        chat = [m for m in bob.messages if m["type"] == "chat"]
        composing_first = chat[0].xml.find("{http://jabber.org/protocol/chatstates}composing")
        assert composing_first is not None and chat[-1]["body"] == "wake up", [str(m) for m in chat]

        second = "dnd-" + uid()
        alice.x.send_presence(pstatus=second, pshow="dnd")
        await alice.ping_server()
        await asyncio.sleep(0.3)
        assert not [p for p in bob.presences if p["status"] == second]
        bob.x.plugin["xep_0352"].send_active()
        await bob.wait_presence(lambda p: p["status"] == second, what="presence released by <active/>")


NS_PRIVATE = "jabber:iq:private"


@async_test
async def test_private_xml_storage(server):
    """XEP-0049: bookmarks (XEP-0048) and another namespace kept per account, replaced whole,
    kept across logins, private to the account; reserved namespaces refused."""
    (a_jid, a_pw), (b_jid, b_pw) = server.new_user("px"), server.new_user("py")
    bookmarks = ("<storage xmlns='storage:bookmarks'><conference jid='room@rooms.localhost' "
                 "autojoin='true' name='Sprint'><nick>alice</nick></conference></storage>")
    async with Clients() as cs:
        alice = await login(cs, server, a_jid, a_pw)
        empty = await alice.iq("get", None, f"<query xmlns='{NS_PRIVATE}'><storage xmlns='storage:bookmarks'/></query>")
        stored = empty.xml.find(f"{{{NS_PRIVATE}}}query/{{storage:bookmarks}}storage")
        assert stored is not None and len(stored) == 0, str(empty)

        resp = await alice.iq("set", None, f"<query xmlns='{NS_PRIVATE}'>{bookmarks}"
                              f"<notes xmlns='x:notes'>pinned</notes></query>")
        assert resp["type"] == "result", str(resp)
        resp = await alice.iq("set", None, f"<query xmlns='{NS_PRIVATE}'><x xmlns='jabber:client'/></query>")
        assert stanza_error_condition(resp.xml) == "not-acceptable", str(resp)

        # Bob cannot read alice's.
        bob = await login(cs, server, b_jid, b_pw)
        resp = await bob.iq("get", a_jid, f"<query xmlns='{NS_PRIVATE}'><storage xmlns='storage:bookmarks'/></query>")
        assert resp["type"] == "error" and "Sprint" not in str(resp), str(resp)
        await alice.close()

        again = await login(cs, server, a_jid, a_pw)
        resp = await again.iq("get", None, f"<query xmlns='{NS_PRIVATE}'><storage xmlns='storage:bookmarks'/></query>")
        conference = resp.xml.find(f".//{{storage:bookmarks}}conference")
        assert conference is not None and conference.get("name") == "Sprint", str(resp)
        assert conference.findtext("{storage:bookmarks}nick") == "alice", str(resp)
        resp = await again.iq("get", None, f"<query xmlns='{NS_PRIVATE}'><notes xmlns='x:notes'/></query>")
        assert resp.xml.findtext(f".//{{x:notes}}notes") == "pinned", str(resp)


@async_test
async def test_a_subscription_request_keeps_what_the_client_put_in_it(server):
    """RFC 6121 §3.1.2: the server stamps the request, it does not strip it. Clients put their
    user's nickname in it (XEP-0172 §4.1) and a status saying who asks."""
    (a_jid, a_pw), (b_jid, b_pw) = server.new_user("na"), server.new_user("nb")
    async with Clients() as cs:
        alice = await login(cs, server, a_jid, a_pw)
        bob = await login(cs, server, b_jid, b_pw)
        alice.x.send_raw(
            f"<presence to='{b_jid}' type='subscribe'>"
            "<status>It is Alice, from the sprint</status>"
            "<nick xmlns='http://jabber.org/protocol/nick'>Alice L.</nick></presence>")
        sub = await bob.wait_presence(lambda p: p["type"] == "subscribe", what="subscribe from alice")
        assert str(sub["from"]) == a_jid, str(sub)
        nick = sub.xml.find("{http://jabber.org/protocol/nick}nick")
        assert nick is not None and nick.text == "Alice L.", str(sub)
        assert sub["status"] == "It is Alice, from the sprint", str(sub)
