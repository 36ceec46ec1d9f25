"""Clients nobody on the project wrote, run against a real Salon with the same short scenario:
two accounts log in with SCRAM, exchange a 1:1 message, join a room and talk there. aioxmpp runs
in a venv of its own (tests/aioxmpp); mcabber (loudmouth) is driven in tmux. Each is installed
by tests/run-python.sh; a test skips, saying why, where its client is missing."""

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncio
import xml.etree.ElementTree as ET

import pytest

from conftest import server_fixture
from helpers import Client, Clients, async_test

REPO = Path(__file__).resolve().parents[2]
AIOXMPP_PY = REPO / "tests/aioxmpp/.venv/bin/python"

server = server_fixture("clients", require_encryption=True)


def test_aioxmpp_scram_login_chat_and_room(server):
    if not AIOXMPP_PY.exists():
        pytest.skip("tests/aioxmpp/.venv is missing: tests/run-python.sh creates it")
    alice, alice_pw = server.new_user("aioa")
    bob, bob_pw = server.new_user("aiob")
    room = f"aio{uuid.uuid4().hex[:6]}@rooms.localhost"
    res = subprocess.run(
        [str(AIOXMPP_PY), str(REPO / "tests/aioxmpp/scenario.py"), str(server.c2s_port),
         alice, alice_pw, bob, bob_pw, room],
        capture_output=True, text=True, timeout=60)
    steps = res.stdout.split()
    assert res.returncode == 0 and steps[-1] == "groupchat", (
        f"aioxmpp stopped after {steps}:\n{res.stderr[-3000:]}\n{server.log_tail(40)}")


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, timeout=10).stdout


@async_test(timeout=60)
async def test_mcabber_loudmouth_login_chat_and_room(server, tmp_path):
    # loudmouth 1.5 has no SCRAM: mcabber logs in with PLAIN inside STARTTLS.
    if not shutil.which("mcabber") or not shutil.which("tmux"):
        pytest.skip("mcabber or tmux is missing: tests/run-python.sh installs them (apt-get)")
    alice, alice_pw = server.new_user("mca")
    bob, bob_pw = server.new_user("mcb")
    room = f"mcab{uuid.uuid4().hex[:6]}@rooms.localhost"
    rc = tmp_path / "mcabberrc"
    rc.write_text("\n".join([
        f"set jid = {alice}", f"set password = {alice_pw}", "set resource = mcabber",
        "set server = 127.0.0.1", f"set port = {server.c2s_port}", "set tls = 1",
        "set ssl_ignore_checks = 1", "set disable_random_resource = 1", ""]))
    rc.chmod(0o600)
    session = f"mcabber{uuid.uuid4().hex[:6]}"
    tmux("new-session", "-d", "-s", session, "-x", "200", "-y", "50",
         f"HOME={tmp_path} mcabber -f {rc}")

    async def screen_has(text, timeout=15, each=None):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if each:
                type_line(each)
                tmux("send-keys", "-t", session, "Enter")
            screen = tmux("capture-pane", "-p", "-t", session)
            if text in screen:
                return screen
            await asyncio.sleep(0.3)
        raise AssertionError(f"mcabber never showed {text!r}:\n{screen}\n{server.log_tail(30)}")

    def type_line(text):
        tmux("send-keys", "-t", session, "-l", text)
        tmux("send-keys", "-t", session, "Enter")

    try:
        async with Clients() as cs:
            b = cs.add(Client(server, f"{bob}/slix", bob_pw, mech="SCRAM-SHA-256"))
            b.x.register_plugin("xep_0045")
            await b.login()
            await screen_has("Your status has been set")
            # 1:1, both ways.
            b.send_message(alice, "hello mcabber")
            # A message lands in its sender's buffer: show the first buffer with unread messages.
            # (an empty line opens the selected buffer: mcabber's chat mode).
            await screen_has("hello mcabber", each="/roster unread_first")
            type_line(f"/say_to {bob} hi bob from mcabber")
            await b.wait_message(lambda m: m["body"] == "hi bob from mcabber"
                                 and m["from"].bare == alice)
            # The room: bob makes it (an instant room), mcabber joins and talks.
            await b.x.plugin["xep_0045"].join_muc_wait(room, "bob", maxstanzas=0)
            iq = b.x.make_iq_set(ito=room)
            iq.append(ET.fromstring("<query xmlns='http://jabber.org/protocol/muc#owner'>"
                                    "<x xmlns='jabber:x:data' type='submit'/></query>"))
            await iq.send()
            type_line(f"/room join {room} mcab")
            await b.wait_presence(lambda p: p["from"] == f"{room}/mcab")
            type_line(f"/roster search {room.split('@')[0]}")  # the room's buffer
            type_line("hello room from mcabber")
            await b.wait_message(lambda m: m["type"] == "groupchat" and m["from"] == f"{room}/mcab"
                                 and m["body"] == "hello room from mcabber")
            b.send_message(room, "bob answers in the room", mtype="groupchat")
            await screen_has("bob answers in the room")
    finally:
        tmux("kill-session", "-t", session)
