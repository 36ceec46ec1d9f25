#!/usr/bin/env bash
# Two Salon builds under the same load at the same time: server CPU per message of each and
# their ratio. On a shared machine whose speed drifts by tens of percent from one minute to the
# next, runs taken one after the other cannot show a change of a few percent; two servers
# measured in the same seconds share the drift. See bench/README.md ("Two builds at once").
#
#   bench/ab.sh chat|room|fanout SALON_A SALON_B BENCH_BIN [ROUNDS]
#
# chat: 200 accounts in pairs, 5 1:1 messages/s each (SCRAM logins, archives on);
# room: a room of 2 guests, 100 messages/s each;
# fanout: the muc1k load, 1,000 guests in 10 rooms, 0.05 messages/s each (CPU per delivery).
# The loads are bench/salon-config.sh's `bench_load`. Each round starts both servers on fresh
# data directories, runs both loads for DURATION (default 40) seconds, reads every thread's CPU
# (/proc/PID/task/*/schedstat) from second 5 to DURATION-5, and swaps which build is A in the
# next round, so neither always starts first.
set -euo pipefail

MODE=${1:?usage: ab.sh chat|room|fanout SALON_A SALON_B BENCH_BIN [ROUNDS]}
BIN_A=${2:?salon binary A}
BIN_B=${3:?salon binary B}
BENCH_BIN=${4:?salon-bench binary}
ROUNDS=${5:-4}
DURATION=${DURATION:-40}
WORK=$(mktemp -d /tmp/salon-ab.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# shellcheck source=bench/salon-config.sh
source "$(dirname "$0")/salon-config.sh"
config() { # DIR PORT
    salon_config "$1/salon.toml" "$1/data" "$2" off
}

bench_load "$MODE" || { echo "ab.sh: unknown mode $MODE" >&2; exit 2; }

# One data directory with the accounts, copied for every server started.
mkdir -p "$WORK/seed"
config "$WORK/seed" 0
if [ "$MODE" = chat ]; then
    salon_accounts "$BIN_A" "$WORK/seed/salon.toml" "$CLIENTS"
fi

cpu_ns() { # PID: all threads' run time
    local total=0 t
    for t in /proc/"$1"/task/*/schedstat; do total=$((total + $(cut -d' ' -f1 "$t"))); done
    echo "$total"
}

start() { # BIN NAME PORT -> PID in STARTED
    local dir=$WORK/$2
    rm -rf "$dir" && mkdir -p "$dir"
    [ -d "$WORK/seed/data" ] && cp -r "$WORK/seed/data" "$dir/data"
    config "$dir" "$3"
    "$1" serve --config "$dir/salon.toml" >"$dir/salon.log" 2>&1 &
    STARTED=$!
    PIDS+=("$STARTED")
    wait_for_port "$3" && return 0
    echo "ab.sh: $1 did not start" >&2
    exit 1
}

window=$((DURATION - 10))
# What the CPU is divided by: messages sent, or for fanout the deliveries they make.
messages=$(awk -v c="$CLIENTS" -v r="$RATE" -v w="$window" -v d="$PER_MESSAGE" 'BEGIN { print c * r * w * d }')
echo "mode $MODE, $ROUNDS rounds of $DURATION s; CPU µs per $UNIT from second 5 to $((DURATION - 5))"
for ((round = 1; round <= ROUNDS; round++)); do
    if ((round % 2)); then first=$BIN_A second=$BIN_B; else first=$BIN_B second=$BIN_A; fi
    start "$first" one 37101; pid_one=$STARTED
    start "$second" two 37102; pid_two=$STARTED
    "$BENCH_BIN" "${LOAD[@]}" --port 37101 --duration "$DURATION" >"$WORK/one.out" 2>&1 &
    load_one=$!
    "$BENCH_BIN" "${LOAD[@]}" --port 37102 --duration "$DURATION" >"$WORK/two.out" 2>&1 &
    load_two=$!
    sleep 5
    one0=$(cpu_ns "$pid_one") two0=$(cpu_ns "$pid_two")
    sleep "$window"
    one1=$(cpu_ns "$pid_one") two1=$(cpu_ns "$pid_two")
    wait "$load_one" "$load_two"
    lost_one=$(awk '/^lost/ {print $2}' "$WORK/one.out") lost_two=$(awk '/^lost/ {print $2}' "$WORK/two.out")
    kill "$pid_one" "$pid_two"
    wait "$pid_one" "$pid_two" 2>/dev/null || true
    PIDS=()
    if [ "$first" = "$BIN_A" ]; then a=$((one1 - one0)) b=$((two1 - two0)) la=$lost_one lb=$lost_two
    else a=$((two1 - two0)) b=$((one1 - one0)) la=$lost_two lb=$lost_one; fi
    awk -v a="$a" -v b="$b" -v m="$messages" -v r="$round" -v la="$la" -v lb="$lb" -v u="$UNIT" 'BEGIN {
        printf "round %d: A %.2f µs, B %.2f µs per " u ", B/A %.3f (lost: A %s, B %s)\n",
            r, a / 1000 / m, b / 1000 / m, b / a, la, lb }'
done
