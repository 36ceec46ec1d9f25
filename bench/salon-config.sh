# The Salon configuration the benchmark scripts run (compare.sh, instructions.sh, ab.sh,
# cpu-split.sh): the equivalent of what Prosody and ejabberd get in compare.sh
# (bench/README.md), with no rate limits in the way of the load; and the setup those scripts
# share. Sourced, not run.
#
#   salon_config FILE DATA_DIR C2S_PORT HTTP_PORT|off [ARCHIVE: true|false, default true]
salon_config() {
    local file=$1 data=$2 c2s=$3 http=$4 archive=${5:-true}
    [ "$http" = off ] || http="127.0.0.1:$http"
    cat >"$file" <<EOT
domain = "localhost"
data_dir = "$data"
[listen]
c2s = "127.0.0.1:$c2s"
c2s_direct_tls = "off"
http = "$http"
[c2s]
require_encryption = false
[http]
connections_per_ip = 100000
[anonymous]
domain = "anon.localhost"
[muc]
domain = "rooms.localhost"
max_occupants = 100000
guest_slow_mode_seconds = 0
rooms_per_hour = 0
rooms_per_hour_per_address = 0
[limits]
stanzas_per_second = 100000
connections_per_ip = 100000
outbound_queue = 100000
login_failures_per_minute = 100000
logins_per_minute = 100000
[archive]
enabled = $archive
[log]
level = "warn"
EOT
}

# A temporary directory in $WORK, removed on exit together with the server in $PID if set.
#
#   bench_workdir NAME
bench_workdir() {
    WORK=$(mktemp -d "/tmp/salon-$1.XXXXXX")
    trap bench_cleanup EXIT
}
bench_cleanup() {
    [ -n "${PID:-}" ] && kill "$PID" 2>/dev/null
    wait 2>/dev/null
    rm -rf "$WORK"
}

# Accounts bench0@localhost … bench(N-1)@localhost, password "secret".
#
#   salon_accounts SALON_BIN CONFIG N
salon_accounts() {
    local i
    for ((i = 0; i < $3; i++)); do
        "$1" user add "bench$i@localhost" --password secret --config "$2" >/dev/null
    done
}

# Until something listens on 127.0.0.1:PORT; fails after SECONDS (default 20).
#
#   wait_for_port PORT [SECONDS]
wait_for_port() {
    local attempt
    for attempt in $(seq 1 $((${2:-20} * 5))); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.2
    done
    return 1
}

# The loads ab.sh and cpu-split.sh put on Salon: sets LOAD (salon-bench's arguments but the
# port and duration), CLIENTS, RATE (messages per second per client), PER_MESSAGE (what one
# message is counted as: 1, or its deliveries for fanout) and UNIT; 1 for an unknown mode.
#
#   bench_load chat|room|fanout
bench_load() {
    PER_MESSAGE=1 UNIT=message
    case $1 in
        chat) # 200 accounts in pairs (salon_accounts), 5 1:1 messages/s each, archives on
            CLIENTS=200 RATE=5
            LOAD=(chat --auth scram --user-prefix bench --password secret --clients $CLIENTS --rate $RATE)
            ;;
        room) # a room of 2 guests, 100 messages/s each
            CLIENTS=2 RATE=100
            LOAD=(muc --clients $CLIENTS --rooms 1 --rate $RATE)
            ;;
        fanout) # the muc1k load: 1,000 guests in 10 rooms, 0.05 messages/s each
            CLIENTS=1000 RATE=0.05 PER_MESSAGE=100 UNIT=delivery
            LOAD=(muc --clients $CLIENTS --rooms 10 --rate $RATE)
            ;;
        *) return 1 ;;
    esac
}
