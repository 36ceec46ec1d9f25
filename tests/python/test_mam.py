"""Message Archive Management for accounts (XEP-0313) with stanza ids (XEP-0359), driven by
slixmpp's MAM plugin: what is archived, paging, the `with` filter, offline messages, privacy
hints, and who may read an archive."""

import asyncio
import xml.etree.ElementTree as ET

from slixmpp import JID

from conftest import server_fixture, start_server
from helpers import Client, Clients, async_test, stanza_error_condition, uid

server = server_fixture("mam", require_encryption=True)

NS_MAM = "urn:xmpp:mam:2"
NS_SID = "{urn:xmpp:sid:0}stanza-id"


async def login(cs, server, jid, password, resource=None):
    c = cs.add(Client(
        server, f"{jid}/{resource or 'r' + uid()}", password, mech="SCRAM-SHA-256"))
    c.x.register_plugin("xep_0313")
    return await c.login()


async def archive(client, with_jid=None, page=2):
    """Every message of `client`'s own archive, oldest first, paging `page` at a time:
    (archive id, forwarded message) pairs."""
    found = []
    async for result in client.x.plugin["xep_0313"].iterate(
        with_jid=JID(with_jid) if with_jid else None, rsm={"max": page}
    ):
        forwarded = result["mam_result"]["forwarded"]["stanza"]
        found.append((result["mam_result"]["id"], forwarded))
    return found


def stanza_ids(message, by):
    return [e.get("id") for e in message.xml.findall(NS_SID) if e.get("by") == by]


async def chat(sender, receiver, body):
    sender.x.send_message(mto=receiver.bare, mbody=body, mtype="chat")
    return await receiver.wait_message(lambda m: m["body"] == body, what=f"'{body}'")


@async_test
async def test_chats_are_archived_with_stanza_ids_and_paged(server):
    (a_jid, a_pw), (b_jid, b_pw), (c_jid, c_pw) = (
        server.new_user("ma"), server.new_user("mb"), server.new_user("mc"))
    async with Clients() as cs:
        alice = await login(cs, server, a_jid, a_pw)
        bob = await login(cs, server, b_jid, b_pw)
        carol = await login(cs, server, c_jid, c_pw)

        info = await alice.iq("get", a_jid, "<query xmlns='http://jabber.org/protocol/disco#info'/>")
        features = {f.get("var") for f in info.xml.iter("{http://jabber.org/protocol/disco#info}feature")}
        assert {NS_MAM, "urn:xmpp:sid:0"} <= features, features

        live = {}
        for sender, receiver, body in [
            (alice, bob, "a1"), (alice, bob, "a2"), (bob, alice, "b1"),
            (alice, bob, "a3"), (bob, alice, "b2"), (carol, alice, "c1"),
        ]:
            live[body] = await chat(sender, receiver, body)
        # Every delivered message carries the recipient's archive id, exactly one.
        for body, by in [("a1", b_jid), ("b1", a_jid), ("c1", a_jid)]:
            assert len(stanza_ids(live[body], by)) == 1, str(live[body])

        # Alice's archive: what she sent and received, in order, paged two at a time.
        mine = await archive(alice)
        assert [str(m["body"]) for _, m in mine] == ["a1", "a2", "b1", "a3", "b2", "c1"]
        sent = dict((str(m["body"]), m) for _, m in mine)
        assert str(sent["a1"]["to"]) == b_jid and str(sent["a1"]["from"]) == alice.jid
        assert str(sent["b1"]["from"]) == bob.jid
        # The ids in the archive are the ones the live messages carried.
        ids = {str(m["body"]): i for i, m in mine}
        assert ids["b1"] == stanza_ids(live["b1"], a_jid)[0]
        assert ids["c1"] == stanza_ids(live["c1"], a_jid)[0]

        # `with` narrows to one contact, whichever resource the query names.
        with_bob = await archive(alice, with_jid=b_jid)
        assert [str(m["body"]) for _, m in with_bob] == ["a1", "a2", "b1", "a3", "b2"]
        with_carol = await archive(alice, with_jid=carol.jid)
        assert [str(m["body"]) for _, m in with_carol] == ["c1"]

        # Bob's archive is his own.
        bobs = await archive(bob, page=10)
        assert [str(m["body"]) for _, m in bobs] == ["a1", "a2", "b1", "a3", "b2"]
        resp = await alice.iq("set", b_jid, f"<query xmlns='{NS_MAM}'/>")
        assert resp["type"] == "error" and stanza_error_condition(resp.xml) == "forbidden", str(resp)


@async_test
async def test_offline_messages_hints_and_forged_ids(server):
    (a_jid, a_pw), (b_jid, b_pw) = server.new_user("oa"), server.new_user("ob")
    async with Clients() as cs:
        alice = await login(cs, server, a_jid, a_pw)
        bob = await login(cs, server, b_jid, b_pw)
        await bob.close()

        # To an offline account: archived, and the offline copy carries the same id.
        alice.x.send_message(mto=b_jid, mbody="while you were out", mtype="chat")
        # A message the sender asked not to store, and one carrying a forged id for bob.
        private = alice.x.make_message(mto=b_jid, mbody="do not keep", mtype="chat")
        private.xml.append(ET.fromstring("<no-store xmlns='urn:xmpp:hints'/>"))
        private.send()
        forged = alice.x.make_message(mto=b_jid, mbody="forged id", mtype="chat")
        forged.xml.append(ET.fromstring(
            f"<stanza-id xmlns='urn:xmpp:sid:0' by='{b_jid}' id='not-from-the-server'/>"))
        forged.send()
        await alice.ping_server()

        bob = await login(cs, server, b_jid, b_pw)
        held = await bob.wait_message(lambda m: m["body"] == "while you were out",
                                      what="the offline message")
        forged_live = await bob.wait_message(lambda m: m["body"] == "forged id", what="forged")
        assert stanza_ids(forged_live, b_jid) != ["not-from-the-server"], str(forged_live)
        assert len(stanza_ids(forged_live, b_jid)) == 1, str(forged_live)

        bobs = await archive(bob, page=10)
        assert [str(m["body"]) for _, m in bobs] == ["while you were out", "forged id"]
        assert bobs[0][0] == stanza_ids(held, b_jid)[0]
        # Alice's archive keeps what she sent, except the message she marked no-store.
        alices = await archive(alice, page=10)
        assert [str(m["body"]) for _, m in alices] == ["while you were out", "forged id"]


@async_test
async def test_archive_can_be_switched_off(tmp_path_factory):
    srv = start_server(tmp_path_factory, "mam-off", archive={"enabled": False})
    try:
        (a_jid, a_pw), (b_jid, b_pw) = srv.new_user("xa"), srv.new_user("xb")
        async with Clients() as cs:
            alice = await login(cs, srv, a_jid, a_pw)
            bob = await login(cs, srv, b_jid, b_pw)
            message = await chat(alice, bob, "not archived")
            assert stanza_ids(message, b_jid) == [], str(message)
            resp = await alice.iq("set", None, f"<query xmlns='{NS_MAM}'/>")
            assert resp["type"] == "error", str(resp)
            assert stanza_error_condition(resp.xml) == "service-unavailable", str(resp)
    finally:
        srv.stop()
