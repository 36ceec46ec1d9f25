"""External components (XEP-0114) with slixmpp's ComponentXMPP: a component that proves its
secret serves its domain (an echo bot here), a wrong secret or an unknown domain is refused, and a
component cannot send from another domain."""

from __future__ import annotations

import asyncio
import socket

import pytest
from slixmpp.componentxmpp import ComponentXMPP

from conftest import server_fixture
from helpers import Clients, async_test, stanza_error_condition, uid
from salon_server import free_port

COMPONENT_PORT = free_port()
SECRET = "s3cret-for-tests"

server = server_fixture(
    "components",
    listen={"component": f"127.0.0.1:{COMPONENT_PORT}"},
    extra_toml=f'[components."echo.localhost"]\nsecret = "{SECRET}"\n',
)


async def connect_component(domain: str, secret: str) -> tuple[ComponentXMPP, asyncio.Future]:
    component = ComponentXMPP(domain, secret, "127.0.0.1", COMPONENT_PORT)
    ready = asyncio.get_running_loop().create_future()
    component.add_event_handler("session_start", lambda _: ready.done() or ready.set_result(True))
    component.add_event_handler("disconnected", lambda _: ready.done() or ready.set_result(False))

    def echo(msg):
        if msg["type"] in ("chat", "normal") and msg["body"]:
            msg.reply("echo: " + msg["body"]).send()

    component.add_event_handler("message", echo)
    component.connect()
    return component, ready


@async_test(timeout=60)
async def test_a_component_serves_its_domain(server):
    component, ready = await connect_component("echo.localhost", SECRET)
    try:
        assert await asyncio.wait_for(ready, 15), "the component was not accepted"
        jid, pw = server.new_user("c")
        async with Clients() as cs:
            alice = await cs.login(server, f"{jid}/r{uid()}", pw, mech="SCRAM-SHA-256")
            alice.send_message("bot@echo.localhost", "hello component")
            got = await alice.wait_message(lambda m: m["body"] == "echo: hello component", timeout=15)
            assert str(got["from"]).startswith("bot@echo.localhost"), got
    finally:
        component.disconnect()
    # Once it is gone, its domain answers with an error instead of swallowing stanzas.
    await asyncio.sleep(1)
    async with Clients() as cs:
        jid, pw = server.new_user("d")
        alice = await cs.login(server, f"{jid}/r{uid()}", pw, mech="SCRAM-SHA-256")
        mid = alice.send_message("bot@echo.localhost", "anyone?")
        err = await alice.wait_message(lambda m: m["id"] == mid and m["type"] == "error", timeout=15)
        assert stanza_error_condition(err.xml) == "service-unavailable", err


def raw_component(to: str) -> tuple[socket.socket, bytes]:
    sock = socket.create_connection(("127.0.0.1", COMPONENT_PORT), timeout=10)
    sock.sendall(f"<stream:stream xmlns='jabber:component:accept' "
                 f"xmlns:stream='http://etherx.jabber.org/streams' to='{to}'>".encode())
    data = b""
    while b">" not in data.split(b"<stream:stream", 1)[-1]:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return sock, data


def read_all(sock: socket.socket) -> bytes:
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except socket.timeout:
        pass
    return data


def test_wrong_secret_and_unknown_domain_are_refused(server):
    sock, _ = raw_component("echo.localhost")
    sock.sendall(b"<handshake>0000000000000000000000000000000000000000</handshake>")
    assert b"not-authorized" in read_all(sock)
    sock.close()
    sock, data = raw_component("nobody.localhost")
    assert b"host-unknown" in data + read_all(sock)
    sock.close()


@async_test(timeout=60)
async def test_a_component_cannot_send_from_another_domain(server):
    component, ready = await connect_component("echo.localhost", SECRET)
    try:
        assert await asyncio.wait_for(ready, 15)
        jid, pw = server.new_user("e")
        async with Clients() as cs:
            alice = await cs.login(server, f"{jid}/r{uid()}", pw, mech="SCRAM-SHA-256")
            forged = component.make_message(mto=alice.jid, mbody="forged", mfrom="admin@localhost")
            forged.send()
            await asyncio.sleep(1.5)
            assert not [m for m in alice.messages if m["body"] == "forged"]
    finally:
        component.disconnect()
