#!/usr/bin/env bash
# Builds the .deb and .rpm of the agent (static) and of the coordinator into
# DIR (default: <target dir>/packages) with cargo-deb and cargo-generate-rpm
# (no rpmbuild needed), installing those two tools with `cargo install
# --locked` when missing. Prints the four package paths.
set -euo pipefail
cd "$(dirname "$0")/.."
tdir=${CARGO_TARGET_DIR:-target}
out=${1:-$tdir/packages}
target=x86_64-unknown-linux-gnu

for tool in cargo-deb cargo-generate-rpm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "packaging: installing $tool (cargo install --locked, cached in ${CARGO_HOME:-~/.cargo})" >&2
    cargo install --locked --quiet "$tool" >&2
  fi
done

agent=$(scripts/build-static-agent.sh)
# TETHER_PACKAGE_QUICK=1 (the test suite) builds the coordinator without LTO:
# the package tests check packaging, not optimisation, and LTO over aws-sdk
# costs minutes. Release packages leave it unset.
if [ -n "${TETHER_PACKAGE_QUICK:-}" ]; then
  CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    cargo build --release --locked -p tether --bin tether >&2
else
  cargo build --release --locked -p tether --bin tether >&2
fi
# The coordinator's package carries the static agent it serves to nodes.
install -m 0755 "$agent" "$tdir/release/tether-agent-static"

rm -rf "$out"
mkdir -p "$out"
cargo deb -p tether-agent --target "$target" --no-build --no-strip --output "$out/" >&2
cargo deb -p tether --no-build --no-strip --output "$out/" >&2
cargo generate-rpm -p agent --target "$target" --target-dir "$tdir" --output "$out/" >&2
cargo generate-rpm -p coordinator --target-dir "$tdir" --output "$out/" >&2
ls "$out"/*.deb "$out"/*.rpm
