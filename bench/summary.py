#!/usr/bin/env python3
"""Side-by-side table of salon-bench JSON reports: bench/summary.py OUT_DIR.

Reads OUT_DIR/<server>-<scenario>.json (as written by compare.sh) and prints Markdown: one
table per scenario, one column per server, and the ratios Salon/Prosody and Salon/ejabberd.
"""
import json
import os
import sys

SERVERS = ["salon", "prosody", "ejabberd"]
SCENARIOS = {
    "connect": "connect: idle logins (ANONYMOUS)",
    "scram": "scram: SCRAM-SHA-1 logins",
    "chat": "chat: 1:1 messages between pairs",
    "muc1": "muc1: one room",
    "muc1busy": "muc1busy: one busy room (more than Prosody can carry)",
    "muc10": "muc10: ten rooms",
    "ws10": "ws10: ten rooms over WebSocket",
    "bosh10": "bosh10: ten rooms over BOSH (hold=1, two requests at most)",
    "muc1k": "muc1k: a thousand clients in ten rooms",
    "ws1k": "ws1k: a thousand clients in ten rooms over WebSocket",
    "bosh1k": "bosh1k: a thousand clients in ten rooms over BOSH",
    "wslogins": "wslogins: visitors arriving over WebSocket, each joining a room",
}
# The HTTP transports' scenarios and the TCP scenario of the same load, shown side by side.
SAME_LOAD_OVER_TCP = {"ws10": "muc10", "bosh10": "muc10", "ws1k": "muc1k", "bosh1k": "muc1k"}
ARRIVAL_ROWS = [
    ("visitors joined", lambda r: r["joined"], "more"),
    ("failed", lambda r: r["failed"], "less"),
    ("logins/s (offered: see title)", lambda r: r["logins_per_s"], "more"),
    ("login-to-joined p50 (ms)", lambda r: r["login_to_joined"]["p50_ms"], "less"),
    ("login-to-joined p99 (ms)", lambda r: r["login_to_joined"]["p99_ms"], "less"),
    ("server CPU per login (µs)", lambda r: r.get("server_cpu_us_per_login"), "less"),
    ("RSS per visitor held (KiB)", lambda r: r.get("rss_per_visitor_kib"), "less"),
]
LOGIN_ROWS = [
    ("clients logged in", lambda r: r["logins_ok"], "more"),
    ("failed logins", lambda r: r["logins_failed"], "less"),
    ("logins/s", lambda r: r["logins_per_s"], "more"),
    ("server CPU for logins (s)", lambda r: r.get("server_cpu_login_s"), "less"),
    ("RSS per connection (KiB)", lambda r: r.get("rss_per_connection_kib"), "less"),
    ("RSS after login (MiB)", lambda r: mib(r.get("rss_after_setup_kib")), "less"),
]
TRAFFIC_ROWS = [
    ("clients", lambda r: r["clients"], None),
    ("messages sent", lambda r: r["messages_sent"], None),
    ("deliveries/s (send window)", lambda r: r["deliveries_per_s"], "more"),
    ("deliveries received/expected", lambda r: f'{r["deliveries_received"]}/{r["deliveries_expected"]}', None),
    ("lost", lambda r: r["lost"], "less"),
    ("latency p50 (ms)", lambda r: r["latency"]["p50_ms"], "less"),
    ("latency p95 (ms)", lambda r: r["latency"]["p95_ms"], "less"),
    ("latency p99 (ms)", lambda r: r["latency"]["p99_ms"], "less"),
    ("server CPU (s)", lambda r: r.get("server_cpu_s"), "less"),
    ("deliveries per server CPU-s", lambda r: r.get("deliveries_per_server_cpu_s"), "more"),
    ("RSS per joined connection (KiB)", lambda r: r.get("rss_per_connection_kib"), "less"),
    ("stanza errors / disconnects", lambda r: f'{r["stanza_errors"]} / {r["disconnects"]}', None),
]


def mib(kib):
    return None if kib is None else kib / 1024


def fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        if abs(v) >= 100:
            return f"{v:,.0f}"
        return f"{v:.2f}" if abs(v) < 10 else f"{v:.1f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def ratio(a, b):
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or not b:
        return "-"
    return f"{a / b:.2f}"


def main(out):
    reports = {}
    failures = {}
    for server in SERVERS:
        for scenario in SCENARIOS:
            path = os.path.join(out, f"{server}-{scenario}.json")
            if os.path.exists(path):
                with open(path) as f:
                    reports[(server, scenario)] = json.load(f)
            failed = os.path.join(out, f"{server}-{scenario}.failed")
            if os.path.exists(failed):
                with open(failed) as f:
                    failures[(server, scenario)] = f.read().strip()
    servers = [s for s in SERVERS if any(k[0] == s for k in list(reports) + list(failures))]
    for server in SERVERS:
        skipped = os.path.join(out, f"{server}.skipped")
        if os.path.exists(skipped):
            print(f"**{server} skipped**: {open(skipped).read().strip()}\n")
    for scenario, title in SCENARIOS.items():
        present = {s: reports.get((s, scenario)) for s in servers}
        if not any(present.values()) and not any((s, scenario) in failures for s in servers):
            continue
        some = next((r for r in present.values() if r), None)
        if some and scenario == "wslogins":
            title += f' ({some["clients"]} at {some["rate_offered"]:.0f}/s into {some["rooms"]} rooms)'
        elif some and scenario not in ("connect", "scram"):
            rooms = f', {some["rooms"]} room(s)' if some.get("rooms") else ""
            title += f' ({some["clients"]} clients{rooms}, {some["rate_per_client"]} msg/s each, {some["duration_s"]:.0f} s)'
        elif some:
            title += f' ({some["clients"]} clients)'
        print(f"### {title}\n")
        header = ["metric"] + servers
        others = [s for s in servers if s != "salon"]
        if "salon" in servers:
            header += [f"salon/{s}" for s in others]
        header.append("better")
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        rows = LOGIN_ROWS if scenario in ("connect", "scram") else TRAFFIC_ROWS
        if scenario == "wslogins":
            rows = ARRIVAL_ROWS
        for label, get, better in rows:
            values = {}
            for s in servers:
                r = present[s]
                values[s] = get(r) if r else None
            cells = [label]
            for s in servers:
                if present[s] is None and (s, scenario) in failures:
                    cells.append("failed")
                else:
                    cells.append(fmt(values[s]))
            if "salon" in servers:
                for s in others:
                    cells.append(ratio(values["salon"], values[s]) if better else "")
            cells.append({"more": "higher", "less": "lower"}.get(better, ""))
            print("| " + " | ".join(cells) + " |")
        tcp = SAME_LOAD_OVER_TCP.get(scenario)
        if tcp and any(reports.get((s, tcp)) for s in servers):
            # The same load over TCP in the same run: what the transport costs.
            per_cpu = lambda s, name: (reports.get((s, name)) or {}).get("deliveries_per_server_cpu_s")
            p99 = lambda s, name: ((reports.get((s, name)) or {}).get("latency") or {}).get("p99_ms")
            for label, get in ((f"{tcp} (TCP) deliveries per server CPU-s", per_cpu),
                               (f"{tcp} (TCP) latency p99 (ms)", p99)):
                cells = [label] + [fmt(get(s, tcp)) for s in servers]
                cells += [""] * (len(header) - len(cells))
                print("| " + " | ".join(cells) + " |")
            cells = [f"{scenario} / {tcp} deliveries per CPU-s"]
            for s in servers:
                cells.append(ratio(per_cpu(s, scenario), per_cpu(s, tcp)))
            cells += [""] * (len(header) - len(cells))
            print("| " + " | ".join(cells) + " |")
        floor = load_floor(out, scenario)
        if floor:
            # The floor beside the figure: what one loopback write per delivery costs here.
            cells = ["floor: writes per CPU-s, same load"] + [fmt(floor["writes_per_cpu_s"])] * len(servers)
            cells += [""] * (len(header) - len(cells))
            print("| " + " | ".join(cells) + " |")
            cells = ["deliveries per server CPU-s / floor"]
            for s in servers:
                per_cpu = (present[s] or {}).get("deliveries_per_server_cpu_s")
                cells.append(f'{100 * per_cpu / floor["writes_per_cpu_s"]:.0f} %' if per_cpu else "-")
            cells += [""] * (len(header) - len(cells))
            print("| " + " | ".join(cells) + " |")
        for s in servers:
            if (s, scenario) in failures:
                print(f"\n{s} failed: `{failures[(s, scenario)]}`")
        print()

    print_floor(out, reports)


def load_floor(out, scenario):
    path = os.path.join(out, f"floor-{scenario}.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return as_writes(json.load(f))


def as_writes(floor):
    """The `fixed-floor` report (the chat floor: read, one write to the partner) in the
    `floor` report's terms: deliveries per CPU-second and CPU per delivery."""
    if floor.get("scenario") != "fixed-floor":
        return floor
    per_message = floor["deliveries_expected"] / max(floor["messages_sent"], 1)
    us = floor["server_cpu_us_per_message"] / max(per_message, 1e-9)
    return dict(floor, writes_per_cpu_s=1e6 / us if us else 0, cpu_us_per_write=us)


def print_floor(out, reports):
    """What one loopback write per delivery costs with no server (salon-bench floor), next to
    the servers' deliveries per CPU-second at the same load."""
    rows = []
    for scenario in SCENARIOS:
        floor = load_floor(out, scenario)
        if not floor:
            continue
        per_cpu = lambda server: (reports.get((server, scenario)) or {}).get("deliveries_per_server_cpu_s")
        salon, prosody = per_cpu("salon"), per_cpu("prosody")
        rows.append([
            scenario,
            fmt(floor["writes_per_cpu_s"]),
            fmt(floor["cpu_us_per_write"]),
            fmt(salon),
            f"{100 * salon / floor['writes_per_cpu_s']:.0f} %" if salon else "-",
            fmt(20 * prosody) if prosody else "-",
        ])
    if not rows:
        return
    print("### floor: one write per delivery, no server (`salon-bench floor`, same load; chat:")
    print("`salon-bench fixed-floor --shape chat`, which also reads and waits for each message)\n")
    print("| scenario | writes per CPU-s | µs per write | salon deliveries per CPU-s | salon / floor | 20 × prosody |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: summary.py OUT_DIR")
    main(sys.argv[1])
