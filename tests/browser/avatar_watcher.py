"""A slixmpp client of an account that subscribes to a contact and reports the contact's avatar.

Usage: avatar_watcher.py C2S_PORT JID PASSWORD CONTACT. It logs in over STARTTLS to 127.0.0.1
(self-signed certificate, not checked), asks CONTACT for a presence subscription, and announces
urn:xmpp:avatar:metadata+notify in its entity capabilities (XEP-0115/XEP-0163). It reports JSON
lines on stdout: "session", "roster" (the contact's subscription state), "photo_hash" (the
XEP-0153 hash in the contact's presence), "metadata" (a XEP-0084 metadata notification), and
for each new avatar id seen either way "avatar": the bytes (base64) of the XEP-0084 data node
item and of the vCard PHOTO, each fetched from the server, or the error the server gave.
{"quit": true} on stdin exits. AVATAR_WATCHER_DEBUG=1 logs the XML stream on stderr.
"""

import asyncio
import base64
import json
import logging
import os
import ssl
import sys
import xml.etree.ElementTree as ET

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout

DATA = "urn:xmpp:avatar:data"
METADATA = "urn:xmpp:avatar:metadata"
PUBSUB = "http://jabber.org/protocol/pubsub"
EVENT = "http://jabber.org/protocol/pubsub#event"
VCARD = "vcard-temp"
UPDATE = "vcard-temp:x:update"


def emit(**event):
    print(json.dumps(event), flush=True)


class Watcher(slixmpp.ClientXMPP):
    def __init__(self, jid, password, contact):
        super().__init__(jid, password)
        self.contact = contact
        self.fetched = set()
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0115")
        # Registers urn:xmpp:avatar:metadata+notify with XEP-0163, which puts it in the caps.
        self.register_plugin("xep_0163")
        self.register_plugin("xep_0084")
        self.add_event_handler("session_start", self.start)
        self.add_event_handler("presence", self.on_presence)
        # slixmpp's "message" event is for messages with a body; XEP-0163 raises this one.
        self.add_event_handler("avatar_metadata_publish", self.on_metadata)
        self.add_event_handler("roster_update", self.on_roster)

    async def start(self, _):
        emit(event="session", jid=str(self.boundjid))
        await self.get_roster()
        self.send_presence()
        self.send_presence(pto=self.contact, ptype="subscribe")
        asyncio.ensure_future(self.commands())

    def on_roster(self, _):
        item = self.client_roster[self.contact]
        emit(event="roster", subscription=item["subscription"])

    def on_presence(self, pres):
        if pres["from"].bare != self.contact or pres["type"] in ("subscribe", "subscribed", "unsubscribe", "unsubscribed", "error"):
            return
        photo = pres.xml.find("{%s}x/{%s}photo" % (UPDATE, UPDATE))
        if photo is not None and photo.text:
            emit(event="photo_hash", id=photo.text.strip())
            asyncio.ensure_future(self.fetch(photo.text.strip()))

    def on_metadata(self, msg):
        items = msg.xml.find("{%s}event/{%s}items" % (EVENT, EVENT))
        if items is None or items.get("node") != METADATA or msg["from"].bare != self.contact:
            return
        for info in items.iter("{%s}info" % METADATA):
            emit(event="metadata", id=info.get("id"), type=info.get("type"), bytes=info.get("bytes"))
            asyncio.ensure_future(self.fetch(info.get("id")))

    async def fetch(self, avatar_id):
        if avatar_id in self.fetched:
            return
        self.fetched.add(avatar_id)
        result = {"event": "avatar", "id": avatar_id}
        iq = self.make_iq_get(ito=self.contact)
        iq.append(ET.fromstring(
            f"<pubsub xmlns='{PUBSUB}'><items node='{DATA}'><item id='{avatar_id}'/></items></pubsub>"))
        try:
            reply = await iq.send(timeout=10)
            data = reply.xml.find(f"{{{PUBSUB}}}pubsub/{{{PUBSUB}}}items/{{{PUBSUB}}}item/{{{DATA}}}data")
            result["pep"] = "".join((data.text or "").split()) if data is not None else None
        except IqError as e:
            result["pep_error"] = e.iq["error"]["condition"]
        except IqTimeout:
            result["pep_error"] = "timeout"
        iq = self.make_iq_get(ito=self.contact)
        iq.append(ET.Element(f"{{{VCARD}}}vCard"))
        try:
            reply = await iq.send(timeout=10)
            binval = reply.xml.find(f"{{{VCARD}}}vCard/{{{VCARD}}}PHOTO/{{{VCARD}}}BINVAL")
            result["vcard"] = "".join((binval.text or "").split()) if binval is not None else None
        except IqError as e:
            result["vcard_error"] = e.iq["error"]["condition"]
        except IqTimeout:
            result["vcard_error"] = "timeout"
        # Normalised so the test compares bytes, not base64 line wrapping.
        for key in ("pep", "vcard"):
            if result.get(key):
                result[key] = base64.b64encode(base64.b64decode(result[key])).decode()
        emit(**result)

    async def commands(self):
        loop = asyncio.get_event_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while True:
            line = await reader.readline()
            if not line or json.loads(line).get("quit"):
                break
        self.disconnect()
        await asyncio.sleep(0.5)
        emit(event="quit")
        loop.stop()


def main():
    if os.environ.get("AVATAR_WATCHER_DEBUG"):
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    port, jid, password, contact = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    client = Watcher(jid, password, contact)
    # The test server has a self-signed certificate.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    client.ssl_context = ctx
    client.enable_starttls = True
    client.enable_direct_tls = False
    client.enable_plaintext = False
    client.whitespace_keepalive = False
    client.connect(host="127.0.0.1", port=port)
    client.loop.run_forever()


if __name__ == "__main__":
    main()
