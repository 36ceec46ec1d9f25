"""MUC push (issue 16 item 5): a client registers its push service with a room (urn:salon:
muc-push:0) and gets a token; while the client is offline, every message of the room sends the
service a XEP-0357 summary (count, sender's occupant JID, no body), nothing while it is
attached; the token removes the registration, only its account may use it, guests may not
register. The push
service is a slixmpp client, as in test_push.py."""

import asyncio

from conftest import server_fixture
from helpers import Clients, async_test
from test_muc import anon_login, cond, create_room, join, muc_login, new_room, send_groupchat, is_groupchat
from test_push import PushService

NS = "urn:salon:muc-push:0"

server = server_fixture("muc-push", require_encryption=False,
                        muc={"guest_slow_mode_seconds": 0})


@async_test
async def test_a_room_pushes_every_message_while_the_client_is_away_until_the_token_removes_it(server):
    async with Clients() as cs:
        (p_jid, p_pw) = server.new_user("pushsvc")
        service = PushService(await cs.login(server, f"{p_jid}/svc", p_pw))
        service_jid = f"{p_jid}/svc"
        bob = await muc_login(cs, server)
        phone_account = server.new_user("phone")
        phone = await muc_login(cs, server, account=phone_account)
        room = new_room(server)
        await create_room(bob, room, "bob")
        await join(phone, room, "phone")

        resp = await phone.iq("set", room, f"<enable xmlns='{NS}' jid='{service_jid}' node='room-node'/>")
        assert resp["type"] == "result", str(resp)
        token = resp.xml.find(f"{{{NS}}}registered").get("token")
        assert token and len(token) >= 20, str(resp)

        # Attached: the phone hears the room itself, nothing is pushed.
        send_groupchat(bob, room, "while you are here")
        await phone.wait_message(is_groupchat(room, "while you are here"))

        await phone.close()
        await asyncio.sleep(0.3)
        send_groupchat(bob, room, "one")
        send_groupchat(bob, room, "two")
        await service.wait(2)
        await asyncio.sleep(0.3)
        assert len(service.published) == 2, [str(p) for p in service.published]
        first, second = (PushService.summary(p) for p in service.published)
        assert first == ("room-node", {"FORM_TYPE": "urn:xmpp:push:summary", "message-count": "1",
                                       "last-message-sender": f"{room}/bob"}), first
        assert second[1]["message-count"] == "2", second
        assert all(p.get("from") == room for p in service.published)

        # Someone else's account cannot remove it with the token; the phone's account can.
        refused = await bob.iq("set", room, f"<disable xmlns='{NS}' token='{token}'/>")
        assert cond(refused) == "item-not-found", str(refused)
        back = await muc_login(cs, server, account=phone_account)
        removed = await back.iq("set", room, f"<disable xmlns='{NS}' token='{token}'/>")
        assert removed["type"] == "result", str(removed)
        send_groupchat(bob, room, "three")
        await bob.wait_message(is_groupchat(room, "three"))
        await asyncio.sleep(0.5)
        assert len(service.published) == 2, "pushed after the registration was removed"

        # Guests of the anonymous host cannot register.
        guest = await anon_login(cs, server)
        await join(guest, room, "guest")
        no = await guest.iq("set", room, f"<enable xmlns='{NS}' jid='{service_jid}' node='g'/>")
        assert cond(no) == "not-allowed", str(no)


@async_test
async def test_a_room_registration_survives_a_restart(server):
    """The registration is stored: after a restart the room still wakes the away phone."""
    (p_jid, p_pw) = server.new_user("pushsvc")
    service_jid = f"{p_jid}/svc"
    bob_account, phone_account = server.new_user("owner"), server.new_user("phone")
    room = new_room(server)
    async with Clients() as cs:
        bob = await muc_login(cs, server, account=bob_account)
        await create_room(bob, room, "bob", config={"muc#roomconfig_persistentroom": True})
        phone = await muc_login(cs, server, account=phone_account)
        await join(phone, room, "phone")
        resp = await phone.iq("set", room, f"<enable xmlns='{NS}' jid='{service_jid}' node='kept'/>")
        assert resp["type"] == "result", str(resp)
    server.restart()
    async with Clients() as cs:
        service = PushService(await cs.login(server, service_jid, p_pw))
        bob = await muc_login(cs, server, account=bob_account)
        await join(bob, room, "bob")
        send_groupchat(bob, room, "after the restart")
        await service.wait(1)
        node, fields = PushService.summary(service.published[0])
        assert node == "kept" and fields["message-count"] == "1", fields
        assert fields["last-message-sender"] == f"{room}/bob", fields
