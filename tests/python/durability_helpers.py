"""What the crash-durability tests (test_durability.py, test_carbons_durability.py) share: a
fresh server per test (each test kills it), raw logins, reading a stream until the kill ends
it, the kill itself, and reading an archive straight from the SQLite file after a restart."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator

import pytest

from conftest import start_server
from helpers import RawXmpp


def durability_server(name: str):
    """A function-scoped fixture: a server of its own for each test, plain TCP allowed."""

    @pytest.fixture
    def _server(tmp_path_factory):
        srv = start_server(tmp_path_factory, name, require_encryption=False)
        try:
            yield srv
        finally:
            srv.stop()

    return _server


async def logged_in(server, user: str, resource: str) -> RawXmpp:
    """`user` (password "pw") logged in on plain TCP with `resource` bound."""
    raw = await RawXmpp.connect(server.c2s_port)
    await raw.open_stream("localhost")
    await raw.login_plain(user, "pw", resource)
    return raw


async def elements(raw: RawXmpp) -> AsyncIterator:
    """Every element `raw` reads, until its stream ends (the kill) or stays silent for 10 s."""
    while True:
        try:
            element = await raw.next_element(timeout=10)
        except (AssertionError, ConnectionError):
            return
        if element is None:
            return
        yield element


def kill(server) -> None:
    """SIGKILL: nothing the server has not written yet survives."""
    server.proc.kill()
    server.proc.wait(timeout=10)


def archived_stanzas(server, archive: str) -> list[str]:
    """The stanzas stored in `archive` (an account's or a room's), read from the database."""
    db = sqlite3.connect(server.data_dir / "salon.db")
    try:
        return [row[0] for row in db.execute(
            "SELECT s.stanza FROM archive_entries_named AS e JOIN archive_stanzas AS s ON s.seq = e.body"
            " WHERE e.archive = ? ORDER BY e.seq", (archive,)
        )]
    finally:
        db.close()
