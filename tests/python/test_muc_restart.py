"""MUC persistence across a server restart (SIGTERM, then start on the same data dir):
a persistent room keeps its configuration, affiliations, subject and archive; a temporary room
is gone."""

import asyncio
import sqlite3
import time

import pytest

from conftest import start_server
from helpers import Clients, async_test
from test_muc import (
    NS_DISCO_INFO, admin, admin_list, attr, body, cond, create_room,
    disco_info, item, join, join_refused, list_jids, mam, muc_item, muc_login, new_room,
    owner_form, room_stanza_id, say_ok,
)


@pytest.fixture
def server(tmp_path_factory):
    srv = start_server(tmp_path_factory, "muc-restart")
    try:
        yield srv
    finally:
        srv.stop()


CONFIG = {
    "muc#roomconfig_roomname": "Durable",
    "muc#roomconfig_roomdesc": "Survives restarts",
    "muc#roomconfig_persistentroom": True,
    "muc#roomconfig_publicroom": False,
    "muc#roomconfig_moderatedroom": True,
    "muc#roomconfig_historylength": "5",
    "muc#roomconfig_allowpm": "moderators",
}


@async_test(timeout=150)
async def test_persistent_room_survives_restart(server):
    owner_acc = server.new_user("own")
    member_acc = server.new_user("mem")
    outcast_acc = server.new_user("out")
    room = new_room(server, "durable")
    temp = new_room(server, "temp")
    async with Clients() as cs:
        owner = await muc_login(cs, server, owner_acc)
        await create_room(owner, room, "boss", CONFIG)
        await create_room(owner, temp, "boss")
        for jid, aff in ((member_acc[0], "member"), (outcast_acc[0], "outcast")):
            resp = await admin(owner, room, item(jid=jid, affiliation=aff))
            assert resp["type"] == "result", str(resp)
        mid = "subj"
        owner.x.send_raw(f"<message to='{room}' type='groupchat' id='{mid}'><subject>Kept topic</subject></message>")
        await owner.wait_message(lambda m: attr(m, "id") == mid)
        live = [room_stanza_id(await say_ok(owner, room, f"before restart {i}"), room) for i in range(3)]
        form_before = await owner_form(owner, room)

    server.restart()

    async with Clients() as cs:
        owner = await muc_login(cs, server, owner_acc)
        features, info, q = await disco_info(owner, room)
        assert "muc_persistent" in features and "muc_moderated" in features, sorted(features)
        assert q.find(f"{{{NS_DISCO_INFO}}}identity").get("name") == "Durable"
        form_after = await owner_form(owner, room)
        for var in CONFIG:
            assert form_after.get(var) == form_before.get(var), (
                f"{var} changed across restart: {form_before.get(var)} → {form_after.get(var)}")
        j = await join(owner, room, "boss")
        assert "201" not in j.codes, f"persistent room re-created after restart: {j.presence}"
        assert muc_item(j.presence).get("affiliation") == "owner", str(j.presence)
        assert (j.subject.xml.findtext("{jabber:client}subject")) == "Kept topic", str(j.subject)
        assert owner_acc[0] in list_jids(await admin_list(owner, room, "owner"))
        assert member_acc[0] in list_jids(await admin_list(owner, room, "member"))
        assert outcast_acc[0] in list_jids(await admin_list(owner, room, "outcast"))
        outcast = await muc_login(cs, server, outcast_acc)
        assert await join_refused(outcast, room, "again") == "forbidden", "ban lost in restart"
        member = await muc_login(cs, server, member_acc)
        jm = await join(member, room, "mem")
        it = muc_item(jm.presence)
        assert it.get("affiliation") == "member", str(jm.presence)
        # Moderated room: a member gets voice, a participant role.
        assert it.get("role") == "participant", str(jm.presence)
        fin, res = await mam(owner, room)
        archived = [(r.get("id"), body(r.find("{urn:xmpp:forward:0}forwarded/{jabber:client}message")))
                    for r in res]
        assert [a for a, _ in archived][-3:] == live, f"archive after restart: {archived}"
        assert [b for _, b in archived][-3:] == [f"before restart {i}" for i in range(3)]
        # The temporary room did not survive.
        resp = await owner.iq("get", temp, f"<query xmlns='{NS_DISCO_INFO}'/>")
        assert resp["type"] == "error" and cond(resp) == "item-not-found", (
            f"temporary room survived the restart: {resp}")
        jt = await join(owner, temp, "boss")
        assert "201" in jt.codes, f"temporary room name should create a new room: {jt.presence}"


@async_test(timeout=120)
async def test_archive_retention_sweep_deletes_old_messages(tmp_path_factory):
    srv = start_server(tmp_path_factory, "muc-retention", muc={"archive_retention_days": 1})
    try:
        owner_acc = srv.new_user("own")
        room = new_room(srv, "kept")
        async with Clients() as cs:
            owner = await muc_login(cs, srv, owner_acc)
            await create_room(owner, room, "boss", {"muc#roomconfig_persistentroom": True})
            await say_ok(owner, room, "recent message")
        srv.terminate(10.0)
        # A message from three days ago, as the archive would hold it.
        old = int((time.time() - 3 * 86400) * 1_000_000)
        db = sqlite3.connect(srv.data_dir / "salon.db")
        with db:
            seq = db.execute(
                "INSERT INTO archive_stanzas (stanza, refs) VALUES (?, 1)",
                (f"<message xmlns='jabber:client' from='{room}/boss' type='groupchat'><body>ancient message</body></message>",),
            ).lastrowid
            for address in (room, f"{room}/boss"):
                db.execute("INSERT OR IGNORE INTO archive_addresses (jid) VALUES (?)", (address,))
            db.execute(
                "INSERT INTO archive_entries (archive, seq, id, timestamp, with_jid, body) VALUES"
                " ((SELECT id FROM archive_addresses WHERE jid = ?), ?, ?, ?,"
                " (SELECT id FROM archive_addresses WHERE jid = ?), ?)",
                (room, seq, "ancient-1", old, f"{room}/boss", seq),
            )
        db.close()
        srv.restart()  # the sweep runs when the server starts, then hourly
        async with Clients() as cs:
            owner = await muc_login(cs, srv, owner_acc)
            await join(owner, room, "boss")
            for _ in range(50):
                fin, res = await mam(owner, room)
                bodies = [body(r.find("{urn:xmpp:forward:0}forwarded/{jabber:client}message")) for r in res]
                if "ancient message" not in bodies:
                    break
                await asyncio.sleep(0.1)
            assert "recent message" in bodies, bodies
            assert "ancient message" not in bodies, f"a 3-day-old message outlived 1-day retention: {bodies}"
    finally:
        srv.stop()
