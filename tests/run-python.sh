#!/usr/bin/env bash
# Runs the Python (pytest + slixmpp) integration tests against target/debug/salon
# (or $SALON_BIN). Assumes the Rust binary is already built. Extra arguments go to pytest.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
venv="$here/python/.venv"
req="$here/python/requirements.txt"

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
# Reinstall only when requirements.txt changed since the last successful install.
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
    echo "$want" > "$stamp"
fi

# aioxmpp (tests/python/test_clients.py) needs multidict<7: a venv of its own.
avenv="$here/aioxmpp/.venv"
areq="$here/aioxmpp/requirements.txt"
[ -x "$avenv/bin/python" ] || python3 -m venv "$avenv"
astamp="$avenv/.requirements.sha256"
awant="$(sha256sum "$areq" | cut -d' ' -f1)"
if [ ! -f "$astamp" ] || [ "$(cat "$astamp")" != "$awant" ]; then
    "$avenv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$areq"
    echo "$awant" > "$astamp"
fi

# mcabber (loudmouth) in tmux, for the same file; Debian packages.
if ! command -v mcabber >/dev/null || ! command -v tmux >/dev/null; then
    sudo_="" ; [ "$(id -u)" = 0 ] || sudo_="sudo"
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq mcabber tmux >/dev/null
fi

# Debian's Chromium for the web client's guest in a federated room (test_federation_webclient.py,
# driven by the playwright package, which never fetches a browser of its own).
if [ ! -x /usr/bin/chromium ]; then
    sudo_="" ; [ "$(id -u)" = 0 ] || sudo_="sudo"
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq chromium >/dev/null
fi

# Prosody and ejabberd, Debian's packages, as federation peers (test_federation_peers.py starts
# its own throw-away instances). Installed only when missing. Their packaged services must never
# run: they would take 5222/5269 on every address. A policy-rc.d that denies starting services
# covers the install (kept if the system already has one), and the units are disabled after.
if ! command -v prosody >/dev/null || ! command -v ejabberdctl >/dev/null; then
    sudo_="" ; [ "$(id -u)" = 0 ] || sudo_="sudo"
    policy=/usr/sbin/policy-rc.d
    own_policy=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | $sudo_ tee "$policy" >/dev/null
        $sudo_ chmod 755 "$policy"
        own_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get update -qq
    # lua-unbound: Prosody's resolver that can read /etc/hosts (only recommended by the package).
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends \
        prosody lua-unbound ejabberd >/dev/null
    [ -z "$own_policy" ] || $sudo_ rm -f "$policy"
    if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
        $sudo_ systemctl disable --now prosody ejabberd >/dev/null 2>&1 || true
    fi
fi

cd "$repo"
set +e
"$venv/bin/python" -m pytest -q tests/python "$@"
rc=$?
exit $rc
