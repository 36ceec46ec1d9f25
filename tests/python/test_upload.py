"""HTTP File Upload (XEP-0363): discovery, slots and their limits (size, type, quotas, anonymous
visitors), the PUT (signed, once, exact size and type, streamed, nothing left behind on failure),
the GET (stored type, ranges, nosniff, Content-Disposition, CORS) and expiry."""

from __future__ import annotations

import asyncio
import io
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

import pytest

from conftest import server_fixture
from helpers import (
    NS_CLIENT, Client, Clients, RawXmpp, async_test, insecure_tls_context, stanza_error_condition,
    tostr, uid,
)

NS_UPLOAD = "urn:xmpp:http:upload:0"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
NS_DATA = "jabber:x:data"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
UPLOAD = "upload.localhost"

MAX = 100_000
ANON_MAX = 1000
DAILY = 250_000

server = server_fixture(
    "upload",
    require_encryption=False,
    upload={"max_file_size": MAX, "quota_per_day": DAILY, "anonymous": {"max_file_size": ANON_MAX}},
)
strict = server_fixture(
    "upload-strict",
    require_encryption=False,
    upload={
        # Each slot counts at least 4 KiB while unused: room for the other tests' slots.
        "total_quota": 50_000,
        "allowed_types": ["image/*", "text/plain"],
        "anonymous": {"enabled": False},
    },
)
short = server_fixture(
    "upload-short",
    require_encryption=False,
    upload={"slot_lifetime": 2, "expire_after": 3, "sweep_interval": 1},
)


# -- helpers ---------------------------------------------------------------------------------


def http(method: str, url: str, data: bytes | None = None, headers: dict | None = None):
    """One HTTP request; returns (status, headers, body) for success and error statuses. The
    upload URLs are on the HTTPS listener, whose certificate is self-signed: no verification."""
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10, context=insecure_tls_context()) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


async def ahttp(*args, **kwargs):
    return await asyncio.to_thread(http, *args, **kwargs)


async def login(cs: Clients, srv, upload_plugin: bool = False) -> Client:
    jid, pw = srv.new_user("up")
    c = cs.add(Client(srv, f"{jid}/r{uid()}", pw, mech="SCRAM-SHA-256"))
    if upload_plugin:
        c.x.register_plugin("xep_0363")
    return await c.login()


@pytest.fixture
def unverified_aiohttp(monkeypatch):
    """slixmpp's XEP-0363 plugin PUTs with its own aiohttp session; the test server's HTTPS
    certificate is self-signed, so that session must not verify it."""
    import aiohttp
    from slixmpp.plugins.xep_0363 import http_upload

    def session(**kwargs):
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False), **kwargs)

    monkeypatch.setattr(http_upload, "ClientSession", session)


def request_xml(filename="a.txt", size: int | str | None = 10, content_type="text/plain") -> str:
    attrs = []
    if filename is not None:
        attrs.append(f"filename='{filename}'")
    if size is not None:
        attrs.append(f"size='{size}'")
    if content_type is not None:
        attrs.append(f"content-type='{content_type}'")
    return f"<request xmlns='{NS_UPLOAD}' {' '.join(attrs)}/>"


class Slot:
    def __init__(self, put: str, get: str, headers: dict):
        self.put, self.get, self.headers = put, get, headers

    @property
    def id(self) -> str:
        return urllib.parse.urlsplit(self.put).path.split("/")[2]


def parse_slot(iq: ET.Element) -> Slot:
    slot = iq.find(f"{{{NS_UPLOAD}}}slot")
    assert slot is not None, f"no slot in {tostr(iq)}"
    put = slot.find(f"{{{NS_UPLOAD}}}put")
    get = slot.find(f"{{{NS_UPLOAD}}}get")
    assert put is not None and get is not None, tostr(iq)
    headers = {h.get("name"): h.text or "" for h in put.findall(f"{{{NS_UPLOAD}}}header")}
    return Slot(put.get("url"), get.get("url"), headers)


async def request_slot(c: Client, **kwargs) -> ET.Element:
    resp = await c.iq("get", UPLOAD, request_xml(**kwargs))
    return resp.xml


async def get_slot(c: Client, **kwargs) -> Slot:
    resp = await request_slot(c, **kwargs)
    assert resp.get("type") == "result", tostr(resp)
    return parse_slot(resp)


async def put(slot: Slot, data: bytes, content_type="text/plain", headers=None, length=None):
    h = {"Content-Type": content_type, **slot.headers, **(headers or {})}
    if length is not None:
        h["Content-Length"] = str(length)
    return await ahttp("PUT", slot.put, data=data, headers=h)


def uploads_dir(srv):
    return srv.data_dir / "uploads"


def stored_names(srv) -> set[str]:
    return {p.name for p in uploads_dir(srv).iterdir()}


def assert_nothing_stored(srv, slot: Slot):
    names = stored_names(srv)
    assert slot.id not in names and f"{slot.id}.part" not in names, (
        f"something was written for slot {slot.id}: {sorted(names)}"
    )


async def guest(srv) -> tuple[RawXmpp, str]:
    raw = await RawXmpp.connect(srv.c2s_port)
    await raw.open_stream("anon.localhost")
    result = await raw.auth("ANONYMOUS", b"")
    assert result.tag.endswith("success"), tostr(result)
    await raw.open_stream()
    jid = await raw.bind()
    return raw, jid


async def guest_request(raw: RawXmpp, **kwargs) -> ET.Element:
    iid = "slot-" + uid()
    return await raw.iq(f"<iq type='get' to='{UPLOAD}' id='{iid}'>{request_xml(**kwargs)}</iq>", iid)


def error_of(iq: ET.Element) -> tuple[str | None, str | None]:
    err = iq.find(f"{{{NS_CLIENT}}}error")
    assert iq.get("type") == "error" and err is not None, f"expected an error: {tostr(iq)}"
    return err.get("type"), stanza_error_condition(iq)


# -- discovery -------------------------------------------------------------------------------


@async_test
async def test_upload_service_is_discoverable(server):
    async with Clients() as cs:
        c = await login(cs, server)
        items = await c.iq("get", "localhost", f"<query xmlns='{NS_DISCO_ITEMS}'/>")
        jids = {i.get("jid") for i in items.xml.iter(f"{{{NS_DISCO_ITEMS}}}item")}
        assert UPLOAD in jids, f"upload service not in server disco#items: {items}"
        info = (await c.iq("get", UPLOAD, f"<query xmlns='{NS_DISCO_INFO}'/>")).xml
        identities = {(i.get("category"), i.get("type")) for i in info.iter(f"{{{NS_DISCO_INFO}}}identity")}
        assert ("store", "file") in identities, tostr(info)
        features = {f.get("var") for f in info.iter(f"{{{NS_DISCO_INFO}}}feature")}
        assert NS_UPLOAD in features, tostr(info)
        fields = {
            f.get("var"): f.findtext(f"{{{NS_DATA}}}value")
            for f in info.iter(f"{{{NS_DATA}}}field")
        }
        assert fields.get("FORM_TYPE") == NS_UPLOAD, tostr(info)
        assert fields.get("max-file-size") == str(MAX), tostr(info)


# -- the happy path --------------------------------------------------------------------------


@async_test
async def test_slixmpp_uploads_and_another_user_downloads(server, unverified_aiohttp):
    data = bytes(range(256)) * 200 + b"end"  # 51203 bytes, every byte value
    async with Clients() as cs:
        sender = await login(cs, server, upload_plugin=True)
        url = await sender.x.plugin["xep_0363"].upload_file(
            "très cool.bin", size=len(data), content_type="application/octet-stream",
            input_file=io.BytesIO(data), timeout=10,
        )
        # With listen.https on and no public_url, the URLs are on the HTTPS listener.
        assert url.startswith(f"https://localhost:{server.https_port}/upload/"), url
        assert url.endswith("/tr%C3%A8s%20cool.bin"), url
        receiver = await login(cs, server)
        sender.send_message(receiver.bare, url)
        msg = await receiver.wait_message(lambda m: m["body"] == url)
        status, headers, body = await ahttp("GET", msg["body"])
        assert status == 200 and body == data, (status, len(body))
        assert headers["Content-Type"] == "application/octet-stream", dict(headers)
        # On disk under the server's id, not the client's name.
        file_id = urllib.parse.urlsplit(url).path.split("/")[2]
        assert re.fullmatch(r"[0-9a-f]{32}", file_id), url
        assert (uploads_dir(server) / file_id).read_bytes() == data
        assert not any("cool" in n for n in stored_names(server)), stored_names(server)


# -- slot requests refused -------------------------------------------------------------------


@async_test
async def test_slot_larger_than_allowed_gets_file_too_large_with_the_maximum(server):
    async with Clients() as cs:
        c = await login(cs, server)
        resp = await request_slot(c, size=MAX + 1)
        assert error_of(resp) == ("modify", "not-acceptable"), tostr(resp)
        max_size = resp.find(f".//{{{NS_UPLOAD}}}file-too-large/{{{NS_UPLOAD}}}max-file-size")
        assert max_size is not None and max_size.text == str(MAX), tostr(resp)
        # Exactly the maximum is fine.
        await get_slot(c, size=MAX)


@async_test
async def test_negative_missing_or_garbage_size_and_missing_filename_are_bad_requests(server):
    async with Clients() as cs:
        c = await login(cs, server)
        for kwargs in ({"size": -5}, {"size": None}, {"size": "ten"}, {"size": ""},
                       {"filename": None}, {"filename": ""}, {"content_type": "notatype"}):
            resp = await request_slot(c, **kwargs)
            assert error_of(resp) == ("modify", "bad-request"), f"{kwargs}: {tostr(resp)}"


@async_test
async def test_filename_with_dot_dot_gets_a_server_chosen_name(server):
    async with Clients() as cs:
        c = await login(cs, server)
        slot = await get_slot(c, filename="../../salon.toml", size=5)
        path = urllib.parse.urlsplit(slot.put).path
        assert re.fullmatch(r"/upload/[0-9a-f]{32}/salon\.toml", path), slot.put
        assert slot.get == slot.put
        before = (server.config_path).read_bytes()
        status, _, _ = await put(slot, b"owned")
        assert status == 201
        assert server.config_path.read_bytes() == before
        assert (uploads_dir(server) / slot.id).read_bytes() == b"owned"
        # A GET URL that tries to climb out of the upload directory finds nothing.
        base = f"http://127.0.0.1:{server.http_port}/upload"
        for sneaky in ("..%2F..%2Fsalon.toml/x", "..%2Fupload-secret/x", f"{slot.id}.part/x"):
            status, _, body = await ahttp("GET", f"{base}/{sneaky}")
            assert status == 404, (sneaky, status, body[:100])
        assert (await ahttp("GET", slot.get))[2] == b"owned"


@async_test
async def test_daily_quota_gives_resource_constraint(server):
    async with Clients() as cs:
        c = await login(cs, server)
        first = await get_slot(c, size=MAX, content_type="application/octet-stream")
        assert (await put(first, b"x" * MAX, "application/octet-stream"))[0] == 201
        # An unused slot counts too, until it is used or expires.
        await get_slot(c, size=MAX)
        resp = await request_slot(c, size=DAILY - 2 * MAX + 1)
        assert error_of(resp) == ("wait", "resource-constraint"), tostr(resp)
        # Another user is not affected.
        other = await login(cs, server)
        await get_slot(other, size=MAX)


# -- PUT refused -----------------------------------------------------------------------------


@async_test
async def test_reused_slot_is_refused_and_the_file_kept(server):
    async with Clients() as cs:
        c = await login(cs, server)
        slot = await get_slot(c, size=5)
        assert (await put(slot, b"first"))[0] == 201
        status, _, _ = await put(slot, b"other")
        assert status == 409, status
        assert (await ahttp("GET", slot.get))[2] == b"first"


@async_test
async def test_wrong_size_is_refused_and_nothing_written(server):
    async with Clients() as cs:
        c = await login(cs, server)
        slot = await get_slot(c, size=10)
        status, _, _ = await put(slot, b"short")
        assert status == 400, status
        assert_nothing_stored(server, slot)
        status, _, _ = await put(slot, b"far too long for it")
        assert status == 413, status
        assert_nothing_stored(server, slot)
        assert (await ahttp("GET", slot.get))[0] == 404
        # A failed attempt does not use up the slot.
        assert (await put(slot, b"0123456789"))[0] == 201
        assert (await ahttp("GET", slot.get))[2] == b"0123456789"


@async_test
async def test_wrong_content_type_is_refused_and_nothing_written(server):
    async with Clients() as cs:
        c = await login(cs, server)
        slot = await get_slot(c, size=4, content_type="image/png")
        status, _, _ = await put(slot, b"\x89PNG", content_type="text/html")
        assert status == 415, status
        assert_nothing_stored(server, slot)
        assert (await put(slot, b"\x89PNG", content_type="image/png"))[0] == 201


@async_test
async def test_missing_or_forged_authorization_is_forbidden(server):
    async with Clients() as cs:
        c = await login(cs, server)
        slot = await get_slot(c, size=3)
        other = await get_slot(c, size=3)
        status, _, _ = await ahttp("PUT", slot.put, data=b"abc", headers={"Content-Type": "text/plain"})
        assert status == 403
        token = slot.headers["Authorization"]
        forged = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
        assert (await put(slot, b"abc", headers={"Authorization": forged}))[0] == 403
        # Another slot's valid token does not open this one.
        assert (await put(slot, b"abc", headers={"Authorization": other.headers["Authorization"]}))[0] == 403
        assert_nothing_stored(server, slot)


async def raw_put(srv, slot: Slot, body: bytes, length: int, close_early: bool = False) -> int | None:
    """A PUT over a plain socket, to send a body that does not match Content-Length or to hang
    up half way. Returns the status, or None if there was no answer."""
    def run():
        path = urllib.parse.urlsplit(slot.put).path
        head = (
            f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n"
            f"Authorization: {slot.headers['Authorization']}\r\nContent-Length: {length}\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", srv.http_port), timeout=10) as s:
            s.sendall(head + body)
            if close_early:
                time.sleep(0.3)
                return None
            data = b""
            try:
                while chunk := s.recv(4096):
                    data += chunk
            except OSError:
                pass
        m = re.match(rb"HTTP/1\.1 (\d+)", data)
        return int(m.group(1)) if m else None

    return await asyncio.to_thread(run)


@async_test
async def test_interrupted_upload_leaves_no_partial_file(server):
    async with Clients() as cs:
        c = await login(cs, server)
        slot = await get_slot(c, size=50_000)
        await raw_put(server, slot, b"y" * 20_000, length=50_000, close_early=True)
        # The server notices the hang-up and removes what it had written.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (
            slot.id in stored_names(server) or f"{slot.id}.part" in stored_names(server)
        ):
            await asyncio.sleep(0.1)
        assert_nothing_stored(server, slot)
        assert (await ahttp("GET", slot.get))[0] == 404
        # The slot can be used again after the failed attempt.
        assert (await put(slot, b"z" * 50_000))[0] == 201
        assert (await ahttp("GET", slot.get))[2] == b"z" * 50_000


# -- GET -------------------------------------------------------------------------------------


@async_test
async def test_range_request_gets_206_with_the_right_bytes(server):
    data = bytes(i % 251 for i in range(1000))
    async with Clients() as cs:
        c = await login(cs, server)
        slot = await get_slot(c, size=len(data), content_type="application/octet-stream")
        assert (await put(slot, data, "application/octet-stream"))[0] == 201
        status, headers, body = await ahttp("GET", slot.get, headers={"Range": "bytes=100-199"})
        assert status == 206, status
        assert headers["Content-Range"] == "bytes 100-199/1000", dict(headers)
        assert body == data[100:200]
        status, headers, body = await ahttp("GET", slot.get, headers={"Range": "bytes=-10"})
        assert status == 206 and body == data[-10:], (status, body)


@async_test
async def test_html_is_an_attachment_and_never_sniffed(server):
    html = b"<html><script>alert(1)</script></html>"
    async with Clients() as cs:
        c = await login(cs, server)
        slot = await get_slot(c, filename="page.html", size=len(html), content_type="text/html")
        assert (await put(slot, html, "text/html"))[0] == 201
        status, headers, body = await ahttp("GET", slot.get)
        assert status == 200 and body == html
        assert headers["Content-Type"] == "text/html", dict(headers)
        assert headers["X-Content-Type-Options"] == "nosniff", dict(headers)
        assert headers["Content-Disposition"].startswith("attachment"), dict(headers)
        assert 'filename="page.html"' in headers["Content-Disposition"], dict(headers)
        # SVG can carry script too.
        svg = b"<svg xmlns='http://www.w3.org/2000/svg'/>"
        slot = await get_slot(c, filename="x.svg", size=len(svg), content_type="image/svg+xml")
        assert (await put(slot, svg, "image/svg+xml"))[0] == 201
        assert (await ahttp("GET", slot.get))[1]["Content-Disposition"].startswith("attachment")
        # A PNG is shown in place.
        png = b"\x89PNG\r\n\x1a\n"
        slot = await get_slot(c, filename="p.png", size=len(png), content_type="image/png")
        assert (await put(slot, png, "image/png"))[0] == 201
        status, headers, _ = await ahttp("GET", slot.get)
        assert headers["Content-Disposition"].startswith("inline"), dict(headers)
        assert headers["X-Content-Type-Options"] == "nosniff"


@async_test
async def test_cors_preflight_for_put_and_headers_on_get(server):
    async with Clients() as cs:
        c = await login(cs, server)
        slot = await get_slot(c, size=2)
        status, headers, _ = await ahttp("OPTIONS", slot.put, headers={
            "Origin": "https://chat.example",
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "authorization, content-type",
        })
        assert status in (200, 204), status
        assert headers["Access-Control-Allow-Origin"] in ("*", "https://chat.example"), dict(headers)
        methods = headers["Access-Control-Allow-Methods"].upper()
        assert "PUT" in methods and "GET" in methods, dict(headers)
        allowed = headers["Access-Control-Allow-Headers"].lower()
        assert "authorization" in allowed and "content-type" in allowed, dict(headers)
        assert_nothing_stored(server, slot)
        status, headers, _ = await put(slot, b"hi", headers={"Origin": "https://chat.example"})
        assert status == 201 and headers["Access-Control-Allow-Origin"], dict(headers)
        status, headers, _ = await ahttp("GET", slot.get, headers={"Origin": "https://chat.example"})
        assert status == 200 and headers["Access-Control-Allow-Origin"], dict(headers)
        assert "content-range" in (headers["Access-Control-Expose-Headers"] or "").lower()


# -- anonymous visitors ----------------------------------------------------------------------


@async_test
async def test_anonymous_visitor_has_a_smaller_limit(server):
    raw, _ = await guest(server)
    try:
        resp = await guest_request(raw, size=ANON_MAX + 1)
        assert error_of(resp) == ("modify", "not-acceptable"), tostr(resp)
        max_size = resp.find(f".//{{{NS_UPLOAD}}}max-file-size")
        assert max_size is not None and max_size.text == str(ANON_MAX), tostr(resp)
        iid = "info-" + uid()
        info = await raw.iq(f"<iq type='get' to='{UPLOAD}' id='{iid}'><query xmlns='{NS_DISCO_INFO}'/></iq>", iid)
        values = [f.findtext(f"{{{NS_DATA}}}value") for f in info.iter(f"{{{NS_DATA}}}field")
                  if f.get("var") == "max-file-size"]
        assert values == [str(ANON_MAX)], tostr(info)
        slot = parse_slot(await guest_request(raw, size=ANON_MAX))
        assert (await put(slot, b"v" * ANON_MAX))[0] == 201
        assert (await ahttp("GET", slot.get))[2] == b"v" * ANON_MAX
    finally:
        raw.close()


@async_test
async def test_anonymous_uploads_can_be_switched_off(strict):
    raw, _ = await guest(strict)
    try:
        resp = await guest_request(raw, size=10)
        assert error_of(resp) == ("cancel", "not-allowed"), tostr(resp)
    finally:
        raw.close()


# -- server-wide limits ----------------------------------------------------------------------


@async_test
async def test_content_types_not_allowed_are_refused(strict):
    async with Clients() as cs:
        c = await login(cs, strict)
        resp = await request_slot(c, filename="a.zip", size=10, content_type="application/zip")
        assert error_of(resp) == ("modify", "not-acceptable"), tostr(resp)
        assert resp.find(f".//{{{NS_UPLOAD}}}file-too-large") is None, tostr(resp)
        await get_slot(c, filename="a.png", size=10, content_type="image/png")


@async_test
async def test_total_quota_gives_resource_constraint(strict):
    async with Clients() as cs:
        a = await login(cs, strict)
        slot = await get_slot(a, size=30_000)
        assert (await put(slot, b"t" * 30_000))[0] == 201
        b = await login(cs, strict)
        resp = await request_slot(b, size=25_000)
        assert error_of(resp) == ("wait", "resource-constraint"), tostr(resp)


# -- time limits -----------------------------------------------------------------------------


@async_test
async def test_expired_slot_is_forbidden_and_nothing_written(short):
    async with Clients() as cs:
        c = await login(cs, short)
        slot = await get_slot(c, size=4)
        await asyncio.sleep(3.2)
        status, _, _ = await put(slot, b"late")
        assert status == 403, status
        assert_nothing_stored(short, slot)


@async_test
async def test_expired_file_is_deleted_from_disk_and_gone(short):
    async with Clients() as cs:
        c = await login(cs, short)
        slot = await get_slot(c, size=4)
        assert (await put(slot, b"gone"))[0] == 201
        path = uploads_dir(short) / slot.id
        assert path.read_bytes() == b"gone"
        assert (await ahttp("GET", slot.get))[0] == 200
        deadline = time.monotonic() + 10
        while path.exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert not path.exists(), "expired upload still on disk"
        status, _, _ = await ahttp("GET", slot.get)
        assert status == 404, status
