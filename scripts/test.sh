#!/usr/bin/env bash
# Every test: unit tests of each crate and the end-to-end suites, which start the
# real binaries on loopback (so the binaries are built first).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --bins --locked
cargo test --workspace --locked -- "$@"
