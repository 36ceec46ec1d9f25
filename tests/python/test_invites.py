"""Invitations: `salon invite create`, XEP-0445 pre-authenticated sign-up on a stream, the
XEP-0401 ad-hoc commands through slixmpp's xep_0050, XEP-0379 (the inviter and the new account
are contacts), and the landing page /invite/TOKEN over HTTP (QR code, apps, browser sign-up,
expired and used-up links)."""

import re
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import xml.etree.ElementTree as ET

from slixmpp.exceptions import IqError

from conftest import server_fixture
from helpers import Client, Clients, RawXmpp, async_test, stanza_error_condition, tostr

NS_REGISTER = "jabber:iq:register"
NS_PARS = "urn:xmpp:pars:0"
NS_ROSTER = "jabber:iq:roster"
NS_DATA = "jabber:x:data"

server = server_fixture("invites", require_encryption=False,
                        top_toml='registration = "invite"\nadmins = ["boss@localhost"]')


def fresh(prefix="inv"):
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def cli_invite(server, *args):
    out = server.cli("invite", "create", *args).stdout.strip().splitlines()
    url = next(line for line in out if line.startswith("http"))
    uri = next(line for line in out if line.startswith("xmpp:"))
    return url.rsplit("/", 1)[1], url, uri


async def stream(server):
    raw = await RawXmpp.connect(server.c2s_port)
    await raw.open_stream(server.domain)
    return raw


async def preauth(raw, token):
    return await raw.iq(f"<iq type='set' id='p'><preauth xmlns='{NS_PARS}' token='{token}'/></iq>", "p")


async def register(raw, user, password):
    return await raw.iq(
        f"<iq type='set' id='r'><query xmlns='{NS_REGISTER}'><username>{user}</username>"
        f"<password>{password}</password></query></iq>", "r")


async def sign_up_with(server, token, user, password):
    raw = await stream(server)
    try:
        resp = await preauth(raw, token)
        if resp.get("type") != "result":
            return resp
        return await register(raw, user, password)
    finally:
        raw.close()


async def logs_in(server, jid, password) -> bool:
    async with Clients() as cs:
        c = cs.add(Client(server, f"{jid}/x", password, mech="SCRAM-SHA-256"))
        c.start_connect()
        await c.wait_until(lambda: c.auth_failures or c.session_started.done(), what="login")
        return c.session_started.done()


def http(server, path, data=None):
    url = f"http://127.0.0.1:{server.http_port}{path}"
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@async_test
async def test_cli_invitation_signs_up_with_preauth_until_used_up(server):
    token, url, uri = cli_invite(server, "--uses", "2", "--expires", "1h")
    assert uri == f"xmpp:{server.domain}?register;preauth={token}", uri
    assert url.endswith(f"/invite/{token}")
    for _ in range(2):
        user = fresh()
        resp = await sign_up_with(server, token, user, "secret-pw")
        assert resp.get("type") == "result", tostr(resp)
        assert await logs_in(server, f"{user}@{server.domain}", "secret-pw")
    resp = await sign_up_with(server, token, fresh(), "secret-pw")
    assert stanza_error_condition(resp) == "item-not-found", tostr(resp)
    listed = server.cli("invite", "list").stdout
    assert f"{token}  used up" in listed, listed
    log = server.log_text()
    assert "invitation from the operator (sign-up from 127.0.0.1)" in log


@async_test
async def test_invite_mode_needs_a_token(server):
    raw = await stream(server)
    resp = await register(raw, fresh(), "secret")
    assert stanza_error_condition(resp) == "not-allowed", tostr(resp)
    resp = await preauth(raw, "no-such-token")
    assert stanza_error_condition(resp) == "item-not-found", tostr(resp)
    raw.close()
    # A revoked invitation is gone.
    token, _, _ = cli_invite(server)
    server.cli("invite", "revoke", token)
    resp = await sign_up_with(server, token, fresh(), "secret")
    assert stanza_error_condition(resp) == "item-not-found", tostr(resp)


async def adhoc_client(cs, server, jid, password):
    c = cs.add(Client(server, f"{jid}/r", password, mech="SCRAM-SHA-256"))
    for plugin in ("xep_0030", "xep_0004", "xep_0050"):
        c.x.register_plugin(plugin)
    return await c.login()


def form_values(iq):
    x = iq.xml.find(f".//{{{NS_DATA}}}x")
    return {f.get("var"): f.findtext(f"{{{NS_DATA}}}value") for f in x.findall(f"{{{NS_DATA}}}field")}


@async_test
async def test_xep0401_invite_makes_contacts(server):
    alice_jid, alice_pw = server.new_user("alice")
    async with Clients() as cs:
        alice = await adhoc_client(cs, server, alice_jid, alice_pw)
        items = await alice.x["xep_0050"].get_commands(server.domain)
        nodes = {i[1] for i in items["disco_items"]["items"]}
        assert "urn:xmpp:invite#invite" in nodes, str(items)
        assert "urn:xmpp:invite#create-account" not in nodes, "only admins make account invitations"
        resp = await alice.x["xep_0050"].send_command(server.domain, "urn:xmpp:invite#invite")
        assert resp["command"]["status"] == "completed", str(resp)
        values = form_values(resp)
        m = re.fullmatch(rf"xmpp:{re.escape(alice_jid)}\?roster;preauth=(\w+);ibr=y", values["uri"])
        assert m, values
        token = m.group(1)
        assert values["landing-url"].endswith(f"/invite/{token}"), values
        assert values["expire"], values

        friend = fresh("friend")
        resp = await sign_up_with(server, token, friend, "friend-pw")
        assert resp.get("type") == "result", tostr(resp)
        friend_jid = f"{friend}@{server.domain}"
        # XEP-0379: both sides are subscribed from the start.
        roster = await alice.iq("get", None, f"<query xmlns='{NS_ROSTER}'/>")
        items = {i.get("jid"): i.get("subscription") for i in roster.xml.iter(f"{{{NS_ROSTER}}}item")}
        assert items.get(friend_jid) == "both", str(roster)
        bob = await adhoc_client(cs, server, friend_jid, "friend-pw")
        roster = await bob.iq("get", None, f"<query xmlns='{NS_ROSTER}'/>")
        items = {i.get("jid"): i.get("subscription") for i in roster.xml.iter(f"{{{NS_ROSTER}}}item")}
        assert items.get(alice_jid) == "both", str(roster)


@async_test
async def test_admins_create_account_invitations(server):
    if "boss@localhost" not in server._users:
        server.add_user("boss", "boss-secret")
    async with Clients() as cs:
        boss = await adhoc_client(cs, server, "boss@localhost", "boss-secret")
        resp = await boss.x["xep_0050"].send_command(server.domain, "urn:xmpp:invite#create-account")
        values = form_values(resp)
        assert values["uri"].startswith(f"xmpp:{server.domain}?register;preauth="), values


@async_test
async def test_landing_page_and_web_sign_up(server):
    token, url, uri = cli_invite(server, "--uses", "1")
    status, page = http(server, f"/invite/{token}")
    assert status == 200, page
    assert f"You are invited to {server.domain}" in page
    assert uri.replace("&", "&amp;") in page and "<svg" in page, "no xmpp: link or QR code"
    for app in ("Conversations", "Monal", "Gajim"):
        assert app in page, app
    assert len(page) < 20_000, len(page)

    status, page = http(server, f"/invite/{token}", {"username": "admin", "password": "pw"})
    assert status == 400 and "reserved" in page, page

    user = fresh("web")
    status, page = http(server, f"/invite/{token}", {"username": user, "password": "web-pw"})
    assert status == 200 and f"{user}@{server.domain}" in page, page
    assert await logs_in(server, f"{user}@{server.domain}", "web-pw")

    status, page = http(server, f"/invite/{token}")
    assert status == 410 and "already been used" in page, page
    status, page = http(server, "/invite/nonsense")
    assert status == 404 and "not valid" in page, page

    token, _, _ = cli_invite(server, "--expires", "1s")
    time.sleep(1.5)
    status, page = http(server, f"/invite/{token}")
    assert status == 410 and "expired" in page, page
    resp = await sign_up_with(server, token, fresh(), "pw")
    assert stanza_error_condition(resp) == "item-not-found", tostr(resp)


@async_test
async def test_xep0379_existing_account_subscribes_with_the_token(server):
    (alice_jid, alice_pw), (carol_jid, carol_pw) = server.new_user("alice"), server.new_user("carol")
    async with Clients() as cs:
        alice = await adhoc_client(cs, server, alice_jid, alice_pw)
        resp = await alice.x["xep_0050"].send_command(server.domain, "urn:xmpp:invite#invite")
        token = re.search(r"preauth=(\w+)", form_values(resp)["uri"]).group(1)
        carol = await cs.login(server, f"{carol_jid}/r", carol_pw)
        p = carol.x.make_presence(pto=alice_jid, ptype="subscribe")
        p.append(ET.fromstring(f"<preauth xmlns='{NS_PARS}' token='{token}'/>"))
        p.send()
        # Approved for alice without her answering, and she subscribes back.
        await carol.wait_presence(lambda pr: pr["type"] == "subscribed" and pr["from"].bare == alice_jid)
        await carol.wait_presence(lambda pr: pr["type"] == "subscribe" and pr["from"].bare == alice_jid)
        roster = await alice.iq("get", None, f"<query xmlns='{NS_ROSTER}'/>")
        item = next(i for i in roster.xml.iter(f"{{{NS_ROSTER}}}item") if i.get("jid") == carol_jid)
        assert item.get("subscription") == "from" and item.get("ask") == "subscribe", tostr(roster.xml)
        # The token is spent: a second account's request waits for alice as usual.
        (dave_jid, dave_pw) = server.new_user("dave")
        dave = await cs.login(server, f"{dave_jid}/r", dave_pw)
        p = dave.x.make_presence(pto=alice_jid, ptype="subscribe")
        p.append(ET.fromstring(f"<preauth xmlns='{NS_PARS}' token='{token}'/>"))
        p.send()
        await alice.wait_presence(lambda pr: pr["type"] == "subscribe" and pr["from"].bare == dave_jid)
        assert not any(pr["type"] == "subscribed" and pr["from"].bare == alice_jid for pr in dave.presences)


@async_test
async def test_admin_invitation_makes_an_administrator_and_a_plain_one_does_not(server):
    """`salon invite create --admin`: the account it makes may run the XEP-0133 commands (the
    flag is kept in storage, so it survives a restart and goes with the account); an account
    from an ordinary invitation may not."""
    from test_adhoc import client as adhoc_admin_client, run
    admin_token, _, _ = cli_invite(server, "--admin")
    plain_token, _, _ = cli_invite(server)
    assert f"{admin_token}  1 uses left" in server.cli("invite", "list").stdout
    assert "admin" in next(line for line in server.cli("invite", "list").stdout.splitlines()
                           if line.startswith(admin_token))
    made_admin, made_plain = fresh("adm"), fresh("pln")
    for token, user in ((admin_token, made_admin), (plain_token, made_plain)):
        resp = await sign_up_with(server, token, user, "secret-pw")
        assert resp.get("type") == "result", tostr(resp)
    server.restart()
    async with Clients() as cs:
        plain = await adhoc_admin_client(cs, server, f"{made_plain}@{server.domain}", "secret-pw")
        items = await plain.x["xep_0050"].get_commands(server.domain)
        assert not [i for i in items["disco_items"]["items"] if "admin#" in i[1]], str(items)
        try:
            resp = await plain.x["xep_0050"].send_command(
                server.domain, "http://jabber.org/protocol/admin#get-online-users-list")
        except IqError as e:
            resp = e.iq
        assert stanza_error_condition(resp.xml) == "item-not-found", str(resp)

        admin = await adhoc_admin_client(cs, server, f"{made_admin}@{server.domain}", "secret-pw")
        resp = await run(admin, server, "get-online-users-list", {"max_items": "100"})
        listed = [v.text for v in resp.xml.iter(f"{{{NS_DATA}}}value")]
        assert f"{made_plain}@{server.domain}" in listed, str(resp)
