"""Prometheus metrics on `listen.metrics`, read with the Prometheus project's own OpenMetrics
parser: the exposition parses, and the numbers follow what clients do."""

import asyncio
import urllib.error
import urllib.request

from prometheus_client.openmetrics.parser import text_string_to_metric_families

from conftest import server_fixture
from helpers import Client, Clients, RawXmpp, async_test, uid

server = server_fixture("metrics", require_encryption=False, metrics=True)


def scrape(server) -> tuple[str, dict]:
    """(content type, {(sample name, frozenset(labels)): value}) of one scrape."""
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        content_type = response.headers["Content-Type"]
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return content_type, samples


def value(samples: dict, name: str, **labels) -> float:
    key = (name, frozenset(labels.items()))
    assert key in samples, f"{name}{labels} missing from {sorted(n for n, _ in samples)}"
    return samples[key]


async def guest(server) -> RawXmpp:
    raw = await RawXmpp.connect(server.c2s_port)
    await raw.open_stream("anon.localhost")
    result = await raw.auth("ANONYMOUS", b"")
    assert result.tag.endswith("success")
    await raw.open_stream()
    await raw.bind()
    return raw


@async_test
async def test_metrics_follow_sessions_stanzas_logins_and_rooms(server):
    content_type, before = await asyncio.to_thread(scrape, server)
    assert content_type.startswith("application/openmetrics-text"), content_type
    assert value(before, "process_resident_memory_bytes") > 1_000_000
    assert value(before, "process_open_fds") > 3
    assert value(before, "process_cpu_seconds_total") > 0
    assert value(before, "salon_uptime_seconds") >= 0

    (a_jid, a_pw), (b_jid, b_pw) = server.new_user("m1"), server.new_user("m2")
    async with Clients() as cs:
        alice = await cs.login(server, f"{a_jid}/r", a_pw, mech="SCRAM-SHA-256")
        bob = await cs.login(server, f"{b_jid}/r", b_pw, mech="SCRAM-SHA-256")
        visitor = await guest(server)
        try:
            for n in range(3):
                alice.x.send_message(mto=b_jid, mbody=f"m{n}", mtype="chat")
            await bob.wait_message(lambda m: m["body"] == "m2", what="the third message")
            room = f"r{uid()}@{server.muc_domain}"
            alice.x.send_presence(pto=f"{room}/alice")
            await alice.wait_presence(lambda p: str(p["from"]) == f"{room}/alice", what="joined")
            mallory = cs.add(Client(
                server, f"{a_jid}/x", "wrong-password", mech="SCRAM-SHA-256"))
            mallory.start_connect()
            await mallory.wait_until(lambda: mallory.auth_failures, what="the failed login")

            _, after = await asyncio.to_thread(scrape, server)
            assert value(after, "salon_sessions", kind="account") == 2
            assert value(after, "salon_sessions", kind="guest") == 1
            assert value(after, "salon_connections") >= 3
            assert value(after, "salon_rooms") == 1
            assert value(after, "salon_room_occupants") == 1

            def grew(name, **labels):
                return value(after, name, **labels) - value(before, name, **labels)

            assert grew("salon_stanzas_received_total", kind="message") >= 3
            assert grew("salon_stanzas_received_total", kind="presence") >= 3
            assert grew("salon_logins_total", result="success") == 3
            assert grew("salon_logins_total", result="failure") >= 1
            assert grew("salon_connections_opened_total") >= 4
        finally:
            visitor.close()

    # Everyone gone: the temporary room closes, no session is left.
    for _ in range(50):
        _, later = await asyncio.to_thread(scrape, server)
        if (value(later, "salon_rooms"), value(later, "salon_sessions", kind="account"),
                value(later, "salon_sessions", kind="guest")) == (0, 0, 0):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"sessions or rooms left after everyone went: {later}")


@async_test
async def test_metrics_listener_serves_nothing_else(server):
    url = f"http://127.0.0.1:{server.metrics_port}/"
    try:
        await asyncio.to_thread(urllib.request.urlopen, url, None, 5)
        raise AssertionError("the metrics listener answered /")
    except urllib.error.HTTPError as e:
        assert e.code == 404
    # And the public HTTP side has no /metrics.
    url = f"http://127.0.0.1:{server.http_port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            assert "salon_" not in response.read().decode(), "metrics on the public listener"
    except urllib.error.HTTPError as e:
        assert e.code == 404
