"""A slixmpp client that joins a MUC room and reports what it sees as JSON lines on stdout.

Usage: muc_bot.py C2S_PORT ROOM_JID NICK [PASSWORD [CONFIG]]. With a password (empty: none), a
room the bot creates is password-protected with it; CONFIG, a JSON object of room configuration
fields (e.g. {"salon#roomconfig_guestpm": "1"}), is submitted too. It logs in anonymously on
anon.localhost over STARTTLS to 127.0.0.1 (self-signed certificate, not checked). Commands on
stdin, one JSON object per line: {"say": "text"} sends a groupchat message, {"pm": "nick",
"body": "text"} a private message (XEP-0045 §7.5), {"nick": "new"} changes the bot's nick,
{"affiliation": "owner", "jid": "bare JID"} sets an affiliation (XEP-0045 §10.3, reported as an
"affiliation" event), {"quit": true} leaves and exits. Private messages received are reported as "private" events.
"""

import asyncio
import json
import ssl
import sys
import xml.etree.ElementTree as ET

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout


def emit(**event):
    print(json.dumps(event), flush=True)


class Bot(slixmpp.ClientXMPP):
    def __init__(self, room, nick, password=None, config=None):
        super().__init__("anon.localhost", "", sasl_mech="ANONYMOUS")
        self.room = room
        self.nick = nick
        self.password = password
        self.config = dict(config or {})
        if password:
            self.config["muc#roomconfig_passwordprotectedroom"] = "1"
            self.config["muc#roomconfig_roomsecret"] = password
        self.register_plugin("xep_0045")
        self.register_plugin("xep_0199")
        self.add_event_handler("session_start", self.start)
        self.add_event_handler("groupchat_message", self.on_message)
        self.add_event_handler("message", self.on_private)
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
            query = ET.fromstring(
                "<query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query>")
            if self.config:
                form = query[0]
                for var, value in [("FORM_TYPE", "http://jabber.org/protocol/muc#roomconfig"), *self.config.items()]:
                    field = ET.SubElement(form, "{jabber:x:data}field", var=var)
                    ET.SubElement(field, "{jabber:x:data}value").text = value
            iq.append(query)
            await iq.send(timeout=10)
        emit(event="joined")
        asyncio.ensure_future(self.commands())

    def on_message(self, msg):
        if msg["mucroom"] != self.room or not msg["body"]:
            return
        emit(event="message", nick=msg["mucnick"], body=msg["body"], delayed=bool(msg["delay"]["stamp"]))

    def on_private(self, msg):
        # Private messages come from an occupant JID, as type chat (or normal).
        if msg["from"].bare != self.room or msg["type"] not in ("chat", "normal") or not msg["body"]:
            return
        emit(event="private", nick=msg["from"].resource, body=msg["body"])

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
            if "pm" in cmd:
                msg = self.make_message(mto=f"{self.room}/{cmd['pm']}", mbody=cmd["body"], mtype="chat")
                msg.append(ET.Element("{http://jabber.org/protocol/muc#user}x"))
                msg.send()
            if "nick" in cmd:
                self.send_presence(pto=f"{self.room}/{cmd['nick']}")
            if "affiliation" in cmd:
                try:
                    await self.plugin["xep_0045"].set_affiliation(self.room, cmd["affiliation"], jid=cmd["jid"])
                    emit(event="affiliation", jid=cmd["jid"], affiliation=cmd["affiliation"])
                except (IqError, IqTimeout) as e:
                    emit(event="error", command="affiliation", error=str(e))
            if cmd.get("quit"):
                break
        self.disconnect()
        await asyncio.sleep(0.5)
        emit(event="quit")
        loop.stop()


def main():
    port, room, nick = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    password = sys.argv[4] if len(sys.argv) > 4 else None
    config = json.loads(sys.argv[5]) if len(sys.argv) > 5 else None
    bot = Bot(room, nick, password, config)
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
