#!/usr/bin/env bash
# Every test: unit tests of each crate and the end-to-end suites, which start the
# real binaries on loopback (so the binaries are built first). Ends with one
# line totalling every test binary's results.
set -euo pipefail
cd "$(dirname "$0")/.."

# Tools the end-to-end tests use: ps (procps), faketime (a skewed agent clock),
# python3 with venv for the AWS clients below; the install and packaging tests:
# unshare (util-linux), strace, curl, cmp (diffutils), dpkg-deb (dpkg) and rpm.
need=()
command -v ps >/dev/null 2>&1 || need+=(procps)
command -v faketime >/dev/null 2>&1 || need+=(faketime)
command -v python3 >/dev/null 2>&1 || need+=(python3)
python3 -c 'import ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
command -v unshare >/dev/null 2>&1 || need+=(util-linux)
command -v strace >/dev/null 2>&1 || need+=(strace)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v cmp >/dev/null 2>&1 || need+=(diffutils)
command -v dpkg-deb >/dev/null 2>&1 || need+=(dpkg)
command -v rpm >/dev/null 2>&1 || need+=(rpm)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
  else
    echo "scripts/test.sh: install the Debian packages ${need[*]} first (as root: apt-get install ${need[*]})" >&2
    exit 2
  fi
fi

# The real aws CLI, boto3 and moto (PyPI) in a virtual environment cached
# outside the clone; the SSM-API and bridge tests use it and fail without it.
venv="${TETHER_TEST_VENV:-$HOME/.cache/tether-venv}"
reqs=tests/py/requirements.txt
if ! cmp -s "$reqs" "$venv/requirements.txt"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$reqs"
  cp "$reqs" "$venv/requirements.txt"
fi
export TETHER_TEST_VENV="$venv"

cargo build --workspace --bins --locked
# The static release agent and the four packages (the install and packaging tests use them).
# (The coordinator in them is built without LTO here; see packaging/build.sh.)
TETHER_PACKAGE_QUICK=1 packaging/build.sh >/dev/null
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked --lib --bins --tests -- "$@" 2>&1 | tee "$log" || status=$?
awk '/^test result: / { for (i = 1; i < NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
