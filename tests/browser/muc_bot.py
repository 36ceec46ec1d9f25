"""A slixmpp client that joins a MUC room and reports what it sees as JSON lines on stdout.

Usage: muc_bot.py C2S_PORT ROOM_JID NICK [PASSWORD]. With a password, a room the bot creates
is password-protected with it. It logs in anonymously on anon.localhost over STARTTLS
to 127.0.0.1 (self-signed certificate, not checked). Commands on stdin, one JSON object per
line: {"say": "text"} sends a groupchat message, {"quit": true} leaves and exits.
"""

import asyncio
import json
import ssl
import sys
import xml.etree.ElementTree as ET

import slixmpp


def emit(**event):
    print(json.dumps(event), flush=True)


class Bot(slixmpp.ClientXMPP):
    def __init__(self, room, nick, password=None):
        super().__init__("anon.localhost", "", sasl_mech="ANONYMOUS")
        self.room = room
        self.nick = nick
        self.password = password
        self.register_plugin("xep_0045")
        self.register_plugin("xep_0199")
        self.add_event_handler("session_start", self.start)
        self.add_event_handler("groupchat_message", self.on_message)
        self.add_event_handler("muc::%s::got_online" % room, self.on_online)
        self.add_event_handler("muc::%s::got_offline" % room, self.on_offline)

    async def start(self, _):
        emit(event="session", jid=str(self.boundjid))
        self.send_presence()
        joined = await self.plugin["xep_0045"].join_muc_wait(self.room, self.nick, maxstanzas=0, timeout=20)
        presence = joined[0] if isinstance(joined, tuple) else joined
        if 201 in presence["muc"]["status_codes"]:
            # A new room stays locked until its owner accepts a configuration (XEP-0045 10.1.2).
            iq = self.make_iq_set(ito=self.room)
            fields = ""
            if self.password:
                fields = (
                    "<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>"
                    "<field var='muc#roomconfig_passwordprotectedroom'><value>1</value></field>"
                    f"<field var='muc#roomconfig_roomsecret'><value>{self.password}</value></field>")
            iq.append(ET.fromstring(
                "<query xmlns='http://jabber.org/protocol/muc#owner'>"
                f"<x xmlns='jabber:x:data' type='submit'>{fields}</x></query>"))
            await iq.send(timeout=10)
        emit(event="joined")
        asyncio.ensure_future(self.commands())

    def on_message(self, msg):
        if msg["mucroom"] != self.room or not msg["body"]:
            return
        emit(event="message", nick=msg["mucnick"], body=msg["body"], delayed=bool(msg["delay"]["stamp"]))

    def on_online(self, presence):
        emit(event="online", nick=presence["muc"]["nick"])

    def on_offline(self, presence):
        emit(event="offline", nick=presence["muc"]["nick"])

    async def commands(self):
        loop = asyncio.get_event_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while True:
            line = await reader.readline()
            if not line:
                break
            cmd = json.loads(line)
            if "say" in cmd:
                self.send_message(mto=self.room, mbody=cmd["say"], mtype="groupchat")
            if cmd.get("quit"):
                break
        self.disconnect()
        await asyncio.sleep(0.5)
        emit(event="quit")
        loop.stop()


def main():
    port, room, nick = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    bot = Bot(room, nick, sys.argv[4] if len(sys.argv) > 4 else None)
    # The test server has a self-signed certificate.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    bot.ssl_context = ctx
    bot.enable_starttls = True
    bot.enable_direct_tls = False
    bot.enable_plaintext = False
    bot.whitespace_keepalive = False
    bot.connect(host="127.0.0.1", port=port)
    bot.loop.run_forever()


if __name__ == "__main__":
    main()
