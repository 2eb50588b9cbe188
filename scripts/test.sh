#!/usr/bin/env bash
# Every test: unit tests of each crate and the end-to-end suites, which start the
# real binaries on loopback (so the binaries are built first), then the suites
# that use the store again with the coordinators on PostgreSQL. Ends with one
# line totalling every test binary's results in both passes.
set -euo pipefail
cd "$(dirname "$0")/.."

# Tools the end-to-end tests use: ps (procps), faketime (a skewed agent clock;
# the chaos suite preloads its libfaketime into a running agent to jump its clock),
# python3 with venv for the AWS clients below, the aws CLI v2; the install and packaging tests:
# unshare (util-linux), strace, curl, cmp (diffutils), dpkg-deb (dpkg) and rpm;
# the chaos suite: ip (iproute2) for network namespaces and veth, nft (nftables)
# for random packet loss, nsenter (util-linux) for a private tmpfs; the audit
# suite: sqlite3 to tamper with a coordinator's database as its owner could.
need=()
command -v ps >/dev/null 2>&1 || need+=(procps)
command -v faketime >/dev/null 2>&1 || need+=(faketime)
command -v python3 >/dev/null 2>&1 || need+=(python3)
python3 -c 'import ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
command -v unshare >/dev/null 2>&1 || need+=(util-linux)
command -v nsenter >/dev/null 2>&1 || need+=(util-linux)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v nft >/dev/null 2>&1 || need+=(nftables)
command -v strace >/dev/null 2>&1 || need+=(strace)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v cmp >/dev/null 2>&1 || need+=(diffutils)
command -v dpkg-deb >/dev/null 2>&1 || need+=(dpkg)
command -v rpm >/dev/null 2>&1 || need+=(rpm)
command -v sqlite3 >/dev/null 2>&1 || need+=(sqlite3)
# The console's browser tests: headless Chromium and its WebDriver server.
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
# strip: the update tests make release-sized agents from the debug build.
command -v strip >/dev/null 2>&1 || need+=(binutils)
# The aws CLI v2 (Debian's awscli package): the CLI tests compare tether's
# output with it byte for byte. It is called by its path, /usr/bin/aws; the
# aws in the virtual environment below is the PyPI v1 the SDK tests use.
[ -x /usr/bin/aws ] || need+=(awscli)
# The PostgreSQL pass: Debian's server binaries (initdb, pg_ctl, postgres, psql).
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
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
pg_in=
pg_pid=
cleanup() {
  # Closing its stdin stops the PostgreSQL server and removes its directory.
  if [ -n "$pg_in" ]; then
    exec {pg_in}>&-
    wait "$pg_pid" || true
  fi
  rm -f "$log"
}
trap cleanup EXIT
status=0
cargo test --workspace --locked --no-fail-fast --lib --bins --tests -- "$@" 2>&1 | tee "$log" || status=$?

# Second pass: the suites that use the store, against PostgreSQL. One
# throwaway cluster for the pass (tether-test-postgres, built above: Debian's
# binaries, a temporary directory, 127.0.0.1 at a free port); every test
# coordinator gets a fresh database on it, and the coordinator's unit tests
# use it through TETHER_TEST_PG_URL. Selected with --workspace as in the first
# pass (a `-p` selection unifies other features and would rebuild most
# dependencies), so every crate's unit tests run again: a few seconds. Skipped
# here, as they do not depend on the database: packaging and install
# (packages, throwaway roots), node_status (the agent's stages),
# postgres_fixture (the fixture itself, tested in the first pass), update (the
# agent's side of an update; the release store runs here in releases and in
# the store's unit tests) and rotation (its replica tests make their own
# PostgreSQL in the first pass already; renewal is the agent's); the tests
# that always run on PostgreSQL of their own (replicas, the replica chaos and
# PostgreSQL restarts, health, the replica tests of trust and root_token);
# the faults on the node's side (partitions, clock jumps, a full agent spool)
# and the coordinator's full disk (its SQLite file on a tmpfs); and the aws
# CLI v2 byte comparison (the CLI's printing). The bench's small mode runs
# (tether-bench --database): 200 agents on PostgreSQL, ~25 s.
target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
coproc PG { exec "$target_dir/debug/tether-test-postgres"; }
pg_in=${PG[1]}
pg_pid=$PG_PID
if read -r pg_url <&"${PG[0]}"; then
  export TETHER_TEST_DATABASE=postgres TETHER_TEST_PG_URL="$pg_url"
  cargo test --workspace --locked --no-fail-fast --lib --test e2e -- \
    --skip e2e::packaging:: --skip e2e::install:: --skip e2e::node_status:: \
    --skip e2e::postgres_fixture:: --skip e2e::update:: --skip e2e::rotation:: \
    --skip e2e::replicas:: --skip e2e::health:: \
    --skip e2e::chaos::postgresql_restarted --skip e2e::chaos::a_replica_killed \
    --skip e2e::trust::a_change_through_one_replica --skip e2e::root_token::a_rotation_through_one_replica \
    --skip e2e::chaos::partitions --skip e2e::chaos::clock_jumps --skip e2e::chaos::a_full_agent_spool \
    --skip e2e::chaos::a_full_disk --skip e2e::cli::the_aws_cli_v2_and_tether_print_the_same_bytes \
    "$@" 2>&1 | tee -a "$log" || status=$?
else
  echo "scripts/test.sh: PostgreSQL did not start (see above); its pass did not run" >&2
  status=1
fi
awk '/^test result: / { for (i = 1; i < NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
