#!/usr/bin/env bash
# Runs every test Salon has: formatting and lint checks, the Rust unit and integration tests
# (which start real salon processes and drive them with tokio-xmpp), and the Python suite
# (slixmpp and raw sockets against a real salon process), and the browser tests (headless Chromium
# with playwright-core). Installs what the tests need.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n=== %s\n' "$*"; }

step "tools"
if ! command -v python3 >/dev/null; then
  apt-get update -qq && apt-get install -y -qq python3 python3-venv
fi
python3 -c 'import venv' 2>/dev/null || { apt-get update -qq && apt-get install -y -qq python3-venv; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo build"
cargo build --workspace --bins

step "cargo test"
cargo test --workspace

step "python integration tests"
bash tests/run-python.sh

step "browser tests (headless Chromium: built-in web client, Converse.js)"
bash tests/run-browser.sh
