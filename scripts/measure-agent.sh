#!/usr/bin/env bash
# Measures the static agent: binary size, and resident memory while idle
# (registered, long-polling a coordinator on loopback, no command running) after
# SECONDS (default 60). Builds the static agent and the coordinator first.
# Prints one line per figure; a benchmark, not a test.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
agent=$(scripts/build-static-agent.sh)
cargo build --locked -p tether --bin tether >&2
tether="${CARGO_TARGET_DIR:-target}/debug/tether"
dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT
"$tether" serve --data-dir "$dir/coord" --listen 127.0.0.1:0 --http-listen 127.0.0.1:0 >"$dir/serve.out" 2>"$dir/serve.err" &
pids+=($!)
for _ in $(seq 100); do grep -q '^operator config:' "$dir/serve.out" 2>/dev/null && break; sleep 0.1; done
export TETHER_CONFIG="$dir/coord/operator.json"
act=$("$tether" create-activation --iam-role SSMServiceRole)
id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["ActivationId"])' <<<"$act")
code=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["ActivationCode"])' <<<"$act")
endpoint=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["Endpoint"])' "$TETHER_CONFIG")
pin=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["CaPin"])' "$TETHER_CONFIG")
"$agent" register --endpoint "$endpoint" --id "$id" --code "$code" --ca-pin "$pin" --state-dir "$dir/agent" >/dev/null
"$agent" run --state-dir "$dir/agent" --log-dir "$dir/log" &
apid=$!
pids+=($apid)
sleep "$secs"
echo "agent binary: $(stat -c %s "$agent") bytes ($(LC_ALL=C ldd "$agent" 2>&1 | tr -d '\t'))"
echo "agent idle after ${secs}s: $(grep -E '^VmRSS' /proc/$apid/status | tr -s ' \t' ' '), $(grep -E '^VmHWM' /proc/$apid/status | tr -s ' \t' ' '), threads $(grep -E '^Threads' /proc/$apid/status | awk '{print $2}')"
