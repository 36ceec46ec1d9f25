"""In-band account management for logged-in users (XEP-0077 §3.2, §3.3) through slixmpp:
changing the password, removing the account, and what guests and other users may not do."""

from conftest import server_fixture
from helpers import Client, Clients, RawXmpp, async_test, stanza_error_condition, tostr

server = server_fixture("register", require_encryption=True)

NS_REGISTER = "jabber:iq:register"


async def login(cs, server, jid, password, resource="r"):
    return await cs.login(server, f"{jid}/{resource}", password, mech="SCRAM-SHA-256")


async def login_fails(cs, server, jid, password) -> bool:
    c = cs.add(Client(server, f"{jid}/x", password, mech="SCRAM-SHA-256"))
    c.start_connect()
    await c.wait_until(lambda: c.auth_failures or c.session_started.done(), what="login outcome")
    await c.close()
    return bool(c.auth_failures) and not c.session_started.done()


def condition(resp) -> str | None:
    return stanza_error_condition(resp.xml)


@async_test
async def test_change_password_in_band(server):
    (a_jid, a_pw), (b_jid, _) = server.new_user("pw"), server.new_user("pw2")
    user = a_jid.split("@")[0]
    async with Clients() as cs:
        alice = await login(cs, server, a_jid, a_pw)
        resp = await alice.iq("get", None, f"<query xmlns='{NS_REGISTER}'/>")
        query = resp.xml.find(f"{{{NS_REGISTER}}}query")
        assert query is not None and query.find(f"{{{NS_REGISTER}}}registered") is not None, str(resp)
        assert query.findtext(f"{{{NS_REGISTER}}}username") == user, str(resp)

        # Someone else's password: refused. An empty one: refused.
        other = b_jid.split("@")[0]
        resp = await alice.iq("set", server.domain, f"<query xmlns='{NS_REGISTER}'><username>{other}"
                              f"</username><password>x</password></query>")
        assert condition(resp) == "not-allowed", str(resp)
        resp = await alice.iq("set", None, f"<query xmlns='{NS_REGISTER}'><username>{user}"
                              f"</username><password></password></query>")
        assert condition(resp) == "not-acceptable", str(resp)

        resp = await alice.iq("set", server.domain, f"<query xmlns='{NS_REGISTER}'><username>{user}"
                              f"</username><password>new-secret</password></query>")
        assert resp["type"] == "result", str(resp)
        # The session goes on; new logins need the new password.
        await alice.ping_server()
        assert await login_fails(cs, server, a_jid, a_pw), "the old password still works"
        await login(cs, server, a_jid, "new-secret", resource="again")


@async_test
async def test_remove_account_in_band(server):
    (a_jid, a_pw), (b_jid, b_pw) = server.new_user("rm"), server.new_user("rm2")
    async with Clients() as cs:
        alice = await login(cs, server, a_jid, a_pw)
        phone = await login(cs, server, a_jid, a_pw, resource="phone")
        bob = await login(cs, server, b_jid, b_pw)
        # Bob follows alice's presence.
        bob.x.send_presence(pto=a_jid, ptype="subscribe")
        await alice.wait_presence(lambda p: p["type"] == "subscribe", what="bob's request")
        alice.x.send_presence(pto=b_jid, ptype="subscribed")
        await bob.wait_presence(lambda p: p["type"] == "subscribed", what="approval")

        resp = await alice.iq("set", None, f"<query xmlns='{NS_REGISTER}'><remove/></query>")
        assert resp["type"] == "result", str(resp)
        # Every session of the account is closed with <not-authorized/>.
        for c in (alice, phone):
            await c.wait_until(lambda c=c: c.is_disconnected.is_set(), what="the session closed")
        assert any("not-authorized" in str(e) for e in phone.stream_errors), phone.stream_errors
        # Bob's subscription is cancelled, and the account is gone.
        await bob.wait_presence(lambda p: p["type"] == "unsubscribed" and str(p["from"]) == a_jid,
                                what="unsubscribed from the removed account")
        assert await login_fails(cs, server, a_jid, a_pw), "the removed account still logs in"
        bob.x.send_message(mto=a_jid, mbody="anyone?", mtype="chat")
        err = await bob.wait_message(lambda m: m["type"] == "error", what="bounce")
        assert stanza_error_condition(err.xml) == "service-unavailable", str(err)


@async_test
async def test_guests_and_other_accounts_cannot_use_it(server):
    (a_jid, a_pw), (b_jid, b_pw) = server.new_user("g1"), server.new_user("g2")
    async with Clients() as cs:
        alice = await login(cs, server, a_jid, a_pw)
        await login(cs, server, b_jid, b_pw)
        resp = await alice.iq("set", b_jid, f"<query xmlns='{NS_REGISTER}'><remove/></query>")
        assert resp["type"] == "error", str(resp)
        await login(cs, server, b_jid, b_pw, resource="still-here")

    raw = await RawXmpp.connect(server.tls_port, tls=True)
    try:
        await raw.open_stream("anon.localhost")
        result = await raw.auth("ANONYMOUS", b"")
        assert result.tag.endswith("success"), tostr(result)
        await raw.open_stream()
        await raw.bind()
        answer = await raw.iq(f"<iq type='set' id='rm'><query xmlns='{NS_REGISTER}'><remove/></query></iq>", "rm")
        assert answer.get("type") == "error" and "service-unavailable" in tostr(answer), (
            tostr(answer))
    finally:
        raw.close()
