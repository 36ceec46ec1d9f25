"""What a room message costs when an occupant is on another server, against a local occupant.

Two Salons federate on loopback (salon.test on 127.0.0.10, salon2.test on 127.0.0.13, side port
5669, certificates from a throw-away CA). A room on rooms.salon.test has a local sender and one
receiver, either local (on salon.test) or remote (on salon2.test). The sender sends N messages,
one at a time, each after the previous one arrived; we record the latency send→receipt and the CPU
time (user + system, /proc) both server processes spent.

Run with the tests' virtualenv (it has slixmpp and trustme):
    SALON_BIN=target/release/salon tests/python/.venv/bin/python bench/federation_cost.py [N]
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "python"))

import trustme  # noqa: E402
import xml.etree.ElementTree as ET  # noqa: E402

from helpers import Client  # noqa: E402
from salon_server import SalonServer  # noqa: E402
from test_federation_salon import ensure_hosts, names, write_cert  # noqa: E402

PORT = 5669


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(base: Path, ca, ca_file: Path, domain: str, address: str) -> SalonServer:
    hosts = {n: f"{n}:{PORT}" for d in ("salon.test", "salon2.test") for n in names(d)}
    server = SalonServer(
        base / domain, domain, domain=domain, listen={"s2s": f"{address}:{PORT}"},
        tls=write_cert(ca, domain, base / f"{domain}-cert"),
        s2s={"ca_file": str(ca_file), "hosts": hosts},
        muc={"create_rooms": "anyone"},
    )
    return server.start()


async def run(count: int):
    ensure_hosts()
    base = Path(tempfile.mkdtemp(prefix="salon-fedcost-"))
    ca = trustme.CA()
    ca_file = base / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    one = start(base, ca, ca_file, "salon.test", "127.0.0.10")
    two = start(base, ca, ca_file, "salon2.test", "127.0.0.13")
    results = {}
    try:
        for where, server in (("local", one), ("remote", two)):
            room = f"cost-{where}@rooms.salon.test"
            sender_jid, sender_pw = one.new_user("s")
            receiver_jid, receiver_pw = server.new_user("r")
            sender = await Client(one, f"{sender_jid}/s", sender_pw, mech="SCRAM-SHA-256").login()
            receiver = await Client(server, f"{receiver_jid}/r", receiver_pw,
                                    mech="SCRAM-SHA-256").login()
            for client, nick in ((sender, "sender"), (receiver, "receiver")):
                join = client.x.make_presence(pto=f"{room}/{nick}")
                join.append(ET.Element("{http://jabber.org/protocol/muc}x"))
                join.send()
                await client.wait_presence(lambda p, n=nick: str(p["from"]) == f"{room}/{n}",
                                           timeout=30)
                if nick == "sender":
                    # The creator unlocks the new room (instant room) before anyone else joins.
                    await sender.iq("set", room,
                                    "<query xmlns='http://jabber.org/protocol/muc#owner'>"
                                    "<x xmlns='jabber:x:data' type='submit'/></query>")
            # Warm up the streams, then measure.
            sender.x.send_message(mto=room, mbody="warm-up", mtype="groupchat")
            await receiver.wait_message(lambda m: m["body"] == "warm-up", timeout=30)
            cpu_before = cpu_seconds(one.proc.pid) + cpu_seconds(two.proc.pid)
            latencies = []
            for i in range(count):
                body = f"m{i}"
                started = time.perf_counter()
                sender.x.send_message(mto=room, mbody=body, mtype="groupchat")
                try:
                    await receiver.wait_message(lambda m, b=body: m["body"] == b, timeout=30)
                except AssertionError:
                    raise AssertionError(f"{where}: message {i} of {count} never arrived") from None
                latencies.append((time.perf_counter() - started) * 1000)
                receiver.messages.clear()
            cpu = cpu_seconds(one.proc.pid) + cpu_seconds(two.proc.pid) - cpu_before
            latencies.sort()
            results[where] = (statistics.median(latencies),
                              latencies[int(len(latencies) * 0.99) - 1], cpu * 1e6 / count)
            await sender.close()
            await receiver.close()
    finally:
        one.stop()
        two.stop()
    print(f"{count} room messages, one sender on salon.test, one receiver:")
    print("| receiver | latency p50 / p99 | server CPU per message (both servers) |")
    print("|---|---|---|")
    for where, (p50, p99, cpu) in results.items():
        print(f"| {where} | {p50:.2f} / {p99:.2f} ms | {cpu:.0f} µs |")


if __name__ == "__main__":
    asyncio.run(run(int(sys.argv[1]) if len(sys.argv) > 1 else 300))
