"""`http.trusted_proxies`: X-Forwarded-For and X-Forwarded-Proto are believed only from the
listed proxies. Observed through the per-address failed-login limit over BOSH: behind a trusted
proxy each forwarded client has its own budget; from anyone else the header is ignored and
every request counts against the real peer."""

import asyncio
import base64
import http.client
import xml.etree.ElementTree as ET

from conftest import server_fixture
from helpers import async_test, tostr

NS_BIND = "http://jabber.org/protocol/httpbind"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"

trusting = server_fixture("proxied", login_failures_per_minute=3,
                          http={"trusted_proxies": ["127.0.0.1"]})
direct = server_fixture("unproxied", login_failures_per_minute=3)


def post(port: int, body: str, forwarded_for: str) -> ET.Element:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    connection.request("POST", "/http-bind", body.encode(), {
        "Content-Type": "text/xml; charset=utf-8",
        "X-Forwarded-For": forwarded_for,
        "X-Forwarded-Proto": "https",
    })
    response = connection.getresponse()
    text = response.read().decode()
    connection.close()
    assert response.status == 200, text
    return ET.fromstring(text)


async def plain_login(port: int, forwarded_for: str, user: str, password: str) -> str:
    """One BOSH session and one PLAIN attempt; returns the SASL outcome's element name (and
    condition for failures)."""
    rid = 5000

    async def request(payload: str = "", extra: str = "", sid: str | None = None) -> ET.Element:
        nonlocal rid
        rid += 1
        sid_attr = f" sid='{sid}'" if sid else ""
        body = (f"<body xmlns='{NS_BIND}' xmlns:xmpp='urn:xmpp:xbosh' rid='{rid}'{sid_attr}{extra}>"
                f"{payload}</body>")
        return await asyncio.to_thread(post, port, body, forwarded_for)

    created = await request(extra=" to='localhost' wait='2' hold='1' xmpp:version='1.0'")
    sid = created.get("sid")
    assert sid, tostr(created)
    mechanisms = [m.text for m in created.iter(f"{{{NS_SASL}}}mechanism")]
    assert "PLAIN" in mechanisms, f"PLAIN not offered (connection not seen as secure): {tostr(created)}"
    token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    response = await request(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{token}</auth>", sid=sid)
    for _ in range(4):
        for child in response:
            if child.tag == f"{{{NS_SASL}}}success":
                return "success"
            if child.tag == f"{{{NS_SASL}}}failure":
                return "failure:" + child[0].tag.split("}")[1]
        response = await request(sid=sid)
    raise AssertionError(f"no SASL outcome: {tostr(response)}")


@async_test()
async def test_each_forwarded_client_has_its_own_budget(trusting):
    trusting.add_user("proxied", "right")
    for _ in range(3):
        assert await plain_login(trusting.http_port, "10.1.1.1", "proxied", "wrong") == "failure:not-authorized"
    # The same forwarded client is now refused even with the right password…
    assert await plain_login(trusting.http_port, "10.1.1.1", "proxied", "right") == "failure:temporary-auth-failure"
    # …while another client behind the same proxy is not.
    assert await plain_login(trusting.http_port, "10.1.1.2", "proxied", "right") == "success"


@async_test()
async def test_forwarded_headers_from_untrusted_peers_are_ignored(direct):
    direct.add_user("direct", "right")
    for forwarded in ("10.2.2.1", "10.2.2.2", "10.2.2.3"):
        assert await plain_login(direct.http_port, forwarded, "direct", "wrong") == "failure:not-authorized"
    # Every attempt counted against 127.0.0.1, whatever the header said.
    assert await plain_login(direct.http_port, "10.2.2.4", "direct", "right") == "failure:temporary-auth-failure"
