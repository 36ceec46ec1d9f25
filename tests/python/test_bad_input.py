"""Bad input from the network (RFC 6120 §4.9, §8.1.2.1, §11, §13.12).

Each test opens a raw cleartext stream on the STARTTLS port (this server has
require_encryption=false so that PLAIN works without TLS for the authenticated cases), sends
bad input and asserts the exact stream error (namespace urn:ietf:params:xml:ns:xmpp-streams)
and that the server closes the connection. A separate slixmpp client ("witness", logged in
before the bad input) must still be connected afterwards and able to ping the server: bad
input never hurts anyone else.
"""

import asyncio

import pytest

from conftest import server_fixture
from helpers import (
    NS_CLIENT, NS_STREAM, Client, Clients, RawXmpp, async_test, mechanisms_of,
    stanza_error_condition, stream_header, tostr, uid,
)

MAX_STANZA = 10000

server = server_fixture("badinput", require_encryption=False, max_stanza_bytes=MAX_STANZA)


@pytest.fixture(scope="module")
def accounts(server):
    return {
        "alice": ("alice", server.add_user("alice", "alice-pw"), "alice-pw"),
        "bob": ("bob", server.add_user("bob", "bob-pw"), "bob-pw"),
    }


async def witness(cs: Clients, server, accounts) -> Client:
    _, jid, pw = accounts["bob"]
    return await cs.login(server, f"{jid}/w{uid()}", pw, mech="SCRAM-SHA-256")


async def check_witness(w: Client, server):
    """The bystander is unaffected: still connected, no stream error, answers a ping."""
    server.assert_running()
    assert not w.stream_errors, f"witness got a stream error: {[str(e) for e in w.stream_errors]}"
    assert w.connected(), "witness was disconnected by someone else's bad input"
    await w.ping_server()


async def raw_login(server, accounts, who="alice") -> tuple[RawXmpp, str]:
    user, _jid, pw = accounts[who]
    raw = await RawXmpp.connect(server.c2s_port)
    features = await raw.open_stream()
    assert "PLAIN" in mechanisms_of(features), (
        f"PLAIN not offered without TLS although require_encryption=false: {tostr(features)}"
    )
    full = await raw.login_plain(user, pw, resource="raw" + uid())
    return raw, full


async def pre_auth_case(server, accounts, payload: bytes | str, expected: set[str]):
    async with Clients() as cs:
        w = await witness(cs, server, accounts)
        raw = await RawXmpp.connect(server.c2s_port)
        try:
            await raw.open_stream()
            await raw.try_send(payload)
            await raw.expect_error_and_close(expected)
        finally:
            raw.close()
        await check_witness(w, server)


async def header_case(server, accounts, header: bytes, expected: set[str]):
    async with Clients() as cs:
        w = await witness(cs, server, accounts)
        raw = await RawXmpp.connect(server.c2s_port)
        try:
            await raw.send(header)
            await raw.expect_error_and_close(expected)
        finally:
            raw.close()
        await check_witness(w, server)


# -- size and shape limits ----------------------------------------------------------------


@async_test
async def test_oversized_stanza_policy_violation(server, accounts):
    big = "a" * (MAX_STANZA + 2000)
    await pre_auth_case(
        server, accounts,
        f"<message to='localhost'><body>{big}</body></message>",
        {"policy-violation"},
    )


@async_test
async def test_oversized_unterminated_stanza_policy_violation(server, accounts):
    """The limit is enforced while the stanza streams in, not only once it is complete."""
    big = "a" * (MAX_STANZA * 3)
    await pre_auth_case(server, accounts, f"<message to='localhost'><body>{big}", {"policy-violation"})


@async_test
async def test_deep_nesting_policy_violation(server, accounts):
    depth = 200
    payload = "<message to='localhost'>" + "<a>" * depth + "</a>" * depth + "</message>"
    await pre_auth_case(server, accounts, payload, {"policy-violation"})


@async_test
async def test_too_many_attributes_policy_violation(server, accounts):
    attrs = " ".join(f"a{i}='x'" for i in range(500))
    await pre_auth_case(server, accounts, f"<message to='localhost' {attrs}/>", {"policy-violation"})


# -- restricted XML (RFC 6120 §11.1) ------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param("<!DOCTYPE message [<!ENTITY xxe 'boom'>]><message/>", id="doctype-entity"),
        pytest.param("<!ENTITY xxe SYSTEM 'file:///etc/passwd'>", id="entity-decl"),
        pytest.param("<?evil processing-instruction?>", id="processing-instruction"),
        pytest.param("<message to='localhost'><?pi inside?></message>", id="pi-in-stanza"),
        pytest.param("<!-- a comment -->", id="comment"),
    ],
)
@async_test
async def test_restricted_xml(server, accounts, payload):
    await pre_auth_case(server, accounts, payload, {"restricted-xml"})


@async_test
async def test_doctype_in_prolog_restricted_xml(server, accounts):
    header = (
        b"<?xml version='1.0'?><!DOCTYPE stream:stream [<!ENTITY xxe 'boom'>]>"
        + stream_header("localhost").split(b"?>", 1)[1]
    )
    await header_case(server, accounts, header, {"restricted-xml"})


@async_test
async def test_undefined_entity_reference(server, accounts):
    # An entity reference other than the five predefined ones: restricted (or, since it is
    # undeclared, not well-formed).
    await pre_auth_case(
        server, accounts, "<message to='localhost'><body>&xxe;</body></message>",
        {"restricted-xml", "not-well-formed"},
    )


# -- not well-formed ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"<message to='localhost'><body>\xff\xfe</body></message>", id="invalid-utf8-ff"),
        pytest.param(b"<message to='localhost'><body>\xc3\x28</body></message>", id="truncated-utf8"),
        pytest.param(b"<message to='localhost'><body>\xed\xa0\x80</body></message>", id="utf8-surrogate"),
        pytest.param(b"<message to='localhost'><body>\xc0\xaf</body></message>", id="overlong-utf8"),
        pytest.param(b"<message to='localhost'><body>x</message>", id="mismatched-tags"),
        pytest.param(b"<message to='localhost'><body>\x01</body></message>", id="control-char"),
        pytest.param(b"<message to='localhost'><body>&#0;</body></message>", id="nul-char-ref"),
        pytest.param(b"<message to=localhost/>", id="unquoted-attribute"),
        pytest.param(b"<message to='a' to='b'/>", id="duplicate-attribute"),
        pytest.param(b"<message <body/>", id="garbage-tag"),
    ],
)
@async_test
async def test_not_well_formed(server, accounts, payload):
    await pre_auth_case(server, accounts, payload, {"not-well-formed"})


# -- stream header ------------------------------------------------------------------------


@async_test
async def test_invalid_jid_in_stream_to(server, accounts):
    # 'a@@b' is not a valid JID. RFC 6120 has no single condition for a malformed 'to' in the
    # stream header: <improper-addressing/> (bad address) and <host-unknown/> (not a host we
    # serve) are both reasonable; either is accepted.
    await header_case(server, accounts, stream_header("a@@b"), {"improper-addressing", "host-unknown"})


@async_test
async def test_unknown_host_in_stream_to(server, accounts):
    await header_case(server, accounts, stream_header("unknown.example"), {"host-unknown"})


@async_test
async def test_wrong_stream_namespace(server, accounts):
    header = (
        b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
        b"xmlns:stream='http://example.org/not-streams' to='localhost' version='1.0'>"
    )
    await header_case(server, accounts, header, {"invalid-namespace"})


@pytest.mark.parametrize("content_ns", ["urn:example:bogus", "jabber:server"])
@async_test
async def test_wrong_default_namespace(server, accounts, content_ns):
    # RFC 6120 §4.9.3.10: <invalid-namespace/> when the content namespace declared as the
    # default namespace is not supported; a client (c2s) stream is jabber:client only.
    header = (
        f"<?xml version='1.0'?><stream:stream xmlns='{content_ns}' "
        f"xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>"
    ).encode()
    await header_case(server, accounts, header, {"invalid-namespace"})


# -- transport-level garbage ----------------------------------------------------------------


@pytest.mark.parametrize(
    "request_line",
    [
        pytest.param(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", id="get"),
        pytest.param(b"POST /http-bind HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n",
                     id="post"),
        pytest.param(b"GET / HTTP/1.1\r\n", id="request-line-only"),
    ],
)
@async_test
async def test_http_request_on_xmpp_port(server, accounts, request_line):
    """An HTTP request is not an XML stream: a stream error, then the connection closes."""
    await header_case(server, accounts, request_line, {"not-well-formed"})


@async_test
async def test_tls_handshake_on_starttls_port(server, accounts):
    """A TLS ClientHello on the STARTTLS port is not XML: the server must answer and close
    (not-well-formed) or at least close, never hang or crash."""
    async with Clients() as cs:
        w = await witness(cs, server, accounts)
        import ssl as _ssl
        ctx = _ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = _ssl.CERT_NONE
        try:
            _r, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", server.c2s_port, ssl=ctx,
                                        server_hostname="localhost"),
                10,
            )
        except (_ssl.SSLError, ConnectionError, OSError, asyncio.IncompleteReadError):
            pass  # handshake refused: expected
        else:
            writer.close()
            raise AssertionError("a TLS handshake succeeded on the STARTTLS (cleartext) port")
        await check_witness(w, server)


@async_test
async def test_cleartext_on_direct_tls_port(server, accounts):
    async with Clients() as cs:
        w = await witness(cs, server, accounts)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.tls_port)
        try:
            writer.write(stream_header("localhost"))
            await writer.drain()
            data = b""
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while loop.time() < deadline:
                try:
                    chunk = await asyncio.wait_for(reader.read(4096), deadline - loop.time())
                except (ConnectionError, OSError):
                    chunk = b""
                except asyncio.TimeoutError:
                    break
                if not chunk:
                    break
                data += chunk
            assert reader.at_eof() or not data.startswith(b"<"), (
                f"direct TLS port spoke cleartext XMPP or kept the connection open: {data[:200]!r}"
            )
            assert reader.at_eof(), "direct TLS port did not close a cleartext connection within 10s"
        finally:
            writer.close()
        await check_witness(w, server)


@async_test
async def test_abrupt_disconnect_mid_stanza(server, accounts):
    async with Clients() as cs:
        w = await witness(cs, server, accounts)
        raw, _full = await raw_login(server, accounts)
        await raw.send(f"<message to='{w.jid}' id='half' type='chat'><body>half a stan")
        transport = raw.writer.transport
        sock = raw.writer.get_extra_info("socket")
        import socket as _socket, struct
        if sock is not None:
            # RST instead of FIN.
            sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
        await asyncio.sleep(0.5)
        assert not [m for m in w.messages if m["id"] == "half"], "half a stanza was delivered"
        await check_witness(w, server)


@async_test
async def test_client_closes_stream_gracefully(server, accounts):
    async with Clients() as cs:
        w = await witness(cs, server, accounts)
        raw, _full = await raw_login(server, accounts)
        await raw.send("</stream:stream>")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while not (raw.stream_closed or raw.eof) and loop.time() < deadline:
            try:
                await raw._read_more(deadline - loop.time())
            except asyncio.TimeoutError:
                break
        assert raw.stream_closed, (
            f"server did not answer </stream:stream> with its own closing tag:\n{raw.transcript()}"
        )
        deadline = loop.time() + 10
        while not raw.eof and loop.time() < deadline:
            try:
                await raw._read_more(deadline - loop.time())
            except asyncio.TimeoutError:
                break
        assert raw.eof, "server did not close the TCP connection after both streams closed"
        raw.close()
        await check_witness(w, server)


# -- authenticated streams ----------------------------------------------------------------


@async_test
async def test_split_writes_one_byte_at_a_time(server, accounts):
    async with Clients() as cs:
        w = await witness(cs, server, accounts)
        raw, full = await raw_login(server, accounts)
        try:
            iid = "split-" + uid()
            await raw.send_slowly(
                f"<iq type='get' to='localhost' id='{iid}'><ping xmlns='urn:xmpp:ping'/></iq>"
            )
            iq = await raw.expect(f"{{{NS_CLIENT}}}iq", predicate=lambda e: e.get("id") == iid)
            assert iq.get("type") == "result", f"split ping failed: {tostr(iq)}"

            # Multi-byte UTF-8 characters cut between writes arrive intact.
            mid = "splitmsg-" + uid()
            body = "héllo ✓ 𝄞 ünïcödé"
            await raw.send_slowly(
                f"<message to='{w.jid}' id='{mid}' type='chat'><body>{body}</body></message>"
            )
            m = await w.wait_message(lambda m: m["id"] == mid, what="split-write message")
            assert m["body"] == body, f"body corrupted: {m['body']!r}"
            assert str(m["from"]) == full
        finally:
            raw.close()
        await check_witness(w, server)


@async_test
async def test_stanza_under_limit_is_delivered(server, accounts):
    async with Clients() as cs:
        w = await witness(cs, server, accounts)
        raw, full = await raw_login(server, accounts)
        try:
            mid = "big-ok-" + uid()
            body = "b" * (MAX_STANZA // 2)
            await raw.send(f"<message to='{w.jid}' id='{mid}' type='chat'><body>{body}</body></message>")
            m = await w.wait_message(lambda m: m["id"] == mid, what="message under the size limit")
            assert m["body"] == body
        finally:
            raw.close()
        await check_witness(w, server)


@async_test
async def test_stanza_before_bad_xml_in_one_write_is_handled(server, accounts):
    """A whole stanza that came before the broken XML, in the same packet, is handled as it
    would be in a packet of its own (RFC 6120 §4.9: the error ends the stream from where it
    is), then the stream ends with not-well-formed."""
    async with Clients() as cs:
        w = await witness(cs, server, accounts)
        raw, _full = await raw_login(server, accounts)
        try:
            mid = "before-bad-" + uid()
            await raw.try_send(
                f"<message to='{w.jid}' id='{mid}' type='chat'><body>first</body></message>"
                "<message><body>broken</bod></message>"
            )
            await raw.expect_error_and_close({"not-well-formed"})
        finally:
            raw.close()
        m = await w.wait_message(lambda m: m["id"] == mid, what="the stanza before the bad XML")
        assert m["body"] == "first"
        await check_witness(w, server)


@async_test
async def test_oversized_stanza_after_auth(server, accounts):
    async with Clients() as cs:
        w = await witness(cs, server, accounts)
        raw, _full = await raw_login(server, accounts)
        try:
            mid = "big-" + uid()
            body = "c" * (MAX_STANZA + 1000)
            await raw.try_send(f"<message to='{w.jid}' id='{mid}' type='chat'><body>{body}</body></message>")
            await raw.expect_error_and_close({"policy-violation"})
        finally:
            raw.close()
        await check_witness(w, server)
        assert not [m for m in w.messages if m["id"] == mid], "oversized stanza was delivered"


@async_test
async def test_malformed_to_gets_jid_malformed(server, accounts):
    async with Clients() as cs:
        w = await witness(cs, server, accounts)
        raw, _full = await raw_login(server, accounts)
        try:
            mid = "badto-" + uid()
            await raw.send(f"<message to='@@' id='{mid}' type='chat'><body>x</body></message>")
            err = await raw.expect(f"{{{NS_CLIENT}}}message", predicate=lambda e: e.get("id") == mid)
            assert err.get("type") == "error", f"expected an error reply: {tostr(err)}"
            assert stanza_error_condition(err) == "jid-malformed", tostr(err)
            # The stream stays open and usable.
            iid = "after-" + uid()
            iq = await raw.iq(
                f"<iq type='get' to='localhost' id='{iid}'><ping xmlns='urn:xmpp:ping'/></iq>", iid
            )
            assert iq.get("type") == "result", tostr(iq)
            assert not raw.stream_closed and not raw.eof
        finally:
            raw.close()
        await check_witness(w, server)


@async_test
async def test_malformed_iq_to_gets_jid_malformed(server, accounts):
    async with Clients() as cs:
        w = await witness(cs, server, accounts)
        raw, _full = await raw_login(server, accounts)
        try:
            iid = "badiq-" + uid()
            iq = await raw.iq(
                f"<iq type='get' to='a@b@c' id='{iid}'><ping xmlns='urn:xmpp:ping'/></iq>", iid
            )
            assert iq.get("type") == "error", tostr(iq)
            assert stanza_error_condition(iq) == "jid-malformed", tostr(iq)
            iid = "after-" + uid()
            iq = await raw.iq(
                f"<iq type='get' to='localhost' id='{iid}'><ping xmlns='urn:xmpp:ping'/></iq>", iid
            )
            assert iq.get("type") == "result", tostr(iq)
        finally:
            raw.close()
        await check_witness(w, server)


@async_test
async def test_spoofed_from_is_stamped_or_rejected(server, accounts):
    """RFC 6120 §8.1.2.1: the server MUST stamp the real full JID or reject with <invalid-from/>."""
    _, bob_jid, _ = accounts["bob"]
    async with Clients() as cs:
        w = await witness(cs, server, accounts)
        raw, alice_full = await raw_login(server, accounts)
        try:
            mid = "spoof-" + uid()
            await raw.send(
                f"<message to='{w.jid}' from='{bob_jid}/x' id='{mid}' type='chat'>"
                f"<body>spoofed</body></message>"
            )
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            outcome = None
            while outcome is None and loop.time() < deadline:
                got = [m for m in w.messages if m["id"] == mid]
                if got:
                    frm = str(got[0]["from"])
                    assert frm != f"{bob_jid}/x", "server delivered the spoofed 'from' unchanged"
                    assert frm == alice_full, f"delivered with from={frm!r}, expected {alice_full!r}"
                    outcome = "stamped"
                    break
                try:
                    elem = await raw.next_element(0.2)
                except AssertionError:
                    continue  # nothing from the server yet
                if elem is None:
                    if not got:
                        raise AssertionError(
                            f"stream closed without <invalid-from/>:\n{raw.transcript()}"
                        )
                elif elem.tag == f"{{{NS_STREAM}}}error":
                    assert elem.find("{urn:ietf:params:xml:ns:xmpp-streams}invalid-from") is not None, (
                        f"unexpected stream error: {tostr(elem)}"
                    )
                    outcome = "invalid-from"
            assert outcome, f"spoofed message neither delivered nor rejected:\n{raw.transcript()}"
            if outcome == "invalid-from":
                await raw.expect_closed()
                await asyncio.sleep(0.3)
                assert not [m for m in w.messages if m["id"] == mid], "rejected stanza was delivered"
        finally:
            raw.close()
        await check_witness(w, server)


@async_test
async def test_stanza_before_auth_not_authorized(server, accounts):
    """RFC 6120 §6.4: stanzas before authentication get <not-authorized/>."""
    await pre_auth_case(
        server, accounts,
        "<iq type='get' to='localhost' id='x'><ping xmlns='urn:xmpp:ping'/></iq>",
        {"not-authorized"},
    )


@async_test
async def test_server_survived_everything(server):
    """Runs last in this module: the server process is still alive after all the above."""
    server.assert_running()
