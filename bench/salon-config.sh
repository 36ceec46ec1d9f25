# The Salon configuration the benchmark scripts run (compare.sh, instructions.sh, ab.sh): the
# equivalent of what Prosody and ejabberd get in compare.sh (bench/README.md), with no rate
# limits in the way of the load. Sourced, not run.
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
