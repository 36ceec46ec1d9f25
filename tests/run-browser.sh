#!/usr/bin/env bash
# Browser tests of the built-in web client and the /converse/ page: headless Debian Chromium
# driven by playwright-core (Node's test runner), against target/debug/salon (or $SALON_BIN),
# with a slixmpp client from tests/python/.venv in the rooms. Installs what is missing:
# chromium (apt), the npm packages (npm ci: playwright-core, converse.js), the Python venv.
# Assumes the Rust binary is already built. Extra arguments go to `node --test`.
# SALON_SCREENSHOTS=DIR keeps screenshots of the pages.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"

if [ ! -x /usr/bin/chromium ] || ! fc-list 2>/dev/null | grep -qi "noto color emoji"; then
    export DEBIAN_FRONTEND=noninteractive
    sudo_="" ; [ "$(id -u)" = 0 ] || sudo_="sudo"
    $sudo_ apt-get update -qq
    # The emoji font only makes screenshots show reactions instead of empty boxes.
    $sudo_ apt-get install -y -qq chromium fonts-noto-color-emoji >/dev/null
fi

cd "$here/browser"
# Never let a tool fetch a browser build of its own: the tests use /usr/bin/chromium.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
stamp="node_modules/.package-lock.sha256"
want="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
    echo "$want" > "$stamp"
fi

# The slixmpp client in the rooms uses the Python suite's venv.
venv="$here/python/.venv"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
req="$here/python/requirements.txt"
pystamp="$venv/.requirements.sha256"
pywant="$(sha256sum "$req" | cut -d' ' -f1)"
if [ ! -f "$pystamp" ] || [ "$(cat "$pystamp")" != "$pywant" ]; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
    echo "$pywant" > "$pystamp"
fi

if [ ! -x "${SALON_BIN:-$repo/target/debug/salon}" ]; then
    echo "Salon binary not found: run 'cargo build -p salon' first (or set SALON_BIN)" >&2
    exit 1
fi
export SALON_CONVERSE_DIR="${SALON_CONVERSE_DIR:-$here/browser/node_modules/converse.js/dist}"
exec node --test --test-concurrency=1 --test-timeout=180000 "$@" "$here/browser/"*.test.js
