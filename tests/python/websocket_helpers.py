"""XMPP over WebSocket (RFC 7395) for the tests: an anonymous login with the `websockets`
client, and `RawWebSocket`, a connection whose socket the test drives itself (websockets'
sans-I/O protocol does the handshake, framing and parsing; the test decides what goes out, in
which frames, and how fast), for attacks no well-behaved client library would send."""

from __future__ import annotations

import asyncio

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
BIND = "urn:ietf:params:xml:ns:xmpp-bind"


async def recv(ws, timeout: float = 10) -> str:
    return await asyncio.wait_for(ws.recv(), timeout)


async def recv_until(ws, needle: str, timeout: float = 10) -> str:
    while True:
        frame = await recv(ws, timeout)
        if needle in frame:
            return frame


async def open_anonymous(ws) -> str:
    """Log in on the anonymous host over `ws` (anything with `send` and `recv`) and bind;
    returns the bound JID."""
    await ws.send(f"<open xmlns='{FRAMING}' to='anon.localhost' version='1.0'/>")
    opened = await recv(ws)
    assert opened.startswith("<open") and FRAMING in opened, opened
    features = await recv(ws)
    assert "<mechanism>ANONYMOUS</mechanism>" in features, features
    await ws.send(f"<auth xmlns='{SASL}' mechanism='ANONYMOUS'/>")
    assert "<success" in await recv(ws)
    await ws.send(f"<open xmlns='{FRAMING}' to='anon.localhost' version='1.0'/>")
    await recv(ws)
    assert BIND in await recv(ws)
    await ws.send(f"<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='{BIND}'/></iq>")
    bound = await recv_until(ws, "<jid>")
    return bound.split("<jid>")[1].split("</jid>")[0]


class RawWebSocket:
    """One `xmpp` WebSocket to 127.0.0.1:`port`. `send` and `recv` speak whole text messages
    (so `open_anonymous` works on it); `write` puts any bytes on the wire; `frame` builds one
    masked client frame with the library. `recv` returns None once the server closed; then
    `close_code` and `texts` (every text message received) tell what it said. Pongs and the
    answer to a close go out with the next write, unless `quiet`."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 protocol: ClientProtocol):
        self.reader, self.writer, self.protocol = reader, writer, protocol
        self.texts: list[str] = []
        self.close_code: int | None = None
        self.closed = False
        # Set while the test writes a frame in pieces: the library's pongs would land inside it.
        self.quiet = False
        self._messages: list[str] = []

    @classmethod
    async def connect(cls, port: int, timeout: float = 10) -> "RawWebSocket":
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        protocol = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}/xmpp-websocket"),
                                  subprotocols=[Subprotocol("xmpp")], max_size=None)
        protocol.send_request(protocol.connect())
        ws = cls(reader, writer, protocol)
        await ws.write(b"")
        while True:
            events = await ws._read(timeout)
            response = next((e for e in events if isinstance(e, Response)), None)
            if response is not None:
                assert response.status_code == 101, response
                return ws

    def frame(self, opcode: Opcode, payload: bytes, fin: bool = True) -> bytes:
        return Frame(opcode, payload, fin=fin).serialize(mask=True)

    async def write(self, data: bytes) -> bool:
        """Write `data` (after whatever the protocol has to send, such as pongs); False once the
        connection is gone."""
        pending = b"" if self.quiet else b"".join(self.protocol.data_to_send())
        try:
            self.writer.write(pending + data)
            await self.writer.drain()
            return True
        except (ConnectionError, OSError):
            self.closed = True
            return False

    async def send(self, text: str) -> None:
        assert await self.write(self.frame(Opcode.TEXT, text.encode())), "connection closed"

    async def _read(self, timeout: float) -> list:
        try:
            chunk = await asyncio.wait_for(self.reader.read(65536), timeout)
        except TimeoutError:
            raise
        except (ConnectionError, OSError):  # a reset (TimeoutError is an OSError too)
            chunk = b""
        if chunk:
            self.protocol.receive_data(chunk)
        else:
            self.protocol.receive_eof()
            self.closed = True
        events = self.protocol.events_received()
        for event in events:
            if isinstance(event, Frame) and event.opcode == Opcode.TEXT:
                text = event.data.decode()
                self.texts.append(text)
                self._messages.append(text)
            elif isinstance(event, Frame) and event.opcode == Opcode.CLOSE:
                rcvd = self.protocol.close_rcvd
                self.close_code = rcvd.code if rcvd is not None else None
        if not self.closed and not self.quiet:
            # Pongs and the answer to a close frame.
            await self.write(b"")
        return events

    async def recv(self, timeout: float = 10) -> str | None:
        """The next text message; None once the connection is closed. Raises TimeoutError
        when nothing came within `timeout` seconds."""
        while not self._messages:
            if self.closed:
                return None
            await self._read(timeout)
        return self._messages.pop(0)

    async def wait_closed(self, timeout: float) -> bool:
        """Read until the server closes; False if it has not within `timeout` seconds."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not self.closed:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return False
            try:
                await self._read(left)
            except TimeoutError:
                return False
        return True

    def said(self) -> str:
        return "\n".join(self.texts)

    def abort(self) -> None:
        self.writer.transport.abort()
