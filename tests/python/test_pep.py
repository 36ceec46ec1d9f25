"""Personal Eventing Protocol (XEP-0163, on XEP-0060), driven by slixmpp's pubsub, PEP and
entity-capabilities plugins: publishing, notifications to the owner's clients and to contacts
whose clients asked for the node (+notify), the last item on coming online, access models,
publish-options preconditions, limits, guests, and items surviving a restart."""

import asyncio
import xml.etree.ElementTree as ET

from slixmpp.exceptions import IqError

from conftest import server_fixture, start_server
from helpers import Client, Clients, async_test, uid

server = server_fixture("pep", require_encryption=True)

NS_EVENT = "http://jabber.org/protocol/pubsub#event"
NS_ERRORS = "http://jabber.org/protocol/pubsub#errors"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NODE = "urn:salon:test:mood"


async def login(cs, server, jid, password, interests=(), caps=True, resource=None):
    """A client with slixmpp's pubsub plugins that announces, in its first presence, entity
    capabilities with `NODE+notify` for each of `interests`."""
    c = cs.add(Client(server, f"{jid}/{resource or 'r' + uid()}", password,
                      send_presence=not caps))
    for plugin in ("xep_0004", "xep_0030", "xep_0060", "xep_0115", "xep_0163"):
        c.x.register_plugin(plugin)
    await c.login()
    if caps:
        for node in interests:
            c.x.plugin["xep_0030"].add_feature(f"{node}+notify")
        await c.x.plugin["xep_0115"].update_caps(broadcast=False)
        c.x.send_presence()
    return c


async def subscribe(contact, owner):
    """`contact` subscribes to `owner`'s presence, and `owner` approves."""
    contact.x.send_presence(pto=owner.bare, ptype="subscribe")
    await owner.wait_presence(
        lambda p: p["type"] == "subscribe" and p["from"].bare == contact.bare,
        what=f"subscribe from {contact.bare}")
    owner.x.send_presence(pto=contact.bare, ptype="subscribed")
    await contact.wait_presence(
        lambda p: p["type"] == "subscribed" and p["from"].bare == owner.bare,
        what=f"subscribed from {owner.bare}")


def payload(text, node=NODE):
    return ET.fromstring(f"<mood xmlns='{node}'><text>{text}</text></mood>")


def options(**fields):
    form = {"FORM_TYPE": "http://jabber.org/protocol/pubsub#publish-options"}
    form.update({f"pubsub#{k}": v for k, v in fields.items()})
    return form


async def publish(client, text, item_id=None, node=NODE, **fields):
    form = None
    if fields:
        form = client.x.plugin["xep_0004"].make_form(ftype="submit")
        for var, value in options(**fields).items():
            form.add_field(var=var, value=value,
                           ftype="hidden" if var == "FORM_TYPE" else None)
    return await client.x.plugin["xep_0060"].publish(
        client.bare, node, id=item_id, payload=payload(text, node), options=form)


def events(client, node=NODE):
    """The pubsub events `client` received about `node`: ('item', id, text, delayed),
    ('retract', id), ('delete',) or ('purge',)."""
    found = []
    for m in client.messages:
        event = m.xml.find(f"{{{NS_EVENT}}}event")
        if event is None:
            continue
        assert m["type"] == "headline", str(m)
        for child in event:
            if child.get("node") != node:
                continue
            kind = child.tag.split("}")[1]
            if kind == "items":
                for item in child:
                    if item.tag == f"{{{NS_EVENT}}}item":
                        text = item.findtext(f"{{{node}}}mood/{{{node}}}text")
                        delayed = m.xml.find("{urn:xmpp:delay}delay") is not None
                        found.append(("item", item.get("id"), text, delayed))
                    else:
                        found.append(("retract", item.get("id")))
            else:
                found.append((kind,))
    return found


async def wait_event(client, wanted):
    return await client.wait_until(lambda: wanted in events(client), what=f"event {wanted}")


async def items(client, owner, node=NODE, **kwargs):
    """(item ids, texts) of `owner`'s node, or the error condition and pubsub condition."""
    try:
        result = await client.x.plugin["xep_0060"].get_items(owner, node, **kwargs)
    except IqError as e:
        error = e.iq.xml.find("{jabber:client}error")
        pubsub = [c.tag.split("}")[1] for c in error if c.tag.startswith(f"{{{NS_ERRORS}}}")]
        return (e.iq["error"]["condition"], pubsub[0] if pubsub else None)
    found = result.xml.find("{http://jabber.org/protocol/pubsub}pubsub/"
                            "{http://jabber.org/protocol/pubsub}items")
    return [(i.get("id"), i.findtext(f"{{{node}}}mood/{{{node}}}text")) for i in found]


@async_test
async def test_the_account_announces_pep(server):
    jid, pw = server.new_user("pd")
    async with Clients() as cs:
        alice = await login(cs, server, jid, pw, caps=False)
        info = await alice.x.plugin["xep_0030"].get_info(jid, local=False)
        query = info.xml.find(f"{{{NS_DISCO_INFO}}}query")
        identities = {(i.get("category"), i.get("type")) for i in query.iter(f"{{{NS_DISCO_INFO}}}identity")}
        features = {f.get("var") for f in query.iter(f"{{{NS_DISCO_INFO}}}feature")}
        assert ("pubsub", "pep") in identities, identities
        pubsub = "http://jabber.org/protocol/pubsub#"
        for feature in ("publish", "auto-create", "publish-options", "access-presence",
                        "access-whitelist", "retract-items", "retrieve-items"):
            assert pubsub + feature in features, feature
        # What does not work is not announced.
        assert pubsub + "subscribe" not in features


@async_test
async def test_notifications_reach_own_resources_and_contacts_that_want_them(server):
    (a_jid, a_pw), (b_jid, b_pw), (c_jid, c_pw) = (
        server.new_user("pa"), server.new_user("pb"), server.new_user("pc"))
    async with Clients() as cs:
        # Bob and Carol receive Alice's presence.
        alice0 = await login(cs, server, a_jid, a_pw, caps=False)
        bob0 = await login(cs, server, b_jid, b_pw, caps=False)
        carol0 = await login(cs, server, c_jid, c_pw, caps=False)
        await subscribe(bob0, alice0)
        await subscribe(carol0, alice0)
        for c in (alice0, bob0, carol0):
            await c.close()

        alice1 = await login(cs, server, a_jid, a_pw, interests=[NODE])
        result = await publish(alice1, "first", "m1")
        assert result["pubsub"]["publish"]["item"]["id"] == "m1"

        # Clients coming online with NODE+notify get the last item, marked as delayed: Alice's
        # other client and Bob. Carol's client does not ask for the node.
        alice2 = await login(cs, server, a_jid, a_pw, interests=[NODE])
        bob = await login(cs, server, b_jid, b_pw, interests=[NODE])
        carol = await login(cs, server, c_jid, c_pw, interests=["urn:salon:test:other"])
        await wait_event(alice2, ("item", "m1", "first", True))
        await wait_event(bob, ("item", "m1", "first", True))
        await carol.ping_server()

        await publish(alice1, "second", "m2")
        for c in (alice1, alice2, bob):
            await wait_event(c, ("item", "m2", "second", False))

        await alice1.x.plugin["xep_0060"].retract(a_jid, NODE, "m2", notify=True)
        for c in (alice2, bob):
            await wait_event(c, ("retract", "m2"))
        # The node keeps one item by default: m2 replaced m1, and is gone now.
        assert await items(bob, a_jid) == []

        await alice1.x.plugin["xep_0060"].delete_node(a_jid, NODE)
        for c in (alice2, bob):
            await wait_event(c, ("delete",))
        assert await items(alice1, a_jid) == ("item-not-found", None)

        # By now Bob received everything; Carol, who did not ask, nothing.
        await carol.ping_server()
        assert events(carol) == [], events(carol)
        assert events(bob) == [("item", "m1", "first", True), ("item", "m2", "second", False),
                               ("retract", "m2"), ("delete",)], events(bob)


@async_test
async def test_access_models_decide_who_reads(server):
    (a_jid, a_pw), (b_jid, b_pw), (d_jid, d_pw) = (
        server.new_user("qa"), server.new_user("qb"), server.new_user("qd"))
    private, public = "urn:salon:test:private", "urn:salon:test:public"
    async with Clients() as cs:
        alice = await login(cs, server, a_jid, a_pw, caps=False)
        bob = await login(cs, server, b_jid, b_pw, caps=False)
        dave = await login(cs, server, d_jid, d_pw, caps=False)
        await subscribe(bob, alice)
        await publish(alice, "presence", "p")
        await publish(alice, "secret", "s", node=private, access_model="whitelist")
        await publish(alice, "everyone", "o", node=public, access_model="open")

        # The default, presence: subscribers read, others do not.
        assert await items(bob, a_jid) == [("p", "presence")]
        assert await items(dave, a_jid) == ("not-authorized", "presence-subscription-required")
        # Whitelist: only the owner.
        assert await items(alice, a_jid, node=private) == [("s", "secret")]
        assert await items(bob, a_jid, node=private) == ("not-allowed", "closed-node")
        assert await items(dave, a_jid, node=private) == ("not-allowed", "closed-node")
        # Open: anyone.
        assert [i for i, _ in await items(dave, a_jid, node=public)] == ["o"]
        # Only the owner publishes.
        try:
            await bob.x.plugin["xep_0060"].publish(a_jid, public, id="x", payload=payload("x", public))
            raise AssertionError("bob published to alice's node")
        except IqError as e:
            assert e.iq["error"]["condition"] == "forbidden", str(e.iq)


@async_test
async def test_items_max_items_and_preconditions(server):
    jid, pw = server.new_user("ra")
    node = "urn:salon:test:list"
    async with Clients() as cs:
        alice = await login(cs, server, jid, pw, caps=False)
        for n in range(4):
            await publish(alice, f"t{n}", f"i{n}", node=node, access_model="whitelist",
                          max_items="max", persist_items="true")
        assert [i for i, _ in await items(alice, jid, node=node)] == ["i0", "i1", "i2", "i3"]
        assert [i for i, _ in await items(alice, jid, node=node, max_items=2)] == ["i2", "i3"]
        found = await items(alice, jid, node=node, item_ids=["i1"])
        assert [i for i, _ in found] == ["i1"]

        # §7.1.5: the node is not open, so a publish that requires it fails and stores nothing.
        try:
            await publish(alice, "nope", "bad", node=node, access_model="open")
            raise AssertionError("a publish with an unmet precondition succeeded")
        except IqError as e:
            assert e.iq["error"]["condition"] == "conflict", str(e.iq)
            assert e.iq.xml.find(f"{{jabber:client}}error/{{{NS_ERRORS}}}precondition-not-met") is not None
        assert "bad" not in [i for i, _ in await items(alice, jid, node=node)]
        config = await alice.x.plugin["xep_0060"].get_node_config(jid, node)
        form = config["pubsub_owner"]["configure"]["form"]
        assert form.get_values()["pubsub#access_model"] == "whitelist"

        # The default node keeps one item.
        await publish(alice, "a", "one")
        await publish(alice, "b", "two")
        assert await items(alice, jid) == [("two", "b")]


@async_test
async def test_limits_are_enforced(tmp_path_factory):
    small = start_server(tmp_path_factory, "pep-limits",
                         pep={"max_item_bytes": 300, "max_nodes_per_account": 2})
    try:
        jid, pw = small.new_user("la")
        async with Clients() as cs:
            alice = await login(cs, small, jid, pw, caps=False)
            try:
                await publish(alice, "x" * 400, "big")
                raise AssertionError("an item over max_item_bytes was accepted")
            except IqError as e:
                assert e.iq["error"]["condition"] == "not-acceptable", str(e.iq)
            await publish(alice, "1", node="urn:salon:test:n1")
            await publish(alice, "2", node="urn:salon:test:n2")
            try:
                await publish(alice, "3", node="urn:salon:test:n3")
                raise AssertionError("a node over max_nodes_per_account was created")
            except IqError as e:
                assert e.iq["error"]["condition"] == "resource-constraint", str(e.iq)
    finally:
        small.stop()


@async_test
async def test_guests_have_pep_in_memory(server):
    async with Clients() as cs:
        guest = cs.add(Client(server, server.anon_domain, "", mech="ANONYMOUS"))
        for plugin in ("xep_0004", "xep_0030", "xep_0060"):
            guest.x.register_plugin(plugin)
        await guest.login()
        await publish(guest, "visiting", "g")
        assert await items(guest, guest.bare) == [("g", "visiting")]


@async_test
async def test_items_and_configuration_survive_a_restart(server):
    jid, pw = server.new_user("sa")
    node = "urn:salon:test:kept"
    async with Clients() as cs:
        alice = await login(cs, server, jid, pw, caps=False)
        await publish(alice, "kept", "k1", node=node, access_model="whitelist", max_items="max")
        await publish(alice, "kept too", "k2", node=node, access_model="whitelist", max_items="max")
        await alice.close()
    server.restart()
    async with Clients() as cs:
        alice = await login(cs, server, jid, pw, caps=False)
        assert await items(alice, jid, node=node) == [("k1", "kept"), ("k2", "kept too")]
        config = await alice.x.plugin["xep_0060"].get_node_config(jid, node)
        values = config["pubsub_owner"]["configure"]["form"].get_values()
        assert values["pubsub#access_model"] == "whitelist"
        assert values["pubsub#max_items"] == "max"
