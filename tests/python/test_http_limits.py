"""Limits of the HTTP listener (issue 11, item 3): half-sent requests and stalled bodies are cut
after `http.header_read_timeout` and `http.idle_timeout`, one TCP peer gets at most
`http.connections_per_ip` connections, and the open-file limit is raised and logged at start.
Every attack is a bounded number of loopback connections."""

import asyncio
import re
import time

from conftest import server_fixture
from helpers import async_test

HEADER_TIMEOUT = 2
IDLE_TIMEOUT = 3
PER_IP = 8

server = server_fixture(
    "httplimits",
    require_encryption=False,
    http={
        "header_read_timeout": HEADER_TIMEOUT,
        "idle_timeout": IDLE_TIMEOUT,
        "bosh_max_wait": 2,
        "websocket_ping_interval": 2,
        "connections_per_ip": PER_IP,
    },
)


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> float | None:
    """Seconds until the server closed the connection (reading whatever it sent first), or None
    if it was still open after `seconds`."""
    start = time.monotonic()
    try:
        while True:
            left = seconds - (time.monotonic() - start)
            if left <= 0:
                return None
            data = await asyncio.wait_for(reader.read(4096), left)
            if not data:
                return time.monotonic() - start
    except (ConnectionError, OSError):
        return time.monotonic() - start
    except asyncio.TimeoutError:
        return None


async def get_ok(port: int, source_ip: str = "127.0.0.1") -> bool:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source_ip, 0))
    try:
        writer.write(b"GET /config.json HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 5)
        return status.startswith(b"HTTP/1.1 200")
    finally:
        writer.close()


@async_test(timeout=60)
async def test_half_sent_request_headers_are_cut(server):
    connections = []
    for _ in range(PER_IP - 2):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.http_port)
        writer.write(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        await writer.drain()
        connections.append((reader, writer))
    try:
        results = await asyncio.gather(
            *(closed_within(reader, HEADER_TIMEOUT + 5) for reader, _ in connections)
        )
        print(f"\nhalf-sent headers closed after {[round(r, 1) if r else r for r in results]} s")
        assert all(r is not None for r in results), f"still open: {results}"
    finally:
        for _, writer in connections:
            writer.close()


@async_test(timeout=60)
async def test_idle_keep_alive_connection_is_cut(server):
    reader, writer = await asyncio.open_connection("127.0.0.1", server.http_port)
    try:
        writer.write(b"GET /config.json HTTP/1.1\r\nHost: localhost\r\n\r\n")
        await writer.drain()
        assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"HTTP/1.1 200")
        assert await closed_within(reader, HEADER_TIMEOUT + 5) is not None
    finally:
        writer.close()


@async_test(timeout=60)
async def test_stalled_request_body_is_cut(server):
    reader, writer = await asyncio.open_connection("127.0.0.1", server.http_port)
    try:
        writer.write(b"POST /http-bind HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml\r\n"
                     b"Content-Length: 1000\r\n\r\n<body ")
        await writer.drain()
        took = await closed_within(reader, IDLE_TIMEOUT + 5)
        print(f"\nstalled body closed after {took} s")
        assert took is not None, "a request body that stopped coming kept its connection open"
    finally:
        writer.close()


@async_test(timeout=60)
async def test_connections_per_ip_cap(server):
    held = []
    try:
        for _ in range(PER_IP):
            _, writer = await asyncio.open_connection("127.0.0.1", server.http_port)
            held.append(writer)
        await asyncio.sleep(0.3)
        # One more from the same address is closed at once, before it can send anything.
        reader, writer = await asyncio.open_connection("127.0.0.1", server.http_port)
        held.append(writer)
        writer.write(b"GET /config.json HTTP/1.1\r\nHost: localhost\r\n\r\n")
        took = await closed_within(reader, 3)
        assert took is not None, "a connection over http.connections_per_ip was served"
        # Another address is not affected.
        assert await get_ok(server.http_port, source_ip="127.0.0.2")
    finally:
        for writer in held:
            writer.close()
    # The slots are given back when the connections close.
    await asyncio.sleep(0.5)
    assert await get_ok(server.http_port)


def test_open_file_limit_is_logged(server):
    log = server.log_path.read_text()
    match = re.search(r"open_files=(\d+)", log)
    assert match, "the open-file limit is not logged at start"
    with open(f"/proc/{server.proc.pid}/limits") as limits:
        line = next(line for line in limits if line.startswith("Max open files"))
    soft, hard = line.split()[3:5]
    assert soft == hard, f"open-file soft limit {soft} not raised to the hard limit {hard}"
    assert int(match.group(1)) == int(soft)
