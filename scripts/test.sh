#!/usr/bin/env bash
# Every test: unit tests of each crate and the end-to-end suites, which start the
# real binaries on loopback (so the binaries are built first). Ends with one
# line totalling every test binary's results.
set -euo pipefail
cd "$(dirname "$0")/.."

# Tools the end-to-end tests use: ps (procps) and faketime (a skewed agent clock).
need=()
command -v ps >/dev/null 2>&1 || need+=(procps)
command -v faketime >/dev/null 2>&1 || need+=(faketime)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
  else
    echo "scripts/test.sh: install the Debian packages ${need[*]} first (as root: apt-get install ${need[*]})" >&2
    exit 2
  fi
fi

cargo build --workspace --bins --locked
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked --lib --bins --tests -- "$@" 2>&1 | tee "$log" || status=$?
awk '/^test result: / { for (i = 1; i < NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
