"""Avatars and nicknames on PEP: XEP-0084 avatars converted to and from the vCard photo
(XEP-0398, XEP-0054), the avatar's hash in the account's presence (XEP-0153), and XEP-0172
nicknames, driven by slixmpp's xep_0084, xep_0054, xep_0153 and xep_0172 plugins."""

import base64
import hashlib
import subprocess
from pathlib import Path

import pytest

from conftest import server_fixture
from helpers import Client, Clients, async_test, uid
from test_pep import subscribe

server = server_fixture("pep-avatars", require_encryption=True)

NS_UPDATE = "vcard-temp:x:update"
NICK = "http://jabber.org/protocol/nick"
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
GIF = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"


async def login(cs, server, jid, pw, plugins=()):
    c = cs.add(Client(server, f"{jid}/r{uid()}", pw, send_presence=False))
    for plugin in ("xep_0004", "xep_0030", "xep_0060", "xep_0115", "xep_0163", *plugins):
        c.x.register_plugin(plugin)
    await c.login()
    await c.x.plugin["xep_0115"].update_caps(broadcast=False)
    c.x.send_presence()
    return c


def photo_hash(presence):
    x = presence.xml.find(f"{{{NS_UPDATE}}}x")
    return None if x is None else x.findtext(f"{{{NS_UPDATE}}}photo")


@async_test
async def test_a_pep_avatar_becomes_the_vcard_photo_and_the_presence_hash(server):
    (a_jid, a_pw), (b_jid, b_pw) = server.new_user("aa"), server.new_user("ab")
    async with Clients() as cs:
        alice = await login(cs, server, a_jid, a_pw, plugins=("xep_0084",))
        bob = await login(cs, server, b_jid, b_pw, plugins=("xep_0054", "xep_0084"))
        info = await bob.x.plugin["xep_0030"].get_info(a_jid, local=False)
        assert "urn:xmpp:pep-vcard-conversion:0" in info["disco_info"]["features"]
        await subscribe(bob, alice)

        # An avatar for contacts only (the node's default access, presence) stays out of the
        # world-readable vCard (XEP-0398 §7).
        await alice.x.plugin["xep_0084"].publish_avatar(GIF)
        await alice.x.plugin["xep_0084"].publish_avatar_metadata(
            [{"id": hashlib.sha1(GIF).hexdigest(), "type": "image/gif", "bytes": len(GIF)}])
        vcard = (await bob.x.plugin["xep_0054"].get_vcard(a_jid, local=False, cached=False))["vcard_temp"]
        assert not vcard["PHOTO"]["BINVAL"]

        # Made open, it is copied.
        digest = hashlib.sha1(PNG).hexdigest()
        form = alice.x.plugin["xep_0004"].make_form(ftype="submit")
        form.add_field(var="FORM_TYPE", ftype="hidden",
                       value="http://jabber.org/protocol/pubsub#node_config")
        form.add_field(var="pubsub#access_model", value="open")
        await alice.x.plugin["xep_0060"].set_node_config(a_jid, "urn:xmpp:avatar:data", form)
        await alice.x.plugin["xep_0084"].publish_avatar(PNG)
        await alice.x.plugin["xep_0084"].publish_avatar_metadata(
            [{"id": digest, "type": "image/png", "bytes": len(PNG)}])
        # Bob's client asked for metadata notifications (+notify): it hears of the new avatar.
        await bob.wait_message(
            lambda m: m["pubsub_event"]["items"]["node"] == "urn:xmpp:avatar:metadata"
            and m["pubsub_event"]["items"]["item"]["id"] == digest,
            what="avatar metadata notification")

        # A vCard-only client sees it as the vCard photo.
        vcard = (await bob.x.plugin["xep_0054"].get_vcard(a_jid, local=False, cached=False))["vcard_temp"]
        assert vcard["PHOTO"]["TYPE"] == "image/png"
        assert vcard["PHOTO"]["BINVAL"] == PNG

        # The next presence Alice sends carries the hash, whatever her client put there...
        alice.x.send_presence(pstatus="new look")
        p = await bob.wait_presence(
            lambda p: p["from"].bare == a_jid and p["status"] == "new look", what="presence")
        assert photo_hash(p) == digest, p
        # ... unless it says it has none (an empty <photo/>, XEP-0398 §5).
        alice.x.send_raw("<presence><status>no face</status>"
                         f"<x xmlns='{NS_UPDATE}'><photo/></x></presence>")
        p = await bob.wait_presence(
            lambda p: p["from"].bare == a_jid and p["status"] == "no face", what="presence")
        assert photo_hash(p) in ("", None), p


@async_test
async def test_a_vcard_photo_becomes_a_pep_avatar(server):
    (c_jid, c_pw), (d_jid, d_pw) = server.new_user("ac"), server.new_user("ad")
    async with Clients() as cs:
        carol = await login(cs, server, c_jid, c_pw, plugins=("xep_0054", "xep_0153"))
        dave = await login(cs, server, d_jid, d_pw, plugins=("xep_0084",))
        await subscribe(dave, carol)
        await carol.x.plugin["xep_0153"].set_avatar(avatar=GIF, mtype="image/gif")

        digest = hashlib.sha1(GIF).hexdigest()
        metadata = await dave.x.plugin["xep_0060"].get_items(c_jid, "urn:xmpp:avatar:metadata")
        infos = metadata.xml.iter("{urn:xmpp:avatar:metadata}info")
        assert [(i.get("id"), i.get("type"), int(i.get("bytes"))) for i in infos] == \
            [(digest, "image/gif", len(GIF))]
        data = await dave.x.plugin["xep_0084"].retrieve_avatar(c_jid, digest)
        assert data["pubsub"]["items"]["item"]["avatar_data"]["value"] == GIF
        p = await dave.wait_presence(
            lambda p: p["from"].bare == c_jid and photo_hash(p) == digest,
            what="presence with the photo hash")
        assert p["type"] == "available"


@async_test
async def test_nicknames_reach_contacts_that_ask(server):
    (a_jid, a_pw), (b_jid, b_pw) = server.new_user("na"), server.new_user("nb")
    async with Clients() as cs:
        alice = await login(cs, server, a_jid, a_pw, plugins=("xep_0172",))
        bob = await login(cs, server, b_jid, b_pw, plugins=("xep_0172",))
        await subscribe(bob, alice)
        await alice.x.plugin["xep_0172"].publish_nick("Ally")
        m = await bob.wait_message(
            lambda m: m["pubsub_event"]["items"]["node"] == NICK, what="nick notification")
        assert m["pubsub_event"]["items"]["item"]["nick"]["nick"] == "Ally"


def test_aioxmpp_avatar_becomes_the_vcard_photo(server):
    repo = Path(__file__).resolve().parents[2]
    python = repo / "tests/aioxmpp/.venv/bin/python"
    if not python.exists():
        pytest.skip("tests/aioxmpp/.venv is missing: tests/run-python.sh creates it")
    (a_jid, a_pw), (b_jid, b_pw) = server.new_user("xa"), server.new_user("xb")
    res = subprocess.run(
        [str(python), str(repo / "tests/aioxmpp/avatar.py"), str(server.c2s_port),
         a_jid, a_pw, b_jid, b_pw],
        capture_output=True, text=True, timeout=60)
    steps = res.stdout.split()
    assert res.returncode == 0 and steps[-1:] == ["metadata"], (
        f"aioxmpp stopped after {steps}:\n{res.stderr[-3000:]}\n{server.log_tail(40)}")
