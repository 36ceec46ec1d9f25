"""Sign-up before login (XEP-0077 §3.1 with its data form): slixmpp's xep_0077 plugin makes an
account and logs in with it; open sign-up is limited per address and refuses reserved and
look-alike names; the anonymous host and a closed server never offer it."""

import asyncio
import uuid

import slixmpp

from conftest import server_fixture
from helpers import Client, Clients, RawXmpp, async_test, insecure_tls_context, stanza_error_condition, tostr

NS_REGISTER = "jabber:iq:register"
NS_FEATURE = "http://jabber.org/features/iq-register"
NS_DATA = "jabber:x:data"

server = server_fixture(
    "signup", require_encryption=False, top_toml='registration = "open"',
    extra_limits={"registrations_per_hour": 1000},
)


def fresh(prefix="s"):
    return f"{prefix}{uuid.uuid4().hex[:8]}"


async def raw_stream(server, host=None, source_ip=None):
    raw = await RawXmpp.connect(server.c2s_port, source_ip=source_ip)
    features = await raw.open_stream(host or server.domain)
    return raw, features


async def raw_sign_up(raw, username, password, iid=None):
    iid = iid or "reg-" + uuid.uuid4().hex[:6]
    return await raw.iq(
        f"<iq type='set' id='{iid}'><query xmlns='{NS_REGISTER}'><username>{username}</username>"
        f"<password>{password}</password></query></iq>", iid)


async def logs_in(server, jid, password) -> bool:
    async with Clients() as cs:
        c = cs.add(Client(server, f"{jid}/x", password, mech="SCRAM-SHA-256"))
        c.start_connect()
        await c.wait_until(lambda: c.auth_failures or c.session_started.done(), what="login")
        return c.session_started.done()


@async_test
async def test_slixmpp_signs_up_and_logs_in(server):
    user = fresh("slix")
    jid, password = f"{user}@{server.domain}", "pw-" + uuid.uuid4().hex
    x = slixmpp.ClientXMPP(jid, password)
    x.ssl_context = insecure_tls_context()
    x.enable_plaintext = False
    x.register_plugin("xep_0077")
    x["xep_0077"].create_account = True
    loop = asyncio.get_running_loop()
    started, form_seen = loop.create_future(), loop.create_future()

    async def on_register(form):
        form_seen.set_result(form)
        resp = x.Iq()
        resp["type"] = "set"
        resp["register"]["username"] = user
        resp["register"]["password"] = password
        await resp.send()

    x.add_event_handler("register", on_register)
    x.add_event_handler("session_start", lambda _: started.done() or started.set_result(True))
    x.connect(host="127.0.0.1", port=server.c2s_port)
    try:
        await asyncio.wait_for(started, 15)
        form = await form_seen
        # The data form of XEP-0077 §6 rides along the plain fields.
        x_form = form.xml.find(f"{{{NS_REGISTER}}}query/{{{NS_DATA}}}x")
        fields = {f.get("var") for f in x_form.findall(f"{{{NS_DATA}}}field")}
        assert {"username", "password"} <= fields, str(form)
    finally:
        x.disconnect()
    assert await logs_in(server, jid, password)
    # Each account made is logged with how it was made.
    assert any(f"account={jid}" in line and "open sign-up from 127.0.0.1" in line
               for line in server.log_text().splitlines())


@async_test
async def test_form_and_data_form_submission(server):
    raw, features = await raw_stream(server)
    assert features.find(f"{{{NS_FEATURE}}}register") is not None, tostr(features)
    resp = await raw.iq(f"<iq type='get' id='f1'><query xmlns='{NS_REGISTER}'/></iq>", "f1")
    assert resp.get("type") == "result", tostr(resp)
    x = resp.find(f"{{{NS_REGISTER}}}query/{{{NS_DATA}}}x")
    assert x is not None and x.get("type") == "form", tostr(resp)
    vars_ = {f.get("var") for f in x.findall(f"{{{NS_DATA}}}field")}
    assert {"FORM_TYPE", "username", "password"} <= vars_, tostr(resp)

    user = fresh("form")
    resp = await raw.iq(
        f"<iq type='set' id='f2'><query xmlns='{NS_REGISTER}'><x xmlns='{NS_DATA}' type='submit'>"
        f"<field var='FORM_TYPE'><value>{NS_REGISTER}</value></field>"
        f"<field var='username'><value>{user}</value></field>"
        f"<field var='password'><value>secret-1</value></field></x></query></iq>", "f2")
    assert resp.get("type") == "result", tostr(resp)
    # One account per stream.
    resp = await raw_sign_up(raw, fresh("again"), "secret-2")
    assert stanza_error_condition(resp) == "not-allowed", tostr(resp)
    # The same stream logs in with the account it made.
    full = await raw.login_plain(user, "secret-1")
    assert full.startswith(f"{user}@{server.domain}/")
    raw.close()


@async_test
async def test_reserved_look_alike_and_malformed_names_are_refused(server):
    existing, _ = server.new_user("alice")
    local = existing.split("@")[0]
    look_alike = local.replace("l", "1", 1)
    cases = {
        "admin": "not-acceptable",
        "p0stmaster": "not-acceptable",
        "Abuse": "not-acceptable",
        "аdmin": "not-acceptable",  # Cyrillic а
        "a b": "not-acceptable",
        local.upper(): "conflict",
        look_alike: "conflict",
    }
    for name, condition in cases.items():
        raw, _ = await raw_stream(server)
        resp = await raw_sign_up(raw, name, "secret")
        assert stanza_error_condition(resp) == condition, f"{name}: {tostr(resp)}"
        raw.close()
    raw, _ = await raw_stream(server)
    resp = await raw_sign_up(raw, fresh("ok"), "")
    assert stanza_error_condition(resp) == "not-acceptable", tostr(resp)
    raw.close()


@async_test
async def test_anonymous_host_never_offers_sign_up(server):
    raw, features = await raw_stream(server, host=server.anon_domain)
    assert features.find(f"{{{NS_FEATURE}}}register") is None, tostr(features)
    resp = await raw_sign_up(raw, fresh("guest"), "secret")
    assert stanza_error_condition(resp) == "service-unavailable", tostr(resp)
    raw.close()


limited = server_fixture(
    "signup-limited", require_encryption=False, top_toml='registration = "open"',
    extra_limits={"registrations_per_hour": 2},
)


@async_test
async def test_open_sign_up_is_limited_per_address(limited):
    made = []
    for _ in range(2):
        raw, _ = await raw_stream(limited)
        user = fresh("lim")
        resp = await raw_sign_up(raw, user, "secret")
        assert resp.get("type") == "result", tostr(resp)
        made.append(user)
        raw.close()
    raw, _ = await raw_stream(limited)
    resp = await raw_sign_up(raw, fresh("lim"), "secret")
    assert stanza_error_condition(resp) == "resource-constraint", tostr(resp)
    raw.close()
    # Another address has its own allowance.
    raw, _ = await raw_stream(limited, source_ip="127.0.0.2")
    resp = await raw_sign_up(raw, fresh("lim"), "secret")
    assert resp.get("type") == "result", tostr(resp)
    raw.close()
    assert "too many from this address" in limited.log_text()


closed = server_fixture("signup-closed", require_encryption=False)


@async_test
async def test_closed_by_default(closed):
    raw, features = await raw_stream(closed)
    assert features.find(f"{{{NS_FEATURE}}}register") is None, tostr(features)
    resp = await raw.iq(f"<iq type='get' id='g'><query xmlns='{NS_REGISTER}'/></iq>", "g")
    assert stanza_error_condition(resp) == "service-unavailable", tostr(resp)
    resp = await raw_sign_up(raw, fresh("no"), "secret")
    assert stanza_error_condition(resp) == "service-unavailable", tostr(resp)
    raw.close()


@async_test
async def test_attempts_are_limited_per_address_too(limited):
    # Ten attempts per account allowed (2 an hour here): refused names count.
    raw, _ = await raw_stream(limited, source_ip="127.0.0.3")
    for i in range(20):
        resp = await raw_sign_up(raw, "admin", "secret", iid=f"a{i}")
        assert stanza_error_condition(resp) == "not-acceptable", tostr(resp)
    resp = await raw_sign_up(raw, fresh("late"), "secret", iid="last")
    assert stanza_error_condition(resp) == "resource-constraint", tostr(resp)
    raw.close()
