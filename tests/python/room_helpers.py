"""Helpers shared by the tests of a room's direct writes (test_delivery_order.py,
test_direct_write_attacks.py): a speaker in an instant room of its own, and a connection whose
receive window is small enough that the room's writes soon stop partway through a stanza."""

import asyncio
import socket
import time

from helpers import NS_CLIENT, RawXmpp

NS_MUC = "http://jabber.org/protocol/muc"


async def small_window(port: int, limit: int | None = None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection with a 4 KiB receive buffer; `limit` also keeps asyncio's own buffer small
    (by default asyncio stops reading once 128 KiB wait unread)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    if limit is None:
        return await asyncio.open_connection(sock=sock)
    return await asyncio.open_connection(sock=sock, limit=limit)


async def speaker_in_new_room(server, name: str) -> tuple[RawXmpp, str]:
    """An account `name` that creates an instant room (XEP-0045 §10.1.2) and is in it as
    `speaker`."""
    server.add_user(name, "pw")
    room = f"{name}{int(time.time() * 1000)}@{server.muc_domain}"
    speaker = await RawXmpp.connect(server.c2s_port)
    await speaker.open_stream("localhost")
    await speaker.login_plain(name, "pw", "s")
    await speaker.send(f"<presence to='{room}/speaker'><x xmlns='{NS_MUC}'/></presence>")
    await speaker.expect(f"{{{NS_CLIENT}}}presence", timeout=15,
                         predicate=lambda p: p.get("from") == f"{room}/speaker")
    await speaker.send(
        f"<iq type='set' id='instant' to='{room}'><query xmlns='{NS_MUC}#owner'>"
        "<x xmlns='jabber:x:data' type='submit'/></query></iq>"
    )
    await speaker.expect(f"{{{NS_CLIENT}}}iq", predicate=lambda q: q.get("id") == "instant")
    return speaker, room
