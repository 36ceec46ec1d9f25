"""Ad-hoc commands (XEP-0050) and the XEP-0133 administration subset, driven by slixmpp's
xep_0050 and xep_0133 plugins: only `admins` see and run them; add, delete, change password,
list online users, announce, end sessions; sessions that are checked and can be cancelled."""

import uuid

from slixmpp.exceptions import IqError

from conftest import server_fixture
from helpers import Client, Clients, async_test, stanza_error_condition

NS_COMMANDS = "http://jabber.org/protocol/commands"
NS_ADMIN = "http://jabber.org/protocol/admin"
NS_DATA = "jabber:x:data"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
ADMIN_NODES = {f"{NS_ADMIN}#{c}" for c in (
    "add-user", "delete-user", "change-user-password", "get-online-users-list", "announce",
    "end-user-session")}

server = server_fixture("adhoc", require_encryption=False,
                        top_toml='admins = ["boss@localhost"]')


async def client(cs, server, jid, password, resource="r"):
    c = cs.add(Client(server, f"{jid}/{resource}", password, mech="SCRAM-SHA-256"))
    for plugin in ("xep_0030", "xep_0004", "xep_0050", "xep_0133"):
        c.x.register_plugin(plugin)
    return await c.login()


def boss(server):
    if "boss@localhost" not in server._users:
        server.add_user("boss", "boss-secret")
    return "boss@localhost", "boss-secret"


async def run(c, server, command, fields: dict):
    """Executes `command`, checks the form it returns, and completes it with `fields`."""
    adhoc = c.x["xep_0050"]
    node = f"{NS_ADMIN}#{command}"
    first = await adhoc.send_command(server.domain, node)
    assert first["command"]["status"] == "executing", str(first)
    sessionid = first["command"]["sessionid"]
    assert first.xml.find(f"{{{NS_COMMANDS}}}command/{{{NS_DATA}}}x") is not None, str(first)
    form = c.x["xep_0004"].make_form(ftype="submit")
    form.add_field(var="FORM_TYPE", ftype="hidden", value=NS_ADMIN)
    for var, value in fields.items():
        form.add_field(var=var, value=value)
    try:
        return await adhoc.send_command(server.domain, node, action="complete",
                                        sessionid=sessionid, payload=form)
    except IqError as e:
        return e.iq


async def logs_in(server, jid, password) -> bool:
    async with Clients() as cs:
        c = cs.add(Client(server, f"{jid}/x", password, mech="SCRAM-SHA-256"))
        c.start_connect()
        await c.wait_until(lambda: c.auth_failures or c.session_started.done(), what="login")
        return c.session_started.done()


@async_test
async def test_only_admins_see_the_commands(server):
    jid, pw = boss(server)
    user_jid, user_pw = server.new_user("plain")
    async with Clients() as cs:
        admin = await client(cs, server, jid, pw)
        items = await admin.x["xep_0133"].get_commands()
        nodes = {item[1] for item in items["disco_items"]["items"]}
        assert ADMIN_NODES <= nodes, str(items)
        info = await admin.x["xep_0030"].get_info(jid=server.domain, node=f"{NS_ADMIN}#add-user")
        identity = info.xml.find(f"{{{NS_DISCO_INFO}}}query/{{{NS_DISCO_INFO}}}identity")
        assert identity is not None and identity.get("type") == "command-node", str(info)
        features = await admin.x["xep_0030"].get_info(jid=server.domain)
        assert NS_COMMANDS in features["disco_info"]["features"]

        user = await client(cs, server, user_jid, user_pw)
        items = await user.x["xep_0050"].get_commands(server.domain)
        assert not items["disco_items"]["items"], str(items)
        try:
            resp = await user.x["xep_0050"].send_command(server.domain, f"{NS_ADMIN}#add-user")
        except IqError as e:
            resp = e.iq
        assert stanza_error_condition(resp.xml) == "item-not-found", str(resp)


@async_test
async def test_add_change_password_and_delete_a_user(server):
    jid, pw = boss(server)
    new = f"made{uuid.uuid4().hex[:6]}@{server.domain}"
    async with Clients() as cs:
        admin = await client(cs, server, jid, pw)
        resp = await run(admin, server, "add-user", {
            "accountjid": new, "password": "first-pw", "password-verify": "first-pw"})
        assert resp["command"]["status"] == "completed", str(resp)
        assert await logs_in(server, new, "first-pw")
        # The same again: it exists.
        resp = await run(admin, server, "add-user", {
            "accountjid": new, "password": "x", "password-verify": "x"})
        assert stanza_error_condition(resp.xml) == "conflict", str(resp)

        resp = await run(admin, server, "change-user-password",
                         {"accountjid": new, "password": "second-pw"})
        assert resp["command"]["status"] == "completed", str(resp)
        assert not await logs_in(server, new, "first-pw")
        assert await logs_in(server, new, "second-pw")

        resp = await run(admin, server, "delete-user", {"accountjids": [new]})
        assert resp["command"]["status"] == "completed", str(resp)
        assert not await logs_in(server, new, "second-pw")
    assert f"account={new}" in server.log_text() and "added by admin boss@localhost" in server.log_text()


@async_test
async def test_online_users_announce_and_end_sessions(server):
    jid, pw = boss(server)
    user_jid, user_pw = server.new_user("on")
    async with Clients() as cs:
        admin = await client(cs, server, jid, pw)
        user = await client(cs, server, user_jid, user_pw)

        resp = await run(admin, server, "get-online-users-list", {"max_items": "100"})
        listed = [v.text for v in resp.xml.iter(f"{{{NS_DATA}}}value")]
        assert user_jid in listed and jid in listed, str(resp)

        resp = await run(admin, server, "announce", {"subject": "Maintenance", "body": "at noon"})
        assert resp["command"]["status"] == "completed", str(resp)
        msg = await user.wait_message(lambda m: m["body"] == "at noon")
        assert msg["type"] == "headline" and msg["subject"] == "Maintenance"
        assert str(msg["from"]) == server.domain

        resp = await run(admin, server, "end-user-session", {"accountjids": [user_jid]})
        assert resp["command"]["status"] == "completed", str(resp)
        await user.wait_until(lambda: user.is_disconnected.is_set(), what="session ended")
        await admin.ping_server()


@async_test
async def test_sessions_are_checked_and_cancelled(server):
    jid, pw = boss(server)
    user_jid, user_pw = server.new_user("sess")
    async with Clients() as cs:
        admin = await client(cs, server, jid, pw)
        adhoc = admin.x["xep_0050"]
        node = f"{NS_ADMIN}#announce"
        first = await adhoc.send_command(server.domain, node)
        sessionid = first["command"]["sessionid"]
        resp = await adhoc.send_command(server.domain, node, action="cancel", sessionid=sessionid)
        assert resp["command"]["status"] == "canceled", str(resp)
        # The cancelled session is gone; an invented one never was.
        for sid in (sessionid, "nonsense"):
            try:
                resp = await adhoc.send_command(server.domain, node, action="complete",
                                                sessionid=sid)
            except IqError as e:
                resp = e.iq
            assert stanza_error_condition(resp.xml) == "bad-request", str(resp)
            assert resp.xml.find(f".//{{{NS_COMMANDS}}}bad-sessionid") is not None, str(resp)
        # Another account cannot continue the admin's session, even knowing its id.
        first = await adhoc.send_command(server.domain, node)
        user = await client(cs, server, user_jid, user_pw)
        try:
            resp = await user.x["xep_0050"].send_command(
                server.domain, node, action="complete", sessionid=first["command"]["sessionid"])
        except IqError as e:
            resp = e.iq
        assert resp["type"] == "error", str(resp)
