#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser of outside input (README
# "Fuzzing"), with AFL++ through cargo-afl on stable Rust.
#
#   scripts/fuzz.sh [--seconds N] [--jobs J] [--keep DIR] [--build-only] [TARGET...]
#
# Builds the targets of fuzz/ (a workspace of its own, so the instrumentation
# never reaches Tether's own builds) and runs each for N seconds (default 45),
# J at a time (default 2), starting from the committed corpus in
# fuzz/corpus/TARGET. Prints a line per target (executions, corpus, crashes,
# hangs) and fails if any target crashed, or hung on an input that still
# hangs when run again alone. Crashing and hanging inputs are kept in DIR
# (default $HOME/.cache/tether-fuzz/findings) with the panic each gave; turn
# each crash into a unit test in the crate that owns the parser.
# --build-only stops after the build (CI builds while the other tests run).
#
# cargo-afl (which builds its own AFL++ from source on stable Rust) is
# installed on first use into ~/.cache/tether-tools (or $TETHER_TOOLS), about
# a minute and a half on 2 cores, and reused after; the instrumented build
# (in ~/.cache/tether-target-afl) takes about 4 minutes from scratch. The
# machine is not reconfigured: what AFL++ would ask of it (core_pattern, the
# CPU governor, CPU binding) is waived for this process through AFL++'s own
# environment variables.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

all_targets=(document schedule shorthand sigv4 ssm_request policy coordinator_proto agent_envelope)
seconds=45
jobs=2
findings="${TETHER_FUZZ_FINDINGS:-$HOME/.cache/tether-fuzz/findings}"
targets=()
build_only=
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --seconds=*) seconds=${1#*=}; shift ;;
    --jobs) jobs=$2; shift 2 ;;
    --jobs=*) jobs=${1#*=}; shift ;;
    --keep) findings=$2; shift 2 ;;
    --keep=*) findings=${1#*=}; shift ;;
    --build-only) build_only=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *)
      if [[ " ${all_targets[*]} " != *" $1 "* ]]; then
        echo "fuzz.sh: unknown target $1 (targets: ${all_targets[*]})" >&2
        exit 2
      fi
      targets+=("$1"); shift ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=("${all_targets[@]}")
case "$seconds$jobs" in *[!0-9]*) echo "fuzz.sh: --seconds and --jobs take whole numbers" >&2; exit 2 ;; esac

# AFL++ is built from source by cargo-afl's install: a C compiler and make.
need=()
command -v cc >/dev/null 2>&1 || need+=(gcc)
command -v make >/dev/null 2>&1 || need+=(make)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
  else
    echo "fuzz.sh: install ${need[*]} first (as root: apt-get install ${need[*]})" >&2
    exit 2
  fi
fi

tools="${TETHER_TOOLS:-$HOME/.cache/tether-tools}"
afl_version=0.18.2
# cargo-afl keeps AFL++ and its runtime under $XDG_DATA_HOME/afl.rs, per
# rustc version: in the tools cache, not in the user's ~/.local/share.
export XDG_DATA_HOME="$tools/afl.rs"
export PATH="$tools/bin:$PATH"
if [ "$(cargo-afl afl --version 2>/dev/null | cut -d' ' -f2)" != "$afl_version" ]; then
  echo "fuzz.sh: installing cargo-afl $afl_version and building AFL++ (cargo install, once)" >&2
  env -u CARGO_TARGET_DIR cargo install --locked --quiet --force --root "$tools" --version "$afl_version" cargo-afl
fi
# A new rustc needs the runtime built for it (cargo install builds it for
# the rustc it ran with), where cargo-afl looks for it.
rustc_id=$(rustc -vV | awk '/^release:/ { r = $2 } /^commit-hash:/ { h = substr($2, 1, 7) } END { print "rustc-" r "-" h }')
if [ ! -f "$XDG_DATA_HOME/afl.rs/$rustc_id/afl.rs-$afl_version/afl-llvm/afl-compiler-rt.o" ]; then
  echo "fuzz.sh: building AFL++'s runtime for $(rustc --version)" >&2
  cargo afl config --build --force
fi

# The instrumented build: its own target directory, never the project's.
# --target keeps the instrumentation off build scripts and proc macros.
export CARGO_TARGET_DIR="${TETHER_FUZZ_TARGET_DIR:-$HOME/.cache/tether-target-afl}"
triple=$(rustc -vV | sed -n 's/^host: //p')
# The fuzz workspace's lock file starts as Tether's: every crate they share
# is fuzzed at the version Tether locks (cargo adds the afl crate's own).
cp Cargo.lock fuzz/Cargo.lock
# Only Tether's crates and the parsers they use are instrumented (see the
# wrapper): the rest of the ~300 crates build as for a quick debug build.
export RUSTC_WRAPPER="$repo/fuzz/rustc-wrapper.sh"
echo "fuzz.sh: building the targets (cargo afl build --release)"
# opt-level 1 rather than cargo-afl's 3 for what is instrumented, and -O1 for
# the C of sqlite and ring: half the build time, and the targets run about as
# fast (what they spend goes to AFL++'s coverage callbacks).
(cd fuzz && AFL_OPT_LEVEL=1 CFLAGS=-O1 cargo afl build --release --quiet --target "$triple" --bins)
bin_dir="$CARGO_TARGET_DIR/$triple/release"
if [ -n "$build_only" ]; then
  echo "fuzz.sh: built the targets in $bin_dir"
  exit 0
fi

# Runs never leave the machine changed: no core_pattern, no CPU governor.
export AFL_SKIP_CPUFREQ=1
if [ "$(cat /proc/sys/kernel/core_pattern 2>/dev/null)" != core ]; then
  export AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1
fi
# Shared machines: no CPU binding, no curses screen, no update checks.
export AFL_NO_AFFINITY=1 AFL_NO_UI=1 AFL_FAST_CAL=1 AFL_NO_CRASH_README=1
# The targets panic into abort(); AFL++ counts that as a crash.
export RUST_BACKTRACE=0

runs=$(mktemp -d "${TMPDIR:-/tmp}/tether-fuzz.XXXXXX")
trap 'rm -rf "$runs"' EXIT

run_target() {
  local t=$1
  local out="$runs/$t"
  local dict=()
  [ -f "fuzz/dict/$t.dict" ] && dict=(-x "fuzz/dict/$t.dict")
  # -V: stop after the budget; -t: a run over 1 s (+: skip such seeds) is a hang.
  "$tools/bin/cargo-afl" afl fuzz -i "fuzz/corpus/$t" -o "$out" "${dict[@]}" -V "$seconds" -t 1000+ \
    -- "$bin_dir/$t" >"$runs/$t.log" 2>&1
}

echo "fuzz.sh: ${#targets[@]} targets, $seconds s each, $jobs at a time"
start=$(date +%s)
running=0
for t in "${targets[@]}"; do
  if [ "$running" -ge "$jobs" ]; then
    wait -n || true
    running=$((running - 1))
  fi
  run_target "$t" &
  running=$((running + 1))
done
wait || true

field() { sed -n "s/^$1 *: //p" "$2"; }
status=0
printf '%-18s %8s %10s %10s %7s %8s %6s\n' target seconds execs exec/s corpus crashes hangs
for t in "${targets[@]}"; do
  stats="$runs/$t/default/fuzzer_stats"
  if [ ! -f "$stats" ]; then
    echo "fuzz.sh: $t did not start; afl-fuzz said:" >&2
    tail -n 20 "$runs/$t.log" >&2
    status=1
    continue
  fi
  crashes=("$runs/$t/default/crashes"/id:*)
  hangs=("$runs/$t/default/hangs"/id:*)
  [ -e "${crashes[0]}" ] || crashes=()
  [ -e "${hangs[0]}" ] || hangs=()
  printf '%-18s %8s %10s %10s %7s %8s %6s\n' "$t" "$(field run_time "$stats")" \
    "$(field execs_done "$stats")" "$(field execs_per_sec "$stats")" "$(field corpus_count "$stats")" "${#crashes[@]}" "${#hangs[@]}"
  keep="$findings/$t"
  for f in "${crashes[@]}"; do
    mkdir -p "$keep"
    name="crash-$(sha256sum "$f" | cut -c1-16)"
    cp "$f" "$keep/$name"
    # Outside afl-fuzz the target reads one input from stdin and runs it once.
    "$bin_dir/$t" <"$f" >"$keep/$name.txt" 2>&1 || true
    echo "fuzz.sh: $t CRASHED on $keep/$name:" >&2
    grep -m1 -A2 'panicked at' "$keep/$name.txt" >&2 || tail -n 5 "$keep/$name.txt" >&2
    status=1
  done
  for f in "${hangs[@]}"; do
    # A slow run on a busy machine is not a hang: only one that still takes
    # over 10 s alone is.
    if timeout 10 "$bin_dir/$t" <"$f" >/dev/null 2>&1 || [ $? != 124 ]; then
      continue
    fi
    mkdir -p "$keep"
    name="hang-$(sha256sum "$f" | cut -c1-16)"
    cp "$f" "$keep/$name"
    echo "fuzz.sh: $t HANGS (over 10 s) on $keep/$name" >&2
    status=1
  done
done
echo "fuzz.sh: $(( $(date +%s) - start )) s of fuzzing in all"
if [ "$status" != 0 ]; then
  echo "fuzz.sh: FAILED (see above; findings in $findings)" >&2
fi
exit "$status"
