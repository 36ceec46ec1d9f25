"""Private and public PEP nodes as clients use them: private storage (XEP-0223, slixmpp's
xep_0223 plugin) and an open-conversations list kept item by item with retractions notified to
the owner's other clients; OMEMO device lists and bundles on open nodes; the account's nodes in
disco#items (XEP-0060 §5.2); the publish rate limit."""

import xml.etree.ElementTree as ET

from slixmpp.exceptions import IqError
from slixmpp.xmlstream import ElementBase

from conftest import server_fixture, start_server
from helpers import Clients, async_test
from test_pep import events, login, subscribe

server = server_fixture("pep-private", require_encryption=True)

OPEN_CONVERSATIONS = "urn:salon:test:open-conversations"
DEVICES = "eu.siacs.conversations.axolotl.devicelist"
AXOLOTL = "eu.siacs.conversations.axolotl"


class Secret(ElementBase):
    namespace = "urn:salon:test:secret"
    name = "secret"
    plugin_attrib = "secret"
    interfaces = {"text"}
    sub_interfaces = {"text"}


def conversation(jid):
    return ET.fromstring(f"<mood xmlns='{OPEN_CONVERSATIONS}'><text>{jid}</text></mood>")


def private_options(client):
    form = client.x.plugin["xep_0004"].make_form(ftype="submit")
    form.add_field(var="FORM_TYPE", ftype="hidden",
                   value="http://jabber.org/protocol/pubsub#publish-options")
    for var, value in (("access_model", "whitelist"), ("max_items", "max"),
                       ("persist_items", "true")):
        form.add_field(var=f"pubsub#{var}", value=value)
    return form


def open_options(client):
    form = client.x.plugin["xep_0004"].make_form(ftype="submit")
    form.add_field(var="FORM_TYPE", ftype="hidden",
                   value="http://jabber.org/protocol/pubsub#publish-options")
    form.add_field(var="pubsub#access_model", value="open")
    return form


async def error_of(coro):
    try:
        await coro
    except IqError as e:
        return e.iq["error"]["condition"]
    raise AssertionError("the request succeeded")


@async_test
async def test_private_storage_is_the_owners_alone(server):
    (a_jid, a_pw), (b_jid, b_pw) = server.new_user("xa"), server.new_user("xb")
    async with Clients() as cs:
        alice = await login(cs, server, a_jid, a_pw, caps=False)
        alice.x.register_plugin("xep_0223")
        bob = await login(cs, server, b_jid, b_pw, caps=False)
        await subscribe(bob, alice)
        secret = Secret()
        secret["text"] = "under the mat"
        await alice.x.plugin["xep_0223"].store(secret, node=Secret.namespace, id="key")
        got = await alice.x.plugin["xep_0223"].retrieve(Secret.namespace, id="key")
        assert got.xml.findtext(".//{urn:salon:test:secret}text") == "under the mat"
        assert await error_of(
            bob.x.plugin["xep_0060"].get_items(a_jid, Secret.namespace)) == "not-allowed"


@async_test
async def test_open_conversations_change_item_by_item(server):
    (a_jid, a_pw), (b_jid, b_pw) = server.new_user("oa"), server.new_user("ob")
    async with Clients() as cs:
        bob0 = await login(cs, server, b_jid, b_pw, caps=False)
        phone = await login(cs, server, a_jid, a_pw, interests=[OPEN_CONVERSATIONS])
        laptop = await login(cs, server, a_jid, a_pw, interests=[OPEN_CONVERSATIONS])
        await subscribe(bob0, phone)
        bob = await login(cs, server, b_jid, b_pw, interests=[OPEN_CONVERSATIONS])
        pubsub = phone.x.plugin["xep_0060"]
        for peer in ("carol@example.org", "dave@example.org"):
            await pubsub.publish(a_jid, OPEN_CONVERSATIONS, id=peer, payload=conversation(peer),
                                 options=private_options(phone))
        for peer in ("carol@example.org", "dave@example.org"):
            await laptop.wait_until(
                lambda peer=peer: ("item", peer, peer, False) in events(laptop, OPEN_CONVERSATIONS),
                what=f"{peer} opened")
        await pubsub.retract(a_jid, OPEN_CONVERSATIONS, "carol@example.org", notify=True)
        await laptop.wait_until(
            lambda: ("retract", "carol@example.org") in events(laptop, OPEN_CONVERSATIONS),
            what="carol closed")
        result = await laptop.x.plugin["xep_0060"].get_items(a_jid, OPEN_CONVERSATIONS)
        assert [i["id"] for i in result["pubsub"]["items"]] == ["dave@example.org"]
        # A contact who asks for the node hears nothing of a private one.
        await bob.ping_server()
        assert events(bob, OPEN_CONVERSATIONS) == []


@async_test
async def test_omemo_keys_are_open(server):
    (a_jid, a_pw), (b_jid, b_pw), (d_jid, d_pw) = (
        server.new_user("ea"), server.new_user("eb"), server.new_user("ed"))
    async with Clients() as cs:
        alice = await login(cs, server, a_jid, a_pw, caps=False)
        bob0 = await login(cs, server, b_jid, b_pw, caps=False)
        await subscribe(bob0, alice)
        bob = await login(cs, server, b_jid, b_pw, interests=[DEVICES])
        dave = await login(cs, server, d_jid, d_pw, caps=False)
        pubsub = alice.x.plugin["xep_0060"]
        devices = ET.fromstring(f"<list xmlns='{AXOLOTL}'><device id='4242'/></list>")
        bundle = ET.fromstring(
            f"<bundle xmlns='{AXOLOTL}'><signedPreKeyPublic signedPreKeyId='1'>BQ==</signedPreKeyPublic>"
            "<signedPreKeySignature>c2ln</signedPreKeySignature><identityKey>BQ==</identityKey>"
            "<prekeys><preKeyPublic preKeyId='1'>BQ==</preKeyPublic></prekeys></bundle>")
        await pubsub.publish(a_jid, DEVICES, id="current", payload=devices,
                             options=open_options(alice))
        await pubsub.publish(a_jid, f"{AXOLOTL}.bundles:4242", id="current", payload=bundle,
                             options=open_options(alice))
        # Bob's client asked for the device list: it is notified.
        await bob.wait_message(lambda m: m["pubsub_event"]["items"]["node"] == DEVICES,
                               what="device list notification")
        # Dave, a stranger, fetches the bundle to start a session.
        got = await dave.x.plugin["xep_0060"].get_items(a_jid, f"{AXOLOTL}.bundles:4242")
        assert got.xml.find(f".//{{{AXOLOTL}}}identityKey") is not None


@async_test
async def test_disco_items_list_the_nodes_one_may_read(server):
    (a_jid, a_pw), (b_jid, b_pw), (d_jid, d_pw) = (
        server.new_user("da"), server.new_user("db"), server.new_user("dd"))
    async with Clients() as cs:
        alice = await login(cs, server, a_jid, a_pw, caps=False)
        bob = await login(cs, server, b_jid, b_pw, caps=False)
        dave = await login(cs, server, d_jid, d_pw, caps=False)
        await subscribe(bob, alice)
        pubsub = alice.x.plugin["xep_0060"]
        await pubsub.publish(a_jid, "urn:salon:test:presence", payload=conversation("p"))
        await pubsub.publish(a_jid, "urn:salon:test:open", payload=conversation("o"),
                             options=open_options(alice))
        await pubsub.publish(a_jid, "urn:salon:test:mine", payload=conversation("m"),
                             options=private_options(alice))

        async def nodes(client):
            result = await client.x.plugin["xep_0030"].get_items(jid=a_jid, local=False)
            return sorted(node for (_, node, _) in result["disco_items"]["items"])

        assert await nodes(alice) == ["urn:salon:test:mine", "urn:salon:test:open",
                                      "urn:salon:test:presence"]
        assert await nodes(bob) == ["urn:salon:test:open", "urn:salon:test:presence"]
        assert await nodes(dave) == ["urn:salon:test:open"]


@async_test
async def test_publishing_is_rate_limited(tmp_path_factory):
    small = start_server(tmp_path_factory, "pep-rate", pep={"max_publish_per_minute": 5})
    try:
        jid, pw = small.new_user("ra")
        async with Clients() as cs:
            alice = await login(cs, small, jid, pw, caps=False)
            pubsub = alice.x.plugin["xep_0060"]
            for n in range(5):
                await pubsub.publish(jid, "urn:salon:test:busy", id=str(n), payload=conversation(n))
            assert await error_of(pubsub.publish(jid, "urn:salon:test:busy", id="6",
                                                 payload=conversation(6))) == "resource-constraint"
            assert await error_of(pubsub.retract(jid, "urn:salon:test:busy", "0")) \
                == "resource-constraint"
            # Reading is not publishing.
            await pubsub.get_items(jid, "urn:salon:test:busy")
    finally:
        small.stop()


@async_test
async def test_subscriptions_and_affiliations_are_answered(server):
    (a_jid, a_pw), (b_jid, b_pw) = server.new_user("sa"), server.new_user("sb")
    async with Clients() as cs:
        alice = await login(cs, server, a_jid, a_pw, caps=False)
        bob = await login(cs, server, b_jid, b_pw, caps=False)
        await alice.x.plugin["xep_0060"].publish(a_jid, "urn:salon:test:owned",
                                                 payload=conversation("x"))
        subs = await alice.x.plugin["xep_0060"].get_subscriptions(a_jid)
        assert list(subs["pubsub"]["subscriptions"]) == []
        mine = await alice.x.plugin["xep_0060"].get_affiliations(a_jid)
        assert [(a["node"], a["affiliation"]) for a in mine["pubsub"]["affiliations"]] == \
            [("urn:salon:test:owned", "owner")]
        theirs = await bob.x.plugin["xep_0060"].get_affiliations(a_jid)
        assert list(theirs["pubsub"]["affiliations"]) == []


@async_test
async def test_the_owner_lets_members_read_a_whitelist_node(server):
    (a_jid, a_pw), (b_jid, b_pw), (d_jid, d_pw) = (
        server.new_user("wa"), server.new_user("wb"), server.new_user("wd"))
    node = "urn:salon:test:shared"
    async with Clients() as cs:
        alice = await login(cs, server, a_jid, a_pw, caps=False)
        bob = await login(cs, server, b_jid, b_pw, caps=False)
        dave = await login(cs, server, d_jid, d_pw, caps=False)
        pubsub = alice.x.plugin["xep_0060"]
        await pubsub.publish(a_jid, node, id="s", payload=conversation("s"),
                             options=private_options(alice))
        assert await error_of(bob.x.plugin["xep_0060"].get_items(a_jid, node)) == "not-allowed"

        await pubsub.modify_affiliations(a_jid, node, affiliations=[(b_jid, "member")])
        got = await pubsub.get_node_affiliations(a_jid, node)
        assert sorted((str(a["jid"]), a["affiliation"])
                      for a in got["pubsub_owner"]["affiliations"]) == \
            sorted([(a_jid, "owner"), (b_jid, "member")])
        result = await bob.x.plugin["xep_0060"].get_items(a_jid, node)
        assert [i["id"] for i in result["pubsub"]["items"]] == ["s"]
        # A member's client that asks for the node hears of it, with no presence subscription;
        # a stranger's does not.
        bob2 = await login(cs, server, b_jid, b_pw, interests=[node])
        dave2 = await login(cs, server, d_jid, d_pw, interests=[node])
        await pubsub.publish(a_jid, node, id="t", payload=conversation("t"))
        await bob2.wait_until(lambda: any(e[:2] == ("item", "t") for e in events(bob2, node)),
                              what="member notified")
        await dave2.ping_server()
        assert events(dave2, node) == []
        # Members only: a stranger still cannot, and only the owner manages them.
        assert await error_of(dave.x.plugin["xep_0060"].get_items(a_jid, node)) == "not-allowed"
        assert await error_of(bob.x.plugin["xep_0060"].modify_affiliations(
            a_jid, node, affiliations=[(d_jid, "member")])) == "forbidden"

        await pubsub.modify_affiliations(a_jid, node, affiliations=[(b_jid, "none")])
        assert await error_of(bob.x.plugin["xep_0060"].get_items(a_jid, node)) == "not-allowed"


@async_test
async def test_a_moved_statement_is_public(server):
    """XEP-0283: the old account publishes where it moved to on an open node; a contact who is
    not subscribed (the new account, say) reads it to verify the move."""
    (a_jid, a_pw), (n_jid, n_pw) = server.new_user("mo"), server.new_user("mn")
    moved = "urn:xmpp:moved:1"
    async with Clients() as cs:
        old = await login(cs, server, a_jid, a_pw, caps=False)
        new = await login(cs, server, n_jid, n_pw, caps=False)
        statement = ET.fromstring(f"<moved xmlns='{moved}'><new-jid>{n_jid}</new-jid></moved>")
        await old.x.plugin["xep_0060"].publish(a_jid, moved, id="current", payload=statement,
                                               options=open_options(old))
        got = await new.x.plugin["xep_0060"].get_items(a_jid, moved)
        assert got.xml.findtext(f".//{{{moved}}}new-jid") == n_jid
