"""The load generator measures what it claims: salon-bench's scenarios, at a small scale,
against a real Salon. Every message must be counted as delivered, none lost, no errors, and
the server's CPU and memory read from /proc. (The numbers themselves belong to benchmarks,
not tests; see bench/README.md.)"""

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import server_fixture
from salon_server import SALON_BIN

BENCH_BIN = Path(os.environ.get("SALON_BENCH_BIN", str(SALON_BIN.parent / "salon-bench")))

server = server_fixture(
    "bench",
    require_encryption=False,
    extra_limits={"stanzas_per_second": 100000, "outbound_queue": 100000},
    # The load generator's guests talk faster than the guests' slow mode allows.
    muc={"guest_slow_mode_seconds": 0},
)


def bench(srv, *args) -> dict:
    if not BENCH_BIN.exists():
        pytest.fail(f"{BENCH_BIN} is missing; build it with `cargo build -p salon-bench`")
    out = subprocess.run(
        [str(BENCH_BIN), *args, "--port", str(srv.c2s_port), "--server-pid", str(srv.proc.pid),
         "--format", "json", "--drain", "5", "--timeout", "60"],
        capture_output=True, text=True, timeout=90,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def assert_all_delivered(report: dict):
    assert report["messages_sent"] > 0, report
    assert report["deliveries_expected"] > 0, report
    assert report["deliveries_received"] == report["deliveries_expected"], report
    assert report["lost"] == 0, report
    assert report["stanza_errors"] == 0 and report["disconnects"] == 0, report
    assert report["server_cpu_s"] is not None and report["server_cpu_s"] >= 0, report
    assert report["latency"]["p99_ms"] >= report["latency"]["p50_ms"] > 0, report


def test_connect_reports_logins_and_server_memory(server):
    report = bench(server, "connect", "--clients", "20", "--duration", "0.5")
    assert report["logins_ok"] == 20 and report["logins_failed"] == 0, report
    assert report["rss_before_kib"] > 0 and report["rss_end_kib"] > 0, report


def test_muc_counts_every_occupants_copy(server):
    report = bench(server, "muc", "--clients", "12", "--rooms", "3", "--rate", "4",
                   "--duration", "1.5")
    assert_all_delivered(report)
    # Each message reaches the 4 occupants of its room, the sender's reflection included.
    assert report["deliveries_expected"] == 4 * report["messages_sent"], report


def test_ws_runs_the_muc_scenario_over_websocket(server):
    report = bench(server, "ws", "--ws-url", f"ws://127.0.0.1:{server.http_port}/xmpp-websocket",
                   "--clients", "6", "--rooms", "2", "--rate", "4", "--duration", "1.5")
    assert_all_delivered(report)
    assert report["transport"] == "websocket", report


def test_bosh_runs_the_muc_scenario_over_bosh(server):
    # Every copy arrives through long-polled HTTP requests (hold=1, two in flight at most),
    # after a login made of a session creation, SASL, a restart and a bind, all over BOSH.
    report = bench(server, "bosh", "--bosh-url", f"http://127.0.0.1:{server.http_port}/http-bind",
                   "--clients", "6", "--rooms", "2", "--rate", "4", "--duration", "1.5")
    assert_all_delivered(report)
    assert report["transport"] == "bosh", report
    assert report["deliveries_expected"] == 3 * report["messages_sent"], report


def test_ws_logins_counts_every_visitor_joined(server):
    # Rooms are created by one owner each before the visitors arrive; every visitor's time to
    # the room's self-presence is measured, none fails, and the server is read from /proc.
    report = bench(server, "ws-logins", "--ws-url",
                   f"ws://127.0.0.1:{server.http_port}/xmpp-websocket",
                   "--clients", "30", "--rooms", "3", "--rate", "60", "--duration", "0.5")
    assert report["joined"] == 30 and report["failed"] == 0, report
    assert report["transport"] == "websocket", report
    latency = report["login_to_joined"]
    assert latency["samples"] == 30 and latency["p99_ms"] >= latency["p50_ms"] > 0, report
    assert report["server_cpu_s"] is not None and report["rss_held_kib"] > 0, report


def test_chat_with_scram_accounts(server):
    for i in range(4):
        server.add_user(f"bench{i}", "secret")
    report = bench(server, "chat", "--auth", "scram", "--clients", "4", "--rate", "4",
                   "--duration", "1.5")
    assert_all_delivered(report)
    assert report["deliveries_expected"] == report["messages_sent"], report


def test_floor_writes_and_reads_every_delivery():
    if not BENCH_BIN.exists():
        pytest.fail(f"{BENCH_BIN} is missing; build it with `cargo build -p salon-bench`")
    out = subprocess.run([str(BENCH_BIN), "floor", "--clients", "8", "--rate", "5",
                          "--duration", "1", "--format", "json"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["writes"] > 0 and report["writes"] % 8 == 0, report
    assert report["bytes_received"] == report["writes"] * report["bytes_per_write"], report


@pytest.mark.parametrize("mode", ["thread", "tasks", "direct"])
def test_fixed_floor_serves_a_room_of_two_from_a_child_process(mode):
    # The minimal server runs in a child process; its CPU and context switches are read
    # from /proc over the sending window, per message, as for a real server.
    if not BENCH_BIN.exists():
        pytest.fail(f"{BENCH_BIN} is missing; build it with `cargo build -p salon-bench`")
    out = subprocess.run([str(BENCH_BIN), "fixed-floor", "--mode", mode, "--clients", "2",
                          "--rate", "50", "--duration", "1", "--drain", "3", "--format", "json"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["mode"] == mode, report
    assert report["messages_sent"] > 0, report
    # Every message goes back to both clients (the sender's echo and the other occupant).
    assert report["deliveries_expected"] == 2 * report["messages_sent"], report
    assert report["deliveries_received"] == report["deliveries_expected"], report
    assert report["server_counts"]["messages"] == report["messages_sent"], report
    assert report["server_counts"]["journal_writes"] == report["messages_sent"], report
    assert report["server_pid"] != os.getpid(), report
    assert report["server_cpu_s"] > 0 and report["server_cpu_us_per_message"] > 0, report
    # An idle server is woken for its messages: at least some sleeps per message.
    assert report["server_voluntary_switches_per_message"] > 0, report
    assert report["latency"]["p99_ms"] >= report["latency"]["p50_ms"] > 0, report
