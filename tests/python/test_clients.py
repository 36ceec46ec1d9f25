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

import pytest

from conftest import server_fixture

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
