#!/usr/bin/env bash
# Instructions per message in Salon's own code, counted by callgrind (valgrind): a figure that,
# unlike CPU time, does not move with the machine's other load, for comparing two builds of
# one code path. See bench/README.md ("Instructions per message").
#
#   bench/instructions.sh chat  SALON_BIN BENCH_BIN   # 1:1 messages: the sender's and the
#                                                     # recipient's session code
#   bench/instructions.sh room  SALON_BIN BENCH_BIN   # a room of 2: session and room code
#
# Counts what runs inside a session's reading and stanza handling (`poll_read_events`,
# `Session::on_element`), a room's task (`Room::run`) and the archive writer's batches
# (`archive_append_blocking`), including the 50 (chat) or 2 (room) logins at the start,
# divided by the messages sent; not the runtime's scheduling or the kernel. Needs valgrind
# (Debian: valgrind); release builds with symbols (the default profile keeps them).
set -euo pipefail

MODE=${1:?usage: instructions.sh chat|room SALON_BIN BENCH_BIN}
SALON_BIN=${2:?salon binary}
BENCH_BIN=${3:?salon-bench binary}
command -v valgrind >/dev/null || { echo "instructions.sh: needs valgrind" >&2; exit 2; }

PORT=${PORT:-36222}

# shellcheck source=bench/salon-config.sh
source "$(dirname "$0")/salon-config.sh"
bench_workdir instructions
salon_config "$WORK/salon.toml" "$WORK/data" "$PORT" off

case $MODE in
    chat)
        CLIENTS=50
        salon_accounts "$SALON_BIN" "$WORK/salon.toml" "$CLIENTS"
        LOAD=(chat --auth scram --clients "$CLIENTS" --rate 2 --duration 10)
        ;;
    room) LOAD=(muc --clients 2 --rooms 1 --rate 50 --duration 10) ;;
    *) echo "instructions.sh: unknown mode $MODE" >&2; exit 2 ;;
esac

valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out" --collect-atstart=no \
    --toggle-collect='*Session::on_element*' --toggle-collect='*poll_read_events*' \
    --toggle-collect='*Room::run*' --toggle-collect='*archive_append_blocking*' \
    "$SALON_BIN" serve --config "$WORK/salon.toml" >"$WORK/salon.log" 2>&1 &
PID=$!
# valgrind starts slowly.
wait_for_port "$PORT" 60 || { echo "instructions.sh: salon did not start" >&2; exit 1; }
"$BENCH_BIN" "${LOAD[@]}" --port "$PORT" >"$WORK/bench.out"
kill "$PID"
wait "$PID" 2>/dev/null || true
PID=
sent=$(awk '/^messages sent/ {print $3}' "$WORK/bench.out")
total=$(callgrind_annotate "$WORK/callgrind.out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
echo "mode $MODE: $sent messages, $total instructions, $((total / sent)) per message"
