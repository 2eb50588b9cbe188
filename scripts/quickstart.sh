#!/usr/bin/env bash
# Tether's main job on the embedded default, on this machine:
# a coordinator on SQLite, a local agent registered to it, a command run through it.
#
#   scripts/quickstart.sh            # runs it all, prints the command's output, stops
#   KEEP=1 scripts/quickstart.sh     # leaves the coordinator and agent running
#
# Everything lives in ./.tether-quickstart, made anew on each run; nothing
# needs root, and only loopback addresses are used.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> building tether and tether-agent"
cargo build --workspace --bins --quiet
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
tether="$target_dir/debug/tether"
agent="$target_dir/debug/tether-agent"

work="$PWD/.tether-quickstart"
rm -rf "$work"
mkdir -p "$work"
export TETHER_CONFIG="$work/coordinator/operator.json"
export TETHER_AGENT_STATE_DIR="$work/agent-state"
export TETHER_AGENT_LOG_DIR="$work/agent-log"

pids=()
cleanup() {
  if [ -z "${KEEP:-}" ]; then
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  fi
}
trap cleanup EXIT

echo "==> starting the coordinator (data in $work/coordinator)"
"$tether" serve --data-dir "$work/coordinator" --listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
  --audit-log "$work/audit/audit.log" \
  >"$work/coordinator.out" 2>"$work/coordinator.log" &
pids+=($!)
for _ in $(seq 100); do grep -q '^operator config:' "$work/coordinator.out" 2>/dev/null && break; sleep 0.1; done
cat "$work/coordinator.out"

field() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$@"; }
endpoint=$(field "$TETHER_CONFIG" Endpoint)
pin=$(field "$TETHER_CONFIG" CaPin)

echo "==> creating an activation and registering a local agent"
"$tether" create-activation --iam-role SSMServiceRole --default-instance-name quickstart >"$work/activation.json"
"$agent" register --endpoint "$endpoint" --id "$(field "$work/activation.json" ActivationId)" \
  --code "$(field "$work/activation.json" ActivationCode)" --ca-pin "$pin"
instance=$(field "$TETHER_AGENT_STATE_DIR/registration.json" InstanceId)

echo "==> starting the agent ($instance)"
"$agent" run >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  "$tether" describe-instance-information --output text | grep -q "$instance.*Online" && break
  sleep 0.2
done
"$tether" describe-instance-information --output table

echo "==> tether send-command --document-name AWS-RunShellScript --parameters commands=..."
command_id=$("$tether" send-command --instance-ids "$instance" --document-name AWS-RunShellScript \
  --comment "quickstart" --parameters 'commands=["uname -a","echo hello from $TETHER_INSTANCE_ID"]' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["Command"]["CommandId"])')
for _ in $(seq 100); do
  status=$("$tether" get-command-invocation --command-id "$command_id" --instance-id "$instance" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["Status"])')
  case "$status" in Pending|InProgress) sleep 0.2 ;; *) break ;; esac
done

echo "==> tether get-command-invocation --command-id $command_id --instance-id $instance"
"$tether" get-command-invocation --command-id "$command_id" --instance-id "$instance"

if [ -n "${KEEP:-}" ]; then
  echo
  echo "Coordinator and agent keep running (pids ${pids[*]}). Try:"
  echo "  export TETHER_CONFIG=$TETHER_CONFIG"
  echo "  $tether list-commands --output table"
fi
[ "$status" = Success ]
