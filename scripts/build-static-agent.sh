#!/usr/bin/env bash
# Builds the static tether-agent for x86_64-unknown-linux-gnu (glibc linked
# statically: `-C target-feature=+crt-static`, non-PIE so that `ldd` says "not a
# dynamic executable"; no musl target is needed) with the
# size-optimised release profile, checks that it is static and within the size
# budget, and prints its path. The flag goes in RUSTFLAGS with an explicit
# --target, so it reaches only the agent's crates, never build scripts or
# proc-macros, and the coordinator and the tests build as usual.
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-gnu
max_bytes=$((8 * 1024 * 1024))
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static -C relocation-model=static" \
  cargo build --release --locked -p tether-agent --target "$target" >&2
out="${CARGO_TARGET_DIR:-target}/$target/release/tether-agent"
linkage=$(LC_ALL=C ldd "$out" 2>&1 || true)
case "$linkage" in
  *"not a dynamic executable"*) ;;
  *) echo "build-static-agent: $out is not a static executable; ldd says: $linkage" >&2; exit 1 ;;
esac
size=$(stat -c %s "$out")
if [ "$size" -gt "$max_bytes" ]; then
  echo "build-static-agent: $out is $size bytes, over the $max_bytes budget" >&2
  exit 1
fi
echo "build-static-agent: $out: static, $size bytes" >&2
echo "$out"
