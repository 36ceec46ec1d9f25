#!/usr/bin/env bash
# Fuzz Salon's parsers of network input for a bounded time with cargo-fuzz (libFuzzer): the XML
# stream parser, BOSH bodies, WebSocket frames, JIDs, SCRAM messages and data forms
# (crates/xml/fuzz/fuzz_targets).
#
#   scripts/fuzz.sh [SECONDS] [-- LIBFUZZER_ARGS...]
#
# SECONDS defaults to 60, per target. Environment:
#   FUZZ_TARGET     one fuzz target to run (default: all of them, one after the other)
#   FUZZ_RSS_MB     libFuzzer's memory limit (-rss_limit_mb, default 256): low enough that an
#                   input of at most 8 KiB that makes the code allocate out of proportion (parsed
#                   XML amplification, say) is reported as a crash
#   FUZZ_SANITIZER  none (default) or address. `none` works on the stable toolchain as is: cargo-fuzz
#                   then passes only stable -C flags (SanitizerCoverage via -Cpasses/-Cllvm-args).
#                   `address` needs -Zsanitizer, so the script sets RUSTC_BOOTSTRAP=1 for it (the
#                   stable toolchain ships the ASan runtime); salon-xml is safe Rust, so this is
#                   rarely worth the slowdown.
#   FUZZ_JOBS       parallel libFuzzer workers (default: 1; the machine is shared)
#
# The committed seeds in crates/xml/fuzz/corpus/<target>/ are read, never written: inputs libFuzzer
# finds go to crates/xml/fuzz/corpus-work/<target>/ (git-ignored), which later runs reuse.
# A crash (panic) leaves its input in crates/xml/fuzz/artifacts/<target>/ and the script exits 1.
set -euo pipefail

seconds="${1:-60}"
if [[ $# -gt 0 ]]; then shift; fi
if [[ "${1:-}" == "--" ]]; then shift; fi
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [[ "$seconds" -eq 0 ]]; then
    echo "usage: $0 [SECONDS] [-- LIBFUZZER_ARGS...]" >&2
    exit 2
fi

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z "${FUZZ_TARGET:-}" ]]; then
    failed=()
    for file in "$repo"/crates/xml/fuzz/fuzz_targets/*.rs; do
        name="$(basename "$file" .rs)"
        FUZZ_TARGET="$name" "$0" "$seconds" -- "$@" || failed+=("$name")
    done
    if [[ ${#failed[@]} -gt 0 ]]; then
        echo "FAILED targets: ${failed[*]}"
        exit 1
    fi
    echo "all fuzz targets: OK"
    exit 0
fi
target="$FUZZ_TARGET"
rss_mb="${FUZZ_RSS_MB:-256}"
sanitizer="${FUZZ_SANITIZER:-none}"
jobs="${FUZZ_JOBS:-1}"

crate="$repo/crates/xml"
fuzz="$crate/fuzz"
seeds="$fuzz/corpus/$target"
work="$fuzz/corpus-work/$target"
artifacts="$fuzz/artifacts/$target"
log="$fuzz/target/fuzz-$target.log"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== cargo-fuzz not found; installing it (cargo install cargo-fuzz --locked)"
    cargo install cargo-fuzz --locked
fi

# A sanitizer build gets its own target dir so switching does not rebuild the other one.
target_dir=()
case "$sanitizer" in
    none) ;;
    address | leak) export RUSTC_BOOTSTRAP=1; target_dir=(--target-dir "$fuzz/target/$sanitizer") ;;
    *) echo "FUZZ_SANITIZER must be none, address or leak (got '$sanitizer')" >&2; exit 2 ;;
esac

mkdir -p "$work" "$artifacts" "$fuzz/target"
cd "$crate"

echo "== building fuzz target '$target' (sanitizer: $sanitizer; $(cargo fuzz --version))"
# Release build with debug assertions and overflow checks (cargo-fuzz's default for `run`).
nice cargo fuzz build --sanitizer "$sanitizer" --debug-assertions "${target_dir[@]}" "$target"

shopt -s nullglob
before=("$artifacts"/*)
echo "== fuzzing '$target' for ${seconds}s (seeds: ${seeds#"$repo"/}, working corpus: ${work#"$repo"/})"
start=$(date +%s)
status=0
nice cargo fuzz run --sanitizer "$sanitizer" --debug-assertions "${target_dir[@]}" --jobs "$jobs" "$target" \
    "$work" "$seeds" -- \
    -max_total_time="$seconds" -max_len=8192 -timeout=10 -rss_limit_mb="$rss_mb" \
    -print_final_stats=1 "$@" 2>&1 | tee "$log" || status=$?
elapsed=$(( $(date +%s) - start ))

after=("$artifacts"/*)
new=()
for file in "${after[@]}"; do
    seen=0
    for old in "${before[@]}"; do [[ "$file" == "$old" ]] && seen=1; done
    [[ $seen -eq 0 ]] && new+=("$file")
done

echo
echo "================ fuzz summary: $target ================"
echo "wall time:                 ${elapsed}s (budget ${seconds}s, build excluded)"
# libFuzzer's last status line, e.g. "#123456 DONE cov: 1234 ft: 5678 corp: 321/40Kb ..."
last=$(grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE|INITED)' "$log" | tail -1 || true)
[[ -n "$last" ]] && echo "last status:               $last"
for stat in number_of_executed_units average_exec_per_sec new_units_added peak_rss_mb; do
    value=$(grep -E "^stat::$stat:" "$log" | tail -1 | awk '{print $2}' || true)
    [[ -n "$value" ]] && printf '%-26s %s\n' "$stat:" "$value"
done
echo "working corpus:            $(find "$work" -type f | wc -l) files in ${work#"$repo"/}"
if [[ ${#new[@]} -gt 0 ]]; then
    echo "RESULT: FAILED — ${#new[@]} new artifact(s):"
    for file in "${new[@]}"; do echo "  ${file#"$repo"/}"; done
    grep -m1 -A3 "panicked at" "$log" | sed 's/^/  /' || true
    echo "reproduce: (cd crates/xml && cargo fuzz run -s none $target ${new[0]#"$crate"/})"
    echo "minimise:  (cd crates/xml && cargo fuzz tmin -s none $target ${new[0]#"$crate"/})"
    echo "full log:  ${log#"$repo"/}"
    exit 1
fi
if [[ $status -ne 0 ]]; then
    echo "RESULT: FAILED — cargo fuzz exited with status $status (see ${log#"$repo"/})"
    exit "$status"
fi
echo "RESULT: OK — no crash"
