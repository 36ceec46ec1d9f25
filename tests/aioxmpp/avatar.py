"""Avatars in aioxmpp: one account makes its avatar public and publishes it with aioxmpp's
AvatarService (XEP-0084, PEP only: its vCard synchronisation stays off), the other reads it as the vCard photo
(XEP-0054) the server converted it to (XEP-0398); the publisher reads its avatar metadata
back. Run by tests/python/test_pep_avatars.py with the venv of this folder; prints one line per
step done."""

import asyncio
import base64
import hashlib
import sys

import aioxmpp
import aioxmpp.avatar
import aioxmpp.vcard

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


def client(jid, password, port):
    layer = aioxmpp.make_security_layer(password, no_verify=True)
    c = aioxmpp.PresenceManagedClient(
        aioxmpp.JID.fromstr(jid), layer,
        override_peer=[("127.0.0.1", port, aioxmpp.connector.STARTTLSConnector())])
    c.presence = aioxmpp.PresenceState(True)
    return c


async def main(port, alice_jid, alice_pw, bob_jid, bob_pw):
    alice = client(alice_jid, alice_pw, port)
    bob = client(bob_jid, bob_pw, port)
    async with alice.connected(), bob.connected():
        print("logged in", flush=True)
        avatars = alice.summon(aioxmpp.avatar.AvatarService)
        # Alice makes her avatar public first (the data node open): only a public avatar
        # becomes the world-readable vCard photo (XEP-0398 §7).
        await alice.summon(aioxmpp.PEPClient).publish(
            "urn:xmpp:avatar:data",
            aioxmpp.avatar.xso.Data(PNG), id_=hashlib.sha1(PNG).hexdigest(), access_model="open")
        avatar_set = aioxmpp.avatar.AvatarSet()
        avatar_set.add_avatar_image("image/png", image_bytes=PNG)
        await avatars.publish_avatar_set(avatar_set)
        print("published", flush=True)

        vcard = await bob.summon(aioxmpp.vcard.VCardService).get_vcard(
            aioxmpp.JID.fromstr(alice_jid))
        assert vcard.get_photo_data() == PNG, vcard.get_photo_data()
        assert vcard.get_photo_mime_type() == "image/png"
        print("vcard", flush=True)

        descriptors = await avatars.get_avatar_metadata(
            aioxmpp.JID.fromstr(alice_jid), require_fresh=True)
        assert [d.id_ for d in descriptors] == [hashlib.sha1(PNG).hexdigest()], descriptors
        assert await descriptors[0].get_image_bytes() == PNG
        print("metadata", flush=True)


if __name__ == "__main__":
    port, a, apw, b, bpw = sys.argv[1:]
    asyncio.run(asyncio.wait_for(main(int(port), a, apw, b, bpw), 40))
