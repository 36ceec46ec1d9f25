"""Room avatars (XEP-0486): an owner sets a vCard with a photo on the room's address (slixmpp's
xep_0054 plugin), anyone reads it, the hash is in the room's disco#info and reaches the
occupants with status 104 and a presence from the room; only owners set it; an empty vCard
removes it; it survives a restart."""

import base64
import hashlib

from slixmpp.exceptions import IqError

from conftest import server_fixture
from helpers import Clients, async_test
from test_muc import create_room, join, muc_login, new_room, status_codes

server = server_fixture("muc-avatar", require_encryption=True, muc={"guest_slow_mode_seconds": 0})

NS_UPDATE = "vcard-temp:x:update"
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


def photo_vcard(c):
    vcard = c.x.plugin["xep_0054"].make_vcard()
    vcard["PHOTO"]["TYPE"] = "image/png"
    vcard["PHOTO"]["BINVAL"] = PNG
    return vcard


PROSODY_FIELD = "{http://modules.prosody.im/mod_vcard_muc}avatar#sha1"


async def avatar_hashes(c, room, var="muc#roominfo_avatarhash"):
    info = await c.x.plugin["xep_0030"].get_info(jid=room, local=False)
    assert "vcard-temp" in info["disco_info"]["features"]
    for form in info.xml.iter("{jabber:x:data}x"):
        for field in form.iter("{jabber:x:data}field"):
            if field.get("var") == var:
                return [v.text for v in field.iter("{jabber:x:data}value")]
    return []


@async_test
async def test_owners_set_a_room_avatar_everyone_sees(server):
    room = new_room(server, "avatar")
    digest = hashlib.sha1(PNG).hexdigest()
    async with Clients() as cs:
        owner = await muc_login(cs, server)
        guest = await muc_login(cs, server)
        for c in (owner, guest):
            c.x.register_plugin("xep_0054")
        await create_room(owner, room, config={"muc#roomconfig_persistentroom": True})
        await join(guest, room, "guest")
        service = await guest.x.plugin["xep_0030"].get_info(jid=server.muc_domain, local=False)
        assert "vcard-temp" in service["disco_info"]["features"]
        assert await avatar_hashes(guest, room) == []

        # Only owners set it (XEP-0486 §3.2).
        try:
            await guest.x.plugin["xep_0054"].publish_vcard(photo_vcard(guest), jid=room)
            raise AssertionError("a participant set the room's avatar")
        except IqError as e:
            assert e.iq["error"]["condition"] == "forbidden", str(e.iq)

        await owner.x.plugin["xep_0054"].publish_vcard(photo_vcard(owner), jid=room)
        await guest.wait_message(lambda m: m["from"].bare == room and "104" in status_codes(m),
                                 what="status 104")
        p = await guest.wait_presence(
            lambda p: str(p["from"]) == room and p.xml.find(f"{{{NS_UPDATE}}}x") is not None,
            what="presence from the room with the hash")
        assert p.xml.findtext(f"{{{NS_UPDATE}}}x/{{{NS_UPDATE}}}photo") == digest
        assert await avatar_hashes(guest, room) == [digest]
        assert await avatar_hashes(guest, room, PROSODY_FIELD) == [digest]
        vcard = await guest.x.plugin["xep_0054"].get_vcard(room, local=False, cached=False)
        assert vcard["vcard_temp"]["PHOTO"]["BINVAL"] == PNG

    server.restart()
    async with Clients() as cs:
        outsider = await muc_login(cs, server)
        assert await avatar_hashes(outsider, room) == [digest]


@async_test
async def test_an_empty_vcard_removes_the_room_avatar(server):
    room = new_room(server, "noavatar")
    async with Clients() as cs:
        owner = await muc_login(cs, server)
        owner.x.register_plugin("xep_0054")
        await create_room(owner, room)
        await owner.x.plugin["xep_0054"].publish_vcard(photo_vcard(owner), jid=room)
        assert len(await avatar_hashes(owner, room)) == 1
        await owner.x.plugin["xep_0054"].publish_vcard(owner.x.plugin["xep_0054"].make_vcard(), jid=room)
        assert await avatar_hashes(owner, room) == []
