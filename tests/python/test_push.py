"""Push notifications (XEP-0357): a client enables pushes to its app server, here a slixmpp
client acting as the push service; a message that arrives while the client is offline or its
session waits for resumption sends the service a summary notification (count and sender, no
body unless push.include_body), encrypted messages included; an attached client or a disabled
registration gets none."""

import asyncio
import uuid
import xml.etree.ElementTree as ET

from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from conftest import server_fixture
from helpers import Client, Clients, RawXmpp, async_test, tostr

NS_PUSH = "urn:xmpp:push:0"
NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_DATA = "jabber:x:data"
NS_SM = "urn:xmpp:sm:3"

server = server_fixture("push", require_encryption=False)
with_body = server_fixture("push-body", require_encryption=False,
                           extra_toml="[push]\ninclude_body = true")
# Bursts of 3, then one every 2 seconds to one push service.
limited = server_fixture("push-limited", require_encryption=False,
                         extra_toml="[push]\nper_service_per_minute = 30")


class PushService:
    """A slixmpp client that plays the app server: records each publish, answers result."""

    def __init__(self, client: Client):
        self.client = client
        self.published: list = []
        client.x.register_handler(Callback(
            "push publish", MatchXPath(f"{{jabber:client}}iq/{{{NS_PUBSUB}}}pubsub"), self._on_publish))

    def _on_publish(self, iq):
        self.published.append(iq.xml)
        iq.reply().send()
        self.client._poke()

    async def wait(self, count):
        await self.client.wait_until(lambda: len(self.published) >= count, what=f"{count} pushes")

    @staticmethod
    def summary(iq):
        publish = iq.find(f"{{{NS_PUBSUB}}}pubsub/{{{NS_PUBSUB}}}publish")
        x = publish.find(f"{{{NS_PUBSUB}}}item/{{{NS_PUSH}}}notification/{{{NS_DATA}}}x")
        fields = {f.get("var"): f.findtext(f"{{{NS_DATA}}}value") for f in x.findall(f"{{{NS_DATA}}}field")}
        return publish.get("node"), fields


def enable_xml(service_jid, node, secret="s3cret"):
    return (f"<enable xmlns='{NS_PUSH}' jid='{service_jid}' node='{node}'>"
            f"<x xmlns='{NS_DATA}' type='submit'>"
            f"<field var='FORM_TYPE'><value>{NS_PUBSUB}#publish-options</value></field>"
            f"<field var='secret'><value>{secret}</value></field></x></enable>")


async def enable_and_leave(cs, srv, a_jid, a_pw, service_jid, node):
    """The phone enables pushes to the service, then goes offline."""
    alice = await cs.login(srv, f"{a_jid}/phone", a_pw)
    resp = await alice.iq("set", None, enable_xml(service_jid, node))
    assert resp["type"] == "result", str(resp)
    await alice.close()


async def setup(cs, srv):
    (a_jid, a_pw), (b_jid, b_pw), (p_jid, p_pw) = (
        srv.new_user("phone"), srv.new_user("sender"), srv.new_user("pushsvc"))
    service = PushService(await cs.login(srv, f"{p_jid}/svc", p_pw))
    bob = await cs.login(srv, f"{b_jid}/r", b_pw)
    return (a_jid, a_pw), bob, service, f"{p_jid}/svc"


@async_test
async def test_offline_client_is_pushed_a_summary_without_body(server):
    async with Clients() as cs:
        (a_jid, a_pw), bob, service, service_jid = await setup(cs, server)
        node = uuid.uuid4().hex
        alice = await cs.login(server, f"{a_jid}/phone", a_pw)
        resp = await alice.iq("set", None, enable_xml(service_jid, node))
        assert resp["type"] == "result", str(resp)
        # Attached: nothing is pushed.
        bob.send_message(a_jid, "while you are here")
        await alice.wait_message(lambda m: m["body"] == "while you are here")
        await asyncio.sleep(0.3)
        assert not service.published
        await alice.close()

        bob.send_message(a_jid, "first secret words")
        await service.wait(1)
        bob.send_message(a_jid, "second")
        await service.wait(2)
        got_node, fields = PushService.summary(service.published[-1])
        assert got_node == node
        assert fields["FORM_TYPE"] == "urn:xmpp:push:summary"
        assert fields["message-count"] == "2", fields
        assert fields["last-message-sender"].startswith(bob.bare), fields
        assert "last-message-body" not in fields, fields
        raw = tostr(service.published[0])
        assert "first secret words" not in raw and "s3cret" in raw, raw  # publish-options kept

        # An encrypted message without a body (kept offline by its store hint, as OMEMO
        # clients send it) is pushed too.
        enc = bob.x.make_message(mto=a_jid, mtype="chat")
        enc.append(ET.fromstring(
            "<encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='1'/></encrypted>"))
        enc.append(ET.fromstring("<store xmlns='urn:xmpp:hints'/>"))
        enc.send()
        await service.wait(3)
        assert PushService.summary(service.published[-1])[1]["message-count"] == "3"

        # Disabled: no more pushes.
        alice = await cs.login(server, f"{a_jid}/phone2", a_pw)
        resp = await alice.iq("set", None, f"<disable xmlns='{NS_PUSH}' jid='{service_jid}'/>")
        assert resp["type"] == "result", str(resp)
        await alice.close()
        before = len(service.published)
        bob.send_message(a_jid, "after disable")
        await asyncio.sleep(0.5)
        assert len(service.published) == before


@async_test
async def test_session_waiting_for_resumption_is_pushed(server):
    async with Clients() as cs:
        (a_jid, a_pw), bob, service, service_jid = await setup(cs, server)
        raw = await RawXmpp.connect(server.c2s_port)
        await raw.open_stream(server.domain)
        await raw.login_plain(a_jid.split("@")[0], a_pw, resource="sm")
        await raw.send(f"<enable xmlns='{NS_SM}' resume='true'/>")
        await raw.expect(f"{{{NS_SM}}}enabled")
        resp = await raw.iq(f"<iq type='set' id='e1'>{enable_xml(service_jid, 'n-sm')}</iq>", "e1")
        assert resp.get("type") == "result", tostr(resp)
        raw.writer.transport.abort()  # the phone's connection drops; the session waits
        await asyncio.sleep(0.3)
        bob.send_message(a_jid, "are you there?")
        await service.wait(1)
        assert PushService.summary(service.published[0])[0] == "n-sm"


@async_test
async def test_body_only_when_configured(with_body):
    async with Clients() as cs:
        (a_jid, a_pw), bob, service, service_jid = await setup(cs, with_body)
        await enable_and_leave(cs, with_body, a_jid, a_pw, service_jid, "nb")
        bob.send_message(a_jid, "hello body")
        await service.wait(1)
        assert PushService.summary(service.published[0])[1]["last-message-body"] == "hello body"


@async_test
async def test_registration_survives_a_restart_until_disabled(server):
    """A phone that enabled push is still woken after the server restarts: the registration
    (node and publish-options) is stored; disabling removes it for good."""
    async with Clients() as cs:
        (a_jid, a_pw), _, _, service_jid = await setup(cs, server)
        node = uuid.uuid4().hex
        alice = await cs.login(server, f"{a_jid}/phone", a_pw)
        resp = await alice.iq("set", None, enable_xml(service_jid, node, secret="kept-secret"))
        assert resp["type"] == "result", str(resp)
    server.restart()
    b_jid, b_pw = server.new_user("sender")

    async def service_and_bob(cs):
        p_jid = service_jid.split("/")[0]
        service = PushService(await cs.login(server, service_jid, server._users[p_jid]))
        return service, await cs.login(server, f"{b_jid}/r", b_pw)

    async with Clients() as cs:
        service, bob = await service_and_bob(cs)
        bob.send_message(a_jid, "after the restart")
        await service.wait(1)
        got_node, fields = PushService.summary(service.published[0])
        assert got_node == node and fields["message-count"] == "1", fields
        assert "kept-secret" in tostr(service.published[0])

        alice = await cs.login(server, f"{a_jid}/phone", a_pw)
        resp = await alice.iq("set", None,
                              f"<disable xmlns='{NS_PUSH}' jid='{service_jid}' node='{node}'/>")
        assert resp["type"] == "result", str(resp)
        await alice.close()
    server.restart()
    async with Clients() as cs:
        service, bob = await service_and_bob(cs)
        bob.send_message(a_jid, "disabled before the restart")
        await asyncio.sleep(1.0)
        assert not service.published, [tostr(p) for p in service.published]


@async_test
async def test_a_push_service_is_rate_limited_and_the_excess_coalesced(limited):
    """push.per_service_per_minute: beyond the burst, notifications to one push service wait and
    coalesce, so a burst of twelve messages makes four notifications, the last with the count
    of all twelve; the limiting is logged."""
    async with Clients() as cs:
        (a_jid, a_pw), bob, service, service_jid = await setup(cs, limited)
        await enable_and_leave(cs, limited, a_jid, a_pw, service_jid, "busy")
        for i in range(12):
            bob.send_message(a_jid, f"message {i}")
        await service.wait(3)
        await service.wait(4)
        await asyncio.sleep(2.5)
        counts = [PushService.summary(p)[1]["message-count"] for p in service.published]
        assert counts == ["1", "2", "3", "12"], counts
        assert "push service at its rate limit" in limited.log_text()


@async_test
async def test_deleting_the_account_removes_its_registrations(server):
    """An account removed in-band (XEP-0077) takes its push registrations with it: a new
    account of the same name, offline, wakes nobody."""
    async with Clients() as cs:
        (a_jid, a_pw), bob, service, service_jid = await setup(cs, server)
        await enable_and_leave(cs, server, a_jid, a_pw, service_jid, "gone")
        alice = await cs.login(server, f"{a_jid}/phone", a_pw)
        resp = await alice.iq("set", None, "<query xmlns='jabber:iq:register'><remove/></query>")
        assert resp["type"] == "result", str(resp)
        await alice.wait_until(lambda: alice.is_disconnected.is_set(), what="account removed")
        server.add_user(a_jid.split("@")[0], a_pw)
        bob.send_message(a_jid, "to the new account")
        await bob.ping_server()
        await asyncio.sleep(0.5)
        assert not service.published, [tostr(p) for p in service.published]
