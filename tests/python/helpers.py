"""Client-side helpers: a thin slixmpp wrapper (`Client`) and a raw XML stream (`RawXmpp`).

Every wait is bounded (TIMEOUT seconds by default) so that a broken server fails a test
quickly instead of hanging the suite.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import logging
import ssl
import uuid
import xml.etree.ElementTree as ET
from typing import Callable, Iterable

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from salon_server import SalonServer

log = logging.getLogger("salon-tests")

TIMEOUT = 10.0  # seconds for any single wait
TEST_TIMEOUT = 90.0  # seconds for a whole test

NS_CLIENT = "jabber:client"
NS_STREAM = "http://etherx.jabber.org/streams"
NS_STREAM_ERR = "urn:ietf:params:xml:ns:xmpp-streams"
NS_STANZA_ERR = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
NS_DELAY = "urn:xmpp:delay"


def async_test(fn=None, *, timeout: float = TEST_TIMEOUT):
    """Runs an `async def` test in a fresh event loop, bounded by `timeout` seconds."""

    def decorate(coro_fn):
        @functools.wraps(coro_fn)
        def wrapper(*args, **kwargs):
            async def bounded():
                try:
                    return await asyncio.wait_for(coro_fn(*args, **kwargs), timeout)
                except asyncio.TimeoutError:
                    raise AssertionError(f"test did not finish within {timeout}s") from None

            return asyncio.run(bounded())

        return wrapper

    return decorate(fn) if fn is not None else decorate


def rss_mib(pid: int) -> float:
    """A process's resident memory in MiB (/proc/PID/status), for the servers' memory bounds."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/PID/status")


def cpu_seconds(pid: int) -> float:
    """A process's user and system CPU time (/proc/PID/stat, in clock ticks of 1/100 s)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100


def insecure_tls_context() -> ssl.SSLContext:
    """The server uses a self-signed certificate: no verification."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def uid() -> str:
    return uuid.uuid4().hex[:10]


def local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def ns_of(tag: str) -> str:
    return tag[1:].split("}", 1)[0] if tag.startswith("{") else ""


def stanza_error_condition(elem: ET.Element) -> str | None:
    """The defined condition of a stanza error (<error><COND xmlns=...stanzas/></error>)."""
    err = elem.find(f"{{{NS_CLIENT}}}error")
    if err is None:
        err = elem.find("error")
    if err is None:
        return None
    for child in err:
        if ns_of(child.tag) == NS_STANZA_ERR and local(child.tag) != "text":
            return local(child.tag)
    return None


def tostr(elem: ET.Element | None) -> str:
    if elem is None:
        return "None"
    return ET.tostring(elem, encoding="unicode")


# ---------------------------------------------------------------------------------------------
# slixmpp client
# ---------------------------------------------------------------------------------------------


class Client:
    """A slixmpp ClientXMPP connected to 127.0.0.1 with test-friendly bookkeeping.

    Every received <message/> and <presence/> is recorded (in order) and can be awaited with
    `wait_message` / `wait_presence`.
    """

    def __init__(
        self,
        server: SalonServer,
        jid: str,
        password: str = "",
        *,
        mech: str | None = None,
        direct_tls: bool = False,
        send_presence: bool = True,
    ):
        self.server = server
        self.direct_tls = direct_tls
        self.port = server.tls_port if direct_tls else server.c2s_port
        self.send_initial_presence = send_presence
        self.x = slixmpp.ClientXMPP(jid, password, sasl_mech=mech)
        x = self.x
        x.ssl_context = insecure_tls_context()
        x.enable_direct_tls = direct_tls
        x.enable_starttls = not direct_tls
        x.enable_plaintext = False
        x.whitespace_keepalive = False
        # Subscriptions are handled explicitly by the tests.
        x.auto_authorize = None
        x.auto_subscribe = False

        loop = asyncio.get_running_loop()
        self.session_started = loop.create_future()
        self.auth_failures: list = []
        self.stream_errors: list = []
        self.messages: list = []
        self.presences: list = []
        self.features_seen: list[ET.Element] = []
        self.is_disconnected = asyncio.Event()
        self._changed = asyncio.Event()
        self.connection_errors: list = []

        x.add_event_handler("session_start", self._on_session_start)
        x.add_event_handler("failed_auth", self._on_failed_auth)
        x.add_event_handler("failed_all_auth", self._on_failed_all_auth)
        x.add_event_handler("stream_error", self._on_stream_error)
        x.add_event_handler("disconnected", self._on_disconnected)
        x.add_event_handler("connection_failed", self._on_connection_failed)
        x.register_handler(
            Callback("test messages", MatchXPath(f"{{{NS_CLIENT}}}message"), self._on_message)
        )
        x.register_handler(
            Callback("test presences", MatchXPath(f"{{{NS_CLIENT}}}presence"), self._on_presence)
        )
        x.register_handler(
            Callback(
                "test features",
                MatchXPath(f"{{{NS_STREAM}}}features"),
                lambda f: self.features_seen.append(f.xml),
            )
        )

    # -- events ----------------------------------------------------------------------------

    def _poke(self):
        self._changed.set()

    def _on_session_start(self, _event):
        if self.send_initial_presence:
            self.x.send_presence()
        if not self.session_started.done():
            self.session_started.set_result(True)
        self._poke()

    def _on_failed_auth(self, stanza):
        self.auth_failures.append(stanza)
        self._poke()

    def _on_failed_all_auth(self, _e):
        self._poke()

    def _on_stream_error(self, err):
        self.stream_errors.append(err)
        self._poke()

    def _on_disconnected(self, _reason):
        self.is_disconnected.set()
        self._poke()

    def _on_connection_failed(self, err):
        self.connection_errors.append(err)
        self._poke()

    def _on_message(self, msg):
        self.messages.append(msg)
        self._poke()

    def _on_presence(self, pres):
        self.presences.append(pres)
        self._poke()

    # -- waiting ---------------------------------------------------------------------------

    async def wait_until(self, predicate: Callable[[], object], timeout: float = TIMEOUT,
                         what: str = "condition"):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            value = predicate()
            if value:
                return value
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"{self.x.boundjid}: timed out after {timeout}s waiting for {what}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.5))
            except asyncio.TimeoutError:
                pass

    async def wait_message(self, predicate=lambda m: True, timeout: float = TIMEOUT,
                           what: str = "message"):
        def find():
            for m in self.messages:
                if predicate(m):
                    return m
            return None

        try:
            return await self.wait_until(find, timeout, what)
        except AssertionError as e:
            seen = "\n".join(str(m) for m in self.messages) or "(none)"
            raise AssertionError(f"{e}\nmessages received:\n{seen}") from None

    async def wait_presence(self, predicate=lambda p: True, timeout: float = TIMEOUT,
                            what: str = "presence"):
        def find():
            for p in self.presences:
                if predicate(p):
                    return p
            return None

        try:
            return await self.wait_until(find, timeout, what)
        except AssertionError as e:
            seen = "\n".join(str(p) for p in self.presences) or "(none)"
            raise AssertionError(f"{e}\npresences received:\n{seen}") from None

    # -- connection ------------------------------------------------------------------------

    def start_connect(self):
        self.x.connect("127.0.0.1", self.port)

    async def login(self, timeout: float = TIMEOUT) -> "Client":
        """Connects and waits until the session is bound (session_start)."""
        self.start_connect()
        try:
            await self.wait_until(
                lambda: self.session_started.done() or self.auth_failures or self.stream_errors
                or self.is_disconnected.is_set(),
                timeout,
                "session start",
            )
        except AssertionError:
            await self.close()
            raise AssertionError(
                f"{self.x.requested_jid}: login did not complete within {timeout}s "
                f"(connection errors: {self.connection_errors})"
            ) from None
        if not self.session_started.done():
            details = (
                f"auth failures: {[str(f) for f in self.auth_failures]}, "
                f"stream errors: {[str(e) for e in self.stream_errors]}, "
                f"disconnected: {self.is_disconnected.is_set()}"
            )
            await self.close()
            raise AssertionError(f"{self.x.requested_jid}: login failed: {details}")
        return self

    @property
    def jid(self) -> str:
        return str(self.x.boundjid.full)

    @property
    def bare(self) -> str:
        return str(self.x.boundjid.bare)

    def connected(self) -> bool:
        return self.x.is_connected() and not self.is_disconnected.is_set()

    def tls_in_use(self) -> bool:
        return isinstance(self.x.socket, (ssl.SSLObject, ssl.SSLSocket))

    async def close(self, timeout: float = 5.0):
        x = self.x
        x.cancel_connection_attempt()
        if x.transport is not None and not self.is_disconnected.is_set():
            try:
                x.disconnect(wait=1.0)
                await asyncio.wait_for(self.is_disconnected.wait(), timeout)
            except (asyncio.TimeoutError, Exception):
                x.abort()
        x.cancel_connection_attempt()

    # -- stanzas ---------------------------------------------------------------------------

    async def iq(self, itype: str, to: str | None, payload=None, timeout: float = TIMEOUT):
        """Sends an iq and returns the response stanza (result or error)."""
        iq = self.x.make_iq(ito=to, itype=itype)
        if payload is not None:
            elem = ET.fromstring(payload) if isinstance(payload, str) else payload
            iq.xml.append(elem)
        try:
            return await iq.send(timeout=timeout)
        except IqError as e:
            return e.iq
        except IqTimeout:
            raise AssertionError(
                f"{self.jid}: no response within {timeout}s to {iq}"
            ) from None

    async def ping_server(self, timeout: float = TIMEOUT):
        assert self.connected(), f"{self.jid} is no longer connected"
        resp = await self.iq("get", self.server.domain, "<ping xmlns='urn:xmpp:ping'/>", timeout)
        assert resp["type"] == "result", f"ping to server failed: {resp}"
        return resp

    def send_message(self, to: str, body: str, mtype: str = "chat", mid: str | None = None):
        m = self.x.make_message(mto=to, mbody=body, mtype=mtype)
        m["id"] = mid or uid()
        m.send()
        return m["id"]


class Clients:
    """Async context manager that closes every client created through it."""

    def __init__(self):
        self.clients: list[Client] = []

    def add(self, client: Client) -> Client:
        self.clients.append(client)
        return client

    async def login(self, *args, **kwargs) -> Client:
        c = self.add(Client(*args, **kwargs))
        return await c.login()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        for c in self.clients:
            try:
                await c.close()
            except Exception:  # pragma: no cover - best effort cleanup
                log.exception("closing client")
        return False


# ---------------------------------------------------------------------------------------------
# raw XML stream
# ---------------------------------------------------------------------------------------------

STREAM_HEADER = (
    "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    "xmlns:stream='http://etherx.jabber.org/streams' to='{to}' version='1.0'>"
)


def stream_header(to: str = "localhost") -> bytes:
    return STREAM_HEADER.format(to=to).encode()


class StreamClosed(AssertionError):
    pass


class RawXmpp:
    """A hand-driven client stream over asyncio sockets.

    The server's output is parsed incrementally; `next_element` returns each complete top-level
    child of <stream:stream> (features, stanzas, stream errors...). `received` keeps every byte
    the server sent, for assertion messages.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer
        self.received = bytearray()
        self.eof = False
        self.stream_closed = False  # the server sent </stream:stream>
        self.root: ET.Element | None = None
        self._pending: list[ET.Element] = []
        self.to = "localhost"
        self._reset_parser()

    @classmethod
    async def connect(cls, port: int, tls: bool = False, timeout: float = TIMEOUT,
                      source_ip: str | None = None) -> "RawXmpp":
        ssl_ctx = insecure_tls_context() if tls else None
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                "127.0.0.1", port, ssl=ssl_ctx, server_hostname="localhost" if tls else None,
                local_addr=(source_ip, 0) if source_ip else None,
            ),
            timeout,
        )
        return cls(reader, writer)

    def _reset_parser(self):
        self.parser = ET.XMLPullParser(events=("start", "end"))
        self.depth = 0
        self.root = None
        self.stream_closed = False

    def transcript(self, limit: int = 4000) -> str:
        data = bytes(self.received)
        if len(data) > limit:
            data = b"..." + data[-limit:]
        return data.decode("utf-8", errors="replace")

    # -- writing ---------------------------------------------------------------------------

    async def send(self, data: bytes | str):
        if isinstance(data, str):
            data = data.encode()
        self.writer.write(data)
        await self.writer.drain()

    async def send_slowly(self, data: bytes | str, chunk: int = 1, delay: float = 0.003):
        """Writes `chunk` bytes at a time with a pause between writes."""
        if isinstance(data, str):
            data = data.encode()
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            import socket as _s

            try:
                sock.setsockopt(_s.IPPROTO_TCP, _s.TCP_NODELAY, 1)
            except OSError:
                pass
        for i in range(0, len(data), chunk):
            self.writer.write(data[i:i + chunk])
            await self.writer.drain()
            await asyncio.sleep(delay)

    async def try_send(self, data: bytes | str) -> bool:
        try:
            await self.send(data)
            return True
        except (ConnectionError, OSError):
            return False

    def close(self):
        try:
            self.writer.close()
        except Exception:
            pass

    # -- reading ---------------------------------------------------------------------------

    def _feed(self, data: bytes):
        self.parser.feed(data)
        try:
            events = list(self.parser.read_events())
        except ET.ParseError as e:
            raise AssertionError(
                f"server output is not well-formed XML ({e}):\n{self.transcript()}"
            ) from None
        for event, elem in events:
            if event == "start":
                if self.depth == 0:
                    self.root = elem
                self.depth += 1
            else:
                self.depth -= 1
                if self.depth == 0:
                    self.stream_closed = True
                elif self.depth == 1:
                    self._pending.append(elem)
                    if self.root is not None:
                        self.root.remove(elem) if elem in list(self.root) else None

    async def _read_more(self, timeout: float) -> bool:
        """Reads one chunk; returns False on EOF or connection reset."""
        if self.eof:
            return False
        try:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
        except asyncio.TimeoutError:
            raise
        except (ConnectionError, OSError, ssl.SSLError):
            data = b""
        if not data:
            self.eof = True
            return False
        self.received += data
        self._feed(data)
        return True

    async def read_header(self, timeout: float = TIMEOUT) -> ET.Element:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.root is None:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"no stream header within {timeout}s:\n{self.transcript()}")
            try:
                if not await self._read_more(remaining):
                    raise StreamClosed(
                        f"connection closed before stream header:\n{self.transcript()}"
                    )
            except asyncio.TimeoutError:
                continue
        assert self.root.tag == f"{{{NS_STREAM}}}stream", (
            f"unexpected root element {self.root.tag}:\n{self.transcript()}"
        )
        return self.root

    async def next_element(self, timeout: float = TIMEOUT) -> ET.Element | None:
        """The next complete top-level element, or None once the stream/connection is closed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._pending:
            if self.stream_closed or self.eof:
                return None
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(
                    f"no element from server within {timeout}s:\n{self.transcript()}"
                )
            try:
                await self._read_more(remaining)
            except asyncio.TimeoutError:
                continue
        return self._pending.pop(0)

    async def expect(self, tag: str, timeout: float = TIMEOUT,
                     predicate=lambda e: True) -> ET.Element:
        """Reads elements until one with `tag` (Clark notation) matching `predicate`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = max(0.01, deadline - loop.time())
            elem = await self.next_element(remaining)
            if elem is None:
                raise StreamClosed(
                    f"stream closed while waiting for {tag}:\n{self.transcript()}"
                )
            if elem.tag == f"{{{NS_STREAM}}}error" and tag != elem.tag:
                raise AssertionError(
                    f"stream error while waiting for {tag}: {tostr(elem)}\n{self.transcript()}"
                )
            if elem.tag == tag and predicate(elem):
                return elem
            if loop.time() > deadline:
                raise AssertionError(f"no {tag} within {timeout}s:\n{self.transcript()}")

    async def expect_stream_error(self, timeout: float = TIMEOUT) -> str:
        """Waits for <stream:error/>; returns its defined condition's local name.

        Elements before the error are skipped. Fails if the stream closes without an error.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"no stream error within {timeout}s:\n{self.transcript()}")
            elem = await self.next_element(remaining)
            if elem is None:
                raise AssertionError(
                    f"connection/stream closed without a stream error:\n{self.transcript()}"
                )
            if elem.tag == f"{{{NS_STREAM}}}error":
                conds = [
                    local(c.tag)
                    for c in elem
                    if ns_of(c.tag) == NS_STREAM_ERR and local(c.tag) != "text"
                ]
                assert len(conds) == 1, (
                    f"stream error must carry exactly one defined condition in "
                    f"{NS_STREAM_ERR}: {tostr(elem)}"
                )
                return conds[0]

    async def expect_closed(self, timeout: float = TIMEOUT):
        """After a stream error: the server must close its stream (</stream:stream> or TCP close)
        and, once we close ours, the TCP connection."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not (self.stream_closed or self.eof):
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(
                    f"server did not close the stream within {timeout}s after the stream "
                    f"error:\n{self.transcript()}"
                )
            try:
                await self._read_more(remaining)
            except asyncio.TimeoutError:
                continue
            except AssertionError:
                # Anything after the stream error is irrelevant, even garbage.
                break
        if not self.eof:
            await self.try_send("</stream:stream>")
            deadline = loop.time() + timeout
            while not self.eof:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise AssertionError(
                        f"server did not close the TCP connection within {timeout}s after the "
                        f"stream error:\n{self.transcript()}"
                    )
                try:
                    data = await asyncio.wait_for(self.reader.read(65536), remaining)
                except asyncio.TimeoutError:
                    continue
                except (ConnectionError, OSError, ssl.SSLError):
                    data = b""
                if not data:
                    self.eof = True
                else:
                    self.received += data
        self.close()

    async def expect_error_and_close(self, conditions: Iterable[str], timeout: float = TIMEOUT) -> str:
        cond = await self.expect_stream_error(timeout)
        allowed = set(conditions)
        assert cond in allowed, (
            f"expected stream error {sorted(allowed)}, got <{cond}/>:\n{self.transcript()}"
        )
        await self.expect_closed(timeout)
        return cond

    # -- negotiation -----------------------------------------------------------------------

    async def open_stream(self, to: str | None = None) -> ET.Element:
        """Sends a stream header (to the host of the previous header by default); returns the
        server's <stream:features/>."""
        if to is not None:
            self.to = to
        self._reset_parser()
        await self.send(stream_header(self.to))
        await self.read_header()
        return await self.expect(f"{{{NS_STREAM}}}features")

    async def starttls(self) -> ET.Element:
        await self.send(f"<starttls xmlns='{NS_TLS}'/>")
        await self.expect(f"{{{NS_TLS}}}proceed")
        await self.writer.start_tls(insecure_tls_context(), server_hostname="localhost")
        return await self.open_stream()

    async def auth(self, mechanism: str, initial: bytes | None) -> ET.Element:
        """Sends <auth/>; returns the server's <success/> or <failure/> (or raises on others)."""
        value = "=" if initial == b"" else (base64.b64encode(initial).decode() if initial else "")
        await self.send(f"<auth xmlns='{NS_SASL}' mechanism='{mechanism}'>{value}</auth>")
        while True:
            elem = await self.next_element()
            if elem is None:
                raise StreamClosed(f"stream closed during SASL:\n{self.transcript()}")
            if elem.tag in (f"{{{NS_SASL}}}success", f"{{{NS_SASL}}}failure",
                            f"{{{NS_STREAM}}}error", f"{{{NS_SASL}}}challenge"):
                return elem

    async def auth_plain(self, user: str, password: str) -> ET.Element:
        return await self.auth("PLAIN", f"\0{user}\0{password}".encode())

    async def bind(self, resource: str | None = None) -> str:
        res = f"<resource>{resource}</resource>" if resource else ""
        iid = "bind-" + uid()
        await self.send(f"<iq type='set' id='{iid}'><bind xmlns='{NS_BIND}'>{res}</bind></iq>")
        iq = await self.expect(f"{{{NS_CLIENT}}}iq", predicate=lambda e: e.get("id") == iid)
        assert iq.get("type") == "result", f"bind failed: {tostr(iq)}"
        jid = iq.find(f"{{{NS_BIND}}}bind/{{{NS_BIND}}}jid")
        assert jid is not None and jid.text, f"bind result without jid: {tostr(iq)}"
        return jid.text.strip()

    async def login_plain(self, user: str, password: str, resource: str | None = None) -> str:
        """PLAIN login on a stream already opened (features read); restarts, binds, sends
        initial presence. Returns the bound full JID."""
        result = await self.auth_plain(user, password)
        assert result.tag == f"{{{NS_SASL}}}success", f"PLAIN login failed: {tostr(result)}"
        features = await self.open_stream()
        assert features.find(f"{{{NS_BIND}}}bind") is not None, (
            f"no bind feature after SASL: {tostr(features)}"
        )
        full = await self.bind(resource)
        await self.send("<presence/>")
        return full

    @classmethod
    async def guest(cls, port: int, tls: bool = False,
                    domain: str = "anon.localhost") -> tuple["RawXmpp", str]:
        """An anonymous visitor (SASL ANONYMOUS on `domain`), bound, initial presence sent.
        Returns the stream and the bound full JID."""
        raw = await cls.connect(port, tls=tls)
        await raw.open_stream(domain)
        result = await raw.auth("ANONYMOUS", b"")
        assert result.tag.endswith("success"), tostr(result)
        await raw.open_stream()
        jid = await raw.bind()
        await raw.send("<presence/>")
        return raw, jid

    async def iq(self, xml: str, iid: str, timeout: float = TIMEOUT) -> ET.Element:
        await self.send(xml)
        return await self.expect(
            f"{{{NS_CLIENT}}}iq", timeout, predicate=lambda e: e.get("id") == iid
        )


def mechanisms_of(features: ET.Element) -> set[str]:
    mechs = features.find(f"{{{NS_SASL}}}mechanisms")
    if mechs is None:
        return set()
    return {(m.text or "").strip() for m in mechs.findall(f"{{{NS_SASL}}}mechanism")}
