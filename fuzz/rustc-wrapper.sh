#!/usr/bin/env bash
# RUSTC_WRAPPER of scripts/fuzz.sh: instruments only what the fuzzer's bytes
# reach. `cargo afl build` puts AFL++'s coverage passes (and one codegen
# unit) on every crate; on the ~250 crates behind the coordinator and the
# agent (tokio, tonic, rustls, sqlx, ...) that is most of the build's time,
# for code no target runs. So: Tether's own crates and
# the parsers they hand outside input to keep cargo-afl's flags; every other
# crate is compiled without the coverage passes, at opt-level 0 and with the
# usual codegen units (debug assertions and overflow checks stay on).
#
#   RUSTC_WRAPPER=fuzz/rustc-wrapper.sh cargo afl build ...
set -euo pipefail
rustc=$1
shift

# The parsers outside input reaches beyond Tether's own code: JSON, YAML,
# protobuf, PEM/DER/X.509 (CSRs), base64/hex, timestamps.
instrumented=" afl ipnet serde_json serde_yaml_ng unsafe_libyaml prost rcgen x509_parser der_parser asn1_rs pem rustls_pki_types base64 hex chrono "

name=
source=
prev=
for a in "$@"; do
  [ "$prev" = --crate-name ] && name=$a
  case "$a" in *.rs) source=$a ;; esac
  prev=$a
done
repo=$(cd "$(dirname "$0")/.." && pwd)
# Build scripts, proc macros and crates built without cargo-afl's flags pass
# through; so do the workspace's own crates (their sources are in the clone)
# and the parsers above.
case " $* " in *sanitizer-coverage*) ;; *) exec "$rustc" "$@" ;; esac
case "$source" in "$repo"/* | [!/]*) exec "$rustc" "$@" ;; esac
case "$instrumented" in *" $name "*) exec "$rustc" "$@" ;; esac

args=()
while [ $# -gt 0 ]; do
  case "$1" in
    -C)
      case "${2:-}" in
        passes=sancov* | llvm-args=-sanitizer-coverage*) ;;
        *) args+=(-C "${2:-}") ;;
      esac
      shift 2 || shift
      ;;
    -Cpasses=sancov* | -Cllvm-args=-sanitizer-coverage*) shift ;;
    *) args+=("$1"); shift ;;
  esac
done
# Later -C options win over cargo-afl's.
exec "$rustc" "${args[@]}" -C opt-level=0 -C codegen-units=16
