#!/usr/bin/env bash
# Where a Salon message's CPU goes: user and kernel time of each of the server's threads, per
# message (per delivery for fanout), over a 20-second window of a steady load: run time from
# /proc/PID/task/*/schedstat, split by `perf record`'s samples (needs perf; Debian: linux-perf). The kernel's share is what no change to Salon's own code
# can remove: it bounds what the code alone can still gain. See bench/README.md ("User and
# kernel time").
#
#   bench/cpu-split.sh chat|room|fanout SALON_BIN BENCH_BIN
#
# chat: 200 SCRAM accounts in pairs, 5 messages/s each (archives on); room: a room of 2
# guests, 100 messages/s each; fanout: the muc1k load (1,000 guests in 10 rooms, 0.05/s each).
# The split is a sample (about 5,000 per CPU-second): take several runs.
set -euo pipefail

MODE=${1:?usage: cpu-split.sh chat|room|fanout SALON_BIN BENCH_BIN}
SALON_BIN=${2:?salon binary}
BENCH_BIN=${3:?salon-bench binary}
WINDOW=20
PORT=${PORT:-37201}
command -v perf >/dev/null || { echo "cpu-split.sh: needs perf" >&2; exit 2; }

# shellcheck source=bench/salon-config.sh
source "$(dirname "$0")/salon-config.sh"
bench_workdir cpu-split
salon_config "$WORK/salon.toml" "$WORK/data" "$PORT" off

bench_load "$MODE" || { echo "cpu-split.sh: unknown mode $MODE" >&2; exit 2; }
[ "$MODE" = chat ] && salon_accounts "$SALON_BIN" "$WORK/salon.toml" "$CLIENTS"
UNITS=$(awk -v c="$CLIENTS" -v r="$RATE" -v w="$WINDOW" -v d="$PER_MESSAGE" 'BEGIN { print c * r * w * d }')

"$SALON_BIN" serve --config "$WORK/salon.toml" >"$WORK/salon.log" 2>&1 &
PID=$!
wait_for_port "$PORT" || { echo "cpu-split.sh: salon did not start" >&2; exit 1; }
"$BENCH_BIN" "${LOAD[@]}" --port "$PORT" --duration $((WINDOW + 10)) >"$WORK/bench.out" 2>&1 &
LOAD_PID=$!

# Each thread name's run time in ns (schedstat: exact), and which of its moments were in the
# kernel (perf's cpu-clock samples at 4,999 Hz: utime/stime are tick samples at 100 Hz, too few
# for a server that is 5 % busy).
runtime() {
    for task in /proc/"$PID"/task/*; do
        printf '%s %s\n' "$(tr ' ' _ <"$task/comm")" "$(cut -d' ' -f1 "$task/schedstat")"
    done | awk '{ ns[$1] += $2 } END { for (n in ns) print n, ns[n] }' | sort
}
sleep 5
runtime >"$WORK/before"
perf record -q -a -e cpu-clock -F 1999 -o "$WORK/perf.data" -- sleep "$WINDOW" >/dev/null 2>&1
runtime >"$WORK/after"
wait "$LOAD_PID"
# Samples per thread name of the server: all, and those in the kernel (its addresses are the
# upper half).
perf script -i "$WORK/perf.data" -F pid,comm,ip 2>/dev/null |
    awk -v pid="$PID" '$(NF - 1) == pid {
             name = $1; for (i = 2; i < NF - 1; i++) name = name "_" $i
             all[name]++; if ($NF ~ /^ffff/) kernel[name]++ }
         END { for (n in all) print n, all[n], kernel[n] + 0 }' | sort >"$WORK/samples"
echo "$MODE: $(awk '/^lost/ {print "lost", $2}' "$WORK/bench.out"), µs per $UNIT over ${WINDOW} s"
join "$WORK/before" "$WORK/after" | join - "$WORK/samples" |
    awk -v units="$UNITS" -v unit="$UNIT" '
    {
        total = ($3 - $2) / 1000 / units; share = $5 > 0 ? $5 / $4 : 0
        kernel = total * share; user = total - kernel
        if (total > 0.01) printf "  %-18s user %7.2f  kernel %7.2f\n", $1, user, kernel
        all_user += user; all_kernel += kernel
    }
    END {
        printf "  %-18s user %7.2f  kernel %7.2f  (kernel %.0f %% of %.1f µs per %s)\n", "all threads",
            all_user, all_kernel, 100 * all_kernel / (all_user + all_kernel), all_user + all_kernel, unit
    }'
