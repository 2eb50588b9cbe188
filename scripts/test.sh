#!/usr/bin/env bash
# Every test: unit tests of each crate and the end-to-end suites, which start the
# real binaries on loopback (so the binaries are built first). Ends with one
# line totalling every test binary's results.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --bins --locked
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked --lib --bins --tests -- "$@" 2>&1 | tee "$log" || status=$?
awk '/^test result: / { for (i = 1; i < NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
