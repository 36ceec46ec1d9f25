"""The client scenario in aioxmpp: two accounts log in with SCRAM over STARTTLS, one sends the
other a chat message, both join a room and one hears the other there. Run by
tests/python/test_clients.py with the venv of this folder; prints one line per step done."""

import asyncio
import sys

import aioxmpp
import aioxmpp.forms
import aioxmpp.muc
import aioxmpp.security_layer
import aiosasl


async def login(jid, password, port, mechanisms):
    # aiosasl tries SCRAM before PLAIN; the test server's certificate is self-signed.
    layer = aioxmpp.make_security_layer(password, no_verify=True)
    client = aioxmpp.PresenceManagedClient(
        aioxmpp.JID.fromstr(jid), layer,
        override_peer=[("127.0.0.1", port, aioxmpp.connector.STARTTLSConnector())])
    client.presence = aioxmpp.PresenceState(True)
    return client


async def main(port, alice_jid, alice_pw, bob_jid, bob_pw, room):
    alice = await login(alice_jid, alice_pw, port, None)
    bob = await login(bob_jid, bob_pw, port, None)
    async with alice.connected() as a_stream, bob.connected() as b_stream:
        print("logged in", flush=True)
        got = asyncio.get_event_loop().create_future()

        def on_chat(msg):
            if msg.body and not got.done():
                got.set_result((str(msg.from_.bare()), msg.body.any()))

        bob.stream.register_message_callback(aioxmpp.MessageType.CHAT, None, on_chat)
        msg = aioxmpp.Message(to=aioxmpp.JID.fromstr(bob_jid), type_=aioxmpp.MessageType.CHAT)
        msg.body[None] = "hi bob from aioxmpp"
        await alice.send(msg)
        sender, body = await asyncio.wait_for(got, 10)
        assert sender == alice_jid and body == "hi bob from aioxmpp", (sender, body)
        print("chat", flush=True)

        room_jid = aioxmpp.JID.fromstr(room)
        a_room, a_fut = alice.summon(aioxmpp.MUCClient).join(room_jid, "alice")
        await asyncio.wait_for(a_fut, 10)
        # Alice created the room: she submits its configuration form as it came (§10.1.3).
        a_muc = alice.summon(aioxmpp.MUCClient)
        form = await a_muc.get_room_config(room_jid)
        form.type_ = aioxmpp.forms.DataType.SUBMIT
        await a_muc.set_room_config(room_jid, form)
        b_room, b_fut = bob.summon(aioxmpp.MUCClient).join(room_jid, "bob")
        await asyncio.wait_for(b_fut, 10)
        print("joined", flush=True)
        heard = asyncio.get_event_loop().create_future()

        def on_message(message, member, source, **kwargs):
            if member is not None and member.nick == "bob" and message.body and not heard.done():
                heard.set_result(message.body.any())

        a_room.on_message.connect(on_message)
        reply = aioxmpp.Message(type_=aioxmpp.MessageType.GROUPCHAT)
        reply.body[None] = "hello room from aioxmpp"
        await b_room.send_message(reply)
        assert await asyncio.wait_for(heard, 10) == "hello room from aioxmpp"
        print("groupchat", flush=True)


if __name__ == "__main__":
    port, a, apw, b, bpw, room = sys.argv[1:]
    asyncio.run(main(int(port), a, apw, b, bpw, room))
