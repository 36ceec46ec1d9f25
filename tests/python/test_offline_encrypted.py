"""Offline storage keeps an end-to-end encrypted message that has neither a body nor a XEP-0334
<store/> hint (some OMEMO clients send no fallback body): XEP-0384 expects it to reach the
recipient's next session like any chat message. A bodiless message with nothing a person would
miss (a chat state) is still not kept."""

import xml.etree.ElementTree as ET

from conftest import server_fixture
from helpers import Clients, async_test

server = server_fixture("offline-encrypted", require_encryption=False)

OMEMO = ("<encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='7'>"
         "<key rid='1'>a2V5</key><iv>aXY=</iv></header><payload>cGF5bG9hZA==</payload></encrypted>")


@async_test
async def test_an_omemo_message_without_body_or_hint_waits_for_an_offline_recipient(server):
    (a_jid, a_pw), (b_jid, b_pw) = server.new_user("away"), server.new_user("omemo")
    async with Clients() as cs:
        bob = await cs.login(server, f"{b_jid}/r", b_pw)
        state = bob.x.make_message(mto=a_jid, mtype="chat")
        state.append(ET.fromstring("<active xmlns='http://jabber.org/protocol/chatstates'/>"))
        state.send()
        enc = bob.x.make_message(mto=a_jid, mtype="chat")
        enc.append(ET.fromstring(OMEMO))
        enc.send()
        await bob.ping_server()

        alice = await cs.login(server, f"{a_jid}/phone", a_pw)
        got = await alice.wait_message(
            lambda m: m.xml.find("{eu.siacs.conversations.axolotl}encrypted") is not None,
            what="the stored OMEMO message")
        assert got.xml.find("{eu.siacs.conversations.axolotl}encrypted/{eu.siacs.conversations.axolotl}payload").text == "cGF5bG9hZA=="
        assert not [m for m in alice.messages
                    if m.xml.find("{http://jabber.org/protocol/chatstates}active") is not None]


@async_test
async def test_a_no_store_hint_keeps_a_message_out_of_offline_storage(server):
    """XEP-0334 §4.2: <no-store/> forbids even temporary storage, body or not; a message sent
    after it with a body is stored, so the recipient's login is known to deliver storage."""
    (a_jid, a_pw), (b_jid, b_pw) = server.new_user("away"), server.new_user("hint")
    async with Clients() as cs:
        bob = await cs.login(server, f"{b_jid}/r", b_pw)
        secret = bob.x.make_message(mto=a_jid, mtype="chat", mbody="do not keep this")
        secret.append(ET.fromstring("<no-store xmlns='urn:xmpp:hints'/>"))
        secret.send()
        bob.x.send_message(mto=a_jid, mtype="chat", mbody="keep this one")
        await bob.ping_server()

        alice = await cs.login(server, f"{a_jid}/phone", a_pw)
        await alice.wait_message(lambda m: m["body"] == "keep this one", what="the stored message")
        await alice.ping_server()
        assert not [m for m in alice.messages if m["body"] == "do not keep this"]
