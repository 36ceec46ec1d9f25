#!/usr/bin/env bash
# Compare Salon with Prosody and ejabberd on this machine, with the same load generator
# (salon-bench) and equivalent configurations. See bench/README.md.
#
#   bench/compare.sh                      # everything (about 10 minutes)
#   SERVERS="salon prosody" bench/compare.sh
#   SCENARIOS="connect muc1" DURATION=10 bench/compare.sh
#
# Every server runs from a generated configuration in a temporary directory, on loopback
# ports of its own; everything started here is stopped on exit. Results (one JSON file per
# server and scenario, plus summary.md) go to $OUT.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/salon-config.sh
source "$ROOT/bench/salon-config.sh"
OUT=${OUT:-$ROOT/bench/out/$(date +%Y%m%d-%H%M%S)}
SERVERS=${SERVERS:-"salon prosody ejabberd"}
SCENARIOS=${SCENARIOS:-"connect scram chat muc1 muc1busy muc10 ws10 bosh10 muc1k ws1k bosh1k wslogins"}
DURATION=${DURATION:-20}         # seconds of sending per scenario
SALON_ARCHIVE=${SALON_ARCHIVE:-true}  # Salon's account archives (XEP-0313) on, its default
DRAIN=${DRAIN:-10}               # seconds to wait for late deliveries
CONNECT_N=${CONNECT_N:-1000}     # idle logins for `connect`
SCRAM_N=${SCRAM_N:-200}          # SCRAM-SHA-1 logins
CHAT_N=${CHAT_N:-200}
CHAT_RATE=${CHAT_RATE:-5}        # 200 clients x 5/s = 1000 messages/s
MUC_N=${MUC_N:-200}
MUC1_RATE=${MUC1_RATE:-0.125}    # 200 senders x 0.125/s x 200 occupants = 5000 deliveries/s
MUC1_BUSY_RATE=${MUC1_BUSY_RATE:-0.5} # 200 x 0.5/s x 200 = 20000 deliveries/s
MUC10_RATE=${MUC10_RATE:-1.25}   # 200 x 1.25/s x 20 occupants = 5000 deliveries/s
MUC1K_N=${MUC1K_N:-1000}         # muc1k/ws1k/bosh1k: 1000 clients in 10 rooms of 100
MUC1K_RATE=${MUC1K_RATE:-0.05}   # 1000 x 0.05/s x 100 occupants = 5000 deliveries/s
LOGIN_N=${LOGIN_N:-2000}         # wslogins: visitors arriving over WebSocket ...
LOGIN_RATE=${LOGIN_RATE:-500}    # ... at this many logins (each with a room join) per second
LOGIN_ROOMS=${LOGIN_ROOMS:-20}   # ... into this many rooms
SALON_BIN=${SALON_BIN:-}         # use this salon binary instead of building one
BENCH_BIN=${BENCH_BIN:-}         # use this salon-bench binary instead of building one
PASSWORD=secret
# Accounts bench0.. for the scram and chat scenarios (chat logs in with SCRAM: 1:1 messages
# between anonymous guests are not something every server allows).
ACCOUNTS=$((SCRAM_N > CHAT_N ? SCRAM_N : CHAT_N))

# Ports: one set per server, so nothing clashes with a Salon or system server on 5222/5280.
SALON_C2S=${SALON_C2S:-35222} SALON_HTTP=${SALON_HTTP:-35280}
PROSODY_C2S=${PROSODY_C2S:-15222} PROSODY_HTTP=${PROSODY_HTTP:-15280}
EJABBERD_C2S=${EJABBERD_C2S:-25222} EJABBERD_HTTP=${EJABBERD_HTTP:-25280}

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'compare.sh: %s\n' "$*" >&2; exit 1; }

mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/salon-compare.XXXXXX)
chmod 755 "$WORK"
STARTED_PIDS=()
EPMD_WAS_RUNNING=$(pgrep -x epmd >/dev/null && echo yes || echo no)

cleanup() {
    local pid
    for pid in "${STARTED_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    sleep 1
    for pid in "${STARTED_PIDS[@]}"; do
        kill -9 "$pid" 2>/dev/null || true
    done
    # epmd is started by the Erlang VM as a daemon; stop it only if it was not running before.
    if [ "$EPMD_WAS_RUNNING" = no ]; then
        local epmd
        epmd=$(pgrep -x epmd || true)
        [ -n "$epmd" ] && kill "$epmd" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Many connections: use the hard limit for open files.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
MOST_N=$((CONNECT_N > MUC1K_N ? CONNECT_N : MUC1K_N))
MOST_N=$((MOST_N > LOGIN_N ? MOST_N : LOGIN_N))
# A BOSH client holds two HTTP connections (one long-poll, one for sending).
case " $SCENARIOS " in *" bosh1k "*) MOST_N=$((MOST_N > 2 * MUC1K_N ? MOST_N : 2 * MUC1K_N)) ;; esac
# Both ends of every connection are on this machine (the generator's and the server's).
[ "$(ulimit -n)" -ge $((MOST_N + 100)) ] ||
    die "open-file limit $(ulimit -n) is too low for $MOST_N connections"

wait_port() { # port, seconds
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

stop_pid() { # pid: TERM, then KILL after 10 s
    local pid=$1 i
    kill "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
}

# --- Install ---------------------------------------------------------------------------------
install_servers() {
    local need=()
    case " $SERVERS " in *" prosody "*) command -v prosody >/dev/null || need+=(prosody lua-event) ;; esac
    case " $SERVERS " in *" ejabberd "*) command -v ejabberdctl >/dev/null || need+=(ejabberd) ;; esac
    [ ${#need[@]} -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || die "need root to install ${need[*]}"
    log "installing ${need[*]} from Debian's packages"
    timeout 600 apt-get update -qq
    DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -q "${need[@]}" >"$OUT/apt.log" 2>&1 ||
        die "apt-get install ${need[*]} failed; see $OUT/apt.log"
    # Debian starts the packaged services where an init system runs; they are not ours.
    for service in prosody ejabberd; do
        if command -v systemctl >/dev/null && systemctl is-active --quiet "$service" 2>/dev/null; then
            systemctl stop "$service" || true
        elif [ -x "/etc/init.d/$service" ]; then
            "/etc/init.d/$service" stop >/dev/null 2>&1 || true
        fi
    done
}

# --- Build -----------------------------------------------------------------------------------
build() {
    if [ -z "$SALON_BIN" ] || [ -z "$BENCH_BIN" ]; then
        log "building salon and salon-bench (release)"
        (cd "$ROOT" && timeout 1800 cargo build --release -p salon -p salon-bench) ||
            die "cargo build --release failed"
    fi
    SALON_BIN=${SALON_BIN:-$ROOT/target/release/salon}
    BENCH_BIN=${BENCH_BIN:-$ROOT/target/release/salon-bench}
    [ -x "$SALON_BIN" ] || die "no salon binary at $SALON_BIN"
    [ -x "$BENCH_BIN" ] || die "no salon-bench binary at $BENCH_BIN"
}

# --- Servers ---------------------------------------------------------------------------------
# Each start_* sets PID (the process whose memory and CPU are measured), C2S and HTTP.

start_salon() {
    local dir=$WORK/salon
    mkdir -p "$dir"
    salon_config "$dir/salon.toml" "$dir/data" "$SALON_C2S" "$SALON_HTTP" "$SALON_ARCHIVE"
    if needs_accounts; then
        log "salon: creating $ACCOUNTS accounts"
        local i
        for ((i = 0; i < ACCOUNTS; i++)); do
            timeout 30 "$SALON_BIN" user add "bench$i@localhost" --password "$PASSWORD" \
                --config "$dir/salon.toml" >/dev/null || die "salon user add bench$i failed"
        done
    fi
    "$SALON_BIN" serve --config "$dir/salon.toml" >"$OUT/salon.log" 2>&1 &
    PID=$!
    STARTED_PIDS+=("$PID")
    C2S=$SALON_C2S HTTP=$SALON_HTTP
    wait_port "$C2S" 30 || die "salon did not start; see $OUT/salon.log"
}

start_prosody() {
    local dir=$WORK/prosody
    mkdir -p "$dir/data"
    cat >"$dir/prosody.cfg.lua" <<EOF
-- Generated by bench/compare.sh: loopback only, no TLS, no limits, no s2s.
run_as_root = true
daemonize = false
pidfile = "$dir/prosody.pid"
data_path = "$dir/data"
certificates = "$dir/certs"
log = { { levels = { min = "warn" }, to = "file", filename = "$OUT/prosody.log" } }
network_backend = "epoll"
interfaces = { "127.0.0.1" }
c2s_ports = { $PROSODY_C2S }
c2s_direct_tls_ports = {}
legacy_ssl_ports = {}
s2s_ports = {}
http_ports = { $PROSODY_HTTP }
https_ports = {}
http_interfaces = { "127.0.0.1" }
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
consider_websocket_secure = true
consider_bosh_secure = true
authentication = "internal_hashed"
storage = "internal"
modules_enabled = { "roster", "saslauth", "disco", "ping", "websocket", "bosh", "posix" }
modules_disabled = { "s2s", "tls" }
VirtualHost "localhost"
VirtualHost "anon.localhost"
  authentication = "anonymous"
Component "rooms.localhost" "muc"
  restrict_room_creation = false
  max_history_messages = 0
  muc_max_occupants = 100000
EOF
    if needs_accounts; then
        # internal_hashed keeps SCRAM keys in one Lua file per account; writing them directly
        # is instant, where prosodyctl would start Lua once per account. 4096 iterations, as
        # Salon and ejabberd use.
        mkdir -p "$dir/data/localhost/accounts"
        python3 - "$dir/data/localhost/accounts" "$ACCOUNTS" "$PASSWORD" <<'PY'
import hashlib, hmac, sys, uuid
out, n, password = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
for i in range(n):
    salt = str(uuid.uuid4())
    salted = hashlib.pbkdf2_hmac("sha1", password, salt.encode(), 4096)
    stored = hashlib.sha1(hmac.new(salted, b"Client Key", "sha1").digest()).hexdigest()
    server = hmac.new(salted, b"Server Key", "sha1").hexdigest()
    with open(f"{out}/bench{i}.dat", "w") as f:
        f.write(f'return {{\n\t["iteration_count"] = 4096;\n\t["salt"] = "{salt}";\n'
                f'\t["stored_key"] = "{stored}";\n\t["server_key"] = "{server}";\n}};\n')
PY
    fi
    prosody -F --config "$dir/prosody.cfg.lua" >"$OUT/prosody.stdout" 2>&1 &
    PID=$!
    STARTED_PIDS+=("$PID")
    C2S=$PROSODY_C2S HTTP=$PROSODY_HTTP
    wait_port "$C2S" 30 || die "prosody did not start; see $OUT/prosody.log"
}

EJABBERD_NODE=salonbench$$@localhost

start_ejabberd() {
    local dir=$WORK/ejabberd
    mkdir -p "$dir/spool" "$dir/logs"
    cat >"$dir/ejabberd.yml" <<EOF
# Generated by bench/compare.sh: loopback only, no TLS, no shapers, no s2s.
hosts:
  - localhost
  - anon.localhost
loglevel: warning
log_rotate_count: 0
listen:
  -
    port: $EJABBERD_C2S
    ip: "127.0.0.1"
    module: ejabberd_c2s
    backlog: 1024
    max_stanza_size: 262144
    shaper: none
    access: all
    starttls_required: false
  -
    port: $EJABBERD_HTTP
    ip: "127.0.0.1"
    module: ejabberd_http
    backlog: 1024
    request_handlers:
      /xmpp-websocket: ejabberd_http_ws
      /http-bind: mod_bosh
      /api: mod_http_api
auth_method: internal
auth_password_format: scram
auth_scram_hash: sha
shaper_rules:
  c2s_shaper: none
max_fsm_queue: 100000
acl:
  loopback:
    ip:
      - 127.0.0.0/8
api_permissions:
  "bench registration":
    from:
      - mod_http_api
    who:
      access:
        allow:
          - acl: loopback
    what:
      - "register"
host_config:
  anon.localhost:
    auth_method: anonymous
    anonymous_protocol: sasl_anon
    allow_multiple_connections: true
modules:
  mod_bosh: {}
  mod_disco: {}
  mod_ping: {}
  mod_muc:
    host: rooms.localhost
    access: all
    access_create: all
    access_persistent: all
    access_admin: none
    max_users: 100000
    max_user_conferences: 1000
    min_message_interval: 0
    min_presence_interval: 0
    history_size: 0
    default_room_options:
      max_users: 100000
      mam: false
EOF
    echo "ERLANG_NODE=$EJABBERD_NODE" >"$dir/ejabberdctl.cfg"
    chown -R ejabberd: "$dir" 2>/dev/null || true
    # ejabberdctl run by root switches to the ejabberd user with su, which resets the open-file
    # limit to 1024 (then accepts fail with "too many open files" after ~1000 clients). Switch
    # users ourselves and raise the limit first.
    local user_cmd=(bash -c)
    [ "$(id -u)" -eq 0 ] && user_cmd=(runuser -u ejabberd -- env HOME_DIR=/var/lib/ejabberd bash -c)
    "${user_cmd[@]}" 'ulimit -n "$(ulimit -Hn)"; HOME=${HOME_DIR:-$HOME} exec ejabberdctl --config "$1/ejabberd.yml" --ctl-config "$1/ejabberdctl.cfg" --spool "$1/spool" --logs "$1/logs" foreground' \
        _ "$dir" >"$OUT/ejabberd.stdout" 2>&1 &
    STARTED_PIDS+=("$!")
    C2S=$EJABBERD_C2S HTTP=$EJABBERD_HTTP
    if ! wait_port "$C2S" 60; then
        log "ejabberd did not start within 60 s; skipping it (see $OUT/ejabberd.stdout)"
        return 1
    fi
    # The wrapper execs the Erlang VM under su; measure the VM itself.
    PID=$(pgrep -f "beam.smp.*-sname ${EJABBERD_NODE%@*}" | head -1)
    [ -n "$PID" ] || { log "cannot find ejabberd's beam.smp; skipping it"; return 1; }
    STARTED_PIDS+=("$PID")
    if needs_accounts; then
        log "ejabberd: creating $ACCOUNTS accounts over its HTTP API"
        local i
        for ((i = 0; i < ACCOUNTS; i++)); do
            curl -sf --max-time 10 -X POST "http://127.0.0.1:$HTTP/api/register" \
                -d "{\"user\":\"bench$i\",\"host\":\"localhost\",\"password\":\"$PASSWORD\"}" \
                >/dev/null || { log "ejabberd: registering bench$i failed"; return 1; }
        done
    fi
}

needs_accounts() { case " $SCENARIOS " in *" scram "* | *" chat "*) return 0 ;; esac; return 1; }

# --- Scenarios -------------------------------------------------------------------------------
run_scenario() { # server scenario
    local server=$1 name=$2 args=()
    case $name in
        connect) args=(connect --clients "$CONNECT_N" --duration 5 --concurrency 100) ;;
        scram) args=(connect --auth scram --clients "$SCRAM_N" --duration 1) ;;
        chat) args=(chat --auth scram --clients "$CHAT_N" --rate "$CHAT_RATE" --duration "$DURATION") ;;
        muc1) args=(muc --clients "$MUC_N" --rooms 1 --rate "$MUC1_RATE" --duration "$DURATION") ;;
        muc1busy) args=(muc --clients "$MUC_N" --rooms 1 --rate "$MUC1_BUSY_RATE" --duration "$DURATION") ;;
        muc10) args=(muc --clients "$MUC_N" --rooms 10 --rate "$MUC10_RATE" --duration "$DURATION") ;;
        ws10) args=(ws --ws-url "ws://127.0.0.1:$HTTP/xmpp-websocket" --clients "$MUC_N" --rooms 10
            --rate "$MUC10_RATE" --duration "$DURATION") ;;
        bosh10) args=(bosh --bosh-url "http://127.0.0.1:$HTTP/http-bind" --clients "$MUC_N" --rooms 10
            --rate "$MUC10_RATE" --duration "$DURATION") ;;
        muc1k) args=(muc --clients "$MUC1K_N" --rooms 10 --rate "$MUC1K_RATE" --duration "$DURATION"
            --concurrency 100) ;;
        ws1k) args=(ws --ws-url "ws://127.0.0.1:$HTTP/xmpp-websocket" --clients "$MUC1K_N" --rooms 10
            --rate "$MUC1K_RATE" --duration "$DURATION" --concurrency 100) ;;
        bosh1k) args=(bosh --bosh-url "http://127.0.0.1:$HTTP/http-bind" --clients "$MUC1K_N" --rooms 10
            --rate "$MUC1K_RATE" --duration "$DURATION" --concurrency 100) ;;
        wslogins) args=(ws-logins --ws-url "ws://127.0.0.1:$HTTP/xmpp-websocket" --clients "$LOGIN_N"
            --rate "$LOGIN_RATE" --rooms "$LOGIN_ROOMS" --duration 2 --login-timeout 20) ;;
        *) die "unknown scenario $name" ;;
    esac
    local cmd=("$BENCH_BIN" "${args[@]}" --port "$C2S" --server-pid "$PID" --drain "$DRAIN"
        --setup-timeout 60 --json "$OUT/$server-$name.json")
    echo "${cmd[*]}" | sed "s|$BENCH_BIN|salon-bench|; s|$OUT/||" >>"$OUT/commands.txt"
    log "$server: $name"
    # Other work on the machine shows in the load average; kept beside every figure.
    echo "$server $name: load $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/load.txt"
    local hard=$((DURATION + DRAIN + 180))
    if ! timeout "$hard" "${cmd[@]}" >"$OUT/$server-$name.txt" 2>&1; then
        log "$server: $name failed: $(tail -1 "$OUT/$server-$name.txt")"
        rm -f "$OUT/$server-$name.json"
        tail -1 "$OUT/$server-$name.txt" >"$OUT/$server-$name.failed"
    fi
    cat "$OUT/$server-$name.txt" >&2
    sleep 2 # let the server finish tearing down the previous run's sessions
}

install_servers
build
{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "commit: $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo ' (work tree modified)')"
    echo "salon binary: $SALON_BIN"
    echo "load at start: $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min; per scenario in load.txt)"
    echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB memory, $(uname -r)"
    echo "prosody: $(dpkg-query -W -f '${Version}' prosody 2>/dev/null || echo -)"
    echo "ejabberd: $(dpkg-query -W -f '${Version}' ejabberd 2>/dev/null || echo -)"
} >"$OUT/machine.txt"

# The cost of the writes alone: one loopback write per delivery, no server, at each MUC
# scenario's load (see bench/README.md, "floor"). A load of R rooms at rate r per client offers
# the deliveries per second of one room at r / R, which is what the floor writes.
for name in muc1 muc1busy muc10 ws10 bosh10 muc1k ws1k bosh1k; do
    case " $SCENARIOS " in *" $name "*) ;; *) continue ;; esac
    case $name in
        muc1) n=$MUC_N rate=$MUC1_RATE ;;
        muc1busy) n=$MUC_N rate=$MUC1_BUSY_RATE ;;
        muc10 | ws10 | bosh10) n=$MUC_N rate=$(awk "BEGIN { print $MUC10_RATE / 10 }") ;;
        muc1k | ws1k | bosh1k) n=$MUC1K_N rate=$(awk "BEGIN { print $MUC1K_RATE / 10 }") ;;
    esac
    cmd=("$BENCH_BIN" floor --clients "$n" --rate "$rate" --duration "$DURATION" --json "$OUT/floor-$name.json")
    echo "${cmd[*]}" | sed "s|$BENCH_BIN|salon-bench|; s|$OUT/||" >>"$OUT/commands.txt"
    log "floor: $name"
    timeout $((DURATION + 60)) "${cmd[@]}" >"$OUT/floor-$name.txt" 2>&1 ||
        log "floor: $name failed: $(tail -1 "$OUT/floor-$name.txt")"
done

# The least 1:1 chat can cost at the chat scenario's load: a one-thread server that only wakes
# up, reads each message and writes it to the partner (no XML, no archive; Salon's journal is
# a mapped file, an append is a copy). See bench/README.md, "fixed-floor".
case " $SCENARIOS " in *" chat "*)
    cmd=("$BENCH_BIN" fixed-floor --shape chat --journal none --clients "$CHAT_N" --rate "$CHAT_RATE"
        --duration "$DURATION" --drain 3 --json "$OUT/floor-chat.json")
    echo "${cmd[*]}" | sed "s|$BENCH_BIN|salon-bench|; s|$OUT/||" >>"$OUT/commands.txt"
    log "floor: chat"
    timeout $((DURATION + 60)) "${cmd[@]}" >"$OUT/floor-chat.txt" 2>&1 ||
        log "floor: chat failed: $(tail -1 "$OUT/floor-chat.txt")"
    ;;
esac

for server in $SERVERS; do
    if ! "start_$server"; then
        echo "$server could not be started" >"$OUT/$server.skipped"
        continue
    fi
    log "$server running as pid $PID (c2s $C2S, http $HTTP)"
    for name in $SCENARIOS; do
        run_scenario "$server" "$name"
    done
    stop_pid "$PID"
done

python3 "$ROOT/bench/summary.py" "$OUT" | tee "$OUT/summary.md"
log "results in $OUT"
