#!/usr/bin/env bash
# Latency of the SSM-compatible HTTP API as boto3 sees it (TLS, SigV4
# verification, model validation, the action layer, SQLite), against the same
# operations over the operator CLI's gRPC path, on loopback. Not a test: run by
# hand, figures go in notes.
#   TETHER_BIN=target/release/tether N=300 scripts/bench-ssm-api.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${TETHER_BIN:-target/release/tether}"
n="${N:-300}"
venv="${TETHER_TEST_VENV:-$HOME/.cache/tether-venv}"
dir=$(mktemp -d)
"$bin" serve --data-dir "$dir/coord" --listen 127.0.0.1:0 --http-listen 127.0.0.1:0 >"$dir/serve.out" 2>"$dir/serve.log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do grep -q "operator config" "$dir/serve.out" 2>/dev/null && break; sleep 0.1; done
cfg="$dir/coord/operator.json"
key=$("$bin" --config "$cfg" create-access-key)
python3 - "$cfg" "$dir/ca.pem" <<'PY'
import json, sys
open(sys.argv[2], "w").write(json.load(open(sys.argv[1]))["CaCertificate"])
PY
endpoint=$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["HttpEndpoint"])' "$cfg")
AWS_ACCESS_KEY_ID=$(echo "$key" | python3 -c 'import json,sys;print(json.load(sys.stdin)["AccessKey"]["AccessKeyId"])') \
AWS_SECRET_ACCESS_KEY=$(echo "$key" | python3 -c 'import json,sys;print(json.load(sys.stdin)["AccessKey"]["SecretAccessKey"])') \
AWS_CA_BUNDLE="$dir/ca.pem" "$venv/bin/python3" - "$endpoint" "$n" <<'PY'
import statistics, sys, time
import boto3
endpoint, n = sys.argv[1], int(sys.argv[2])
ssm = boto3.client("ssm", endpoint_url=endpoint, region_name="us-east-1")
def timed(name, call):
    call()  # warm: connection, TLS
    t = []
    for _ in range(n):
        s = time.perf_counter(); call(); t.append((time.perf_counter() - s) * 1000)
    t.sort()
    print(f"{name}: n={n} p50={t[n//2]:.2f} ms p95={t[int(n*0.95)]:.2f} ms max={t[-1]:.2f} ms, {n/ (sum(t)/1000):.0f} calls/s sequential")
timed("ListCommands (SigV4)", lambda: ssm.list_commands())
timed("DescribeInstanceInformation (SigV4)", lambda: ssm.describe_instance_information())
timed("ListDocuments (SigV4)", lambda: ssm.list_documents())
PY
start=$(date +%s%N)
for _ in $(seq 20); do "$bin" --config "$cfg" list-commands >/dev/null; done
echo "tether list-commands (gRPC, one process per call incl. TLS setup): $(( ($(date +%s%N) - start) / 20000000 )) ms per call over 20"
