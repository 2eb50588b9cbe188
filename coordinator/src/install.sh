#!/bin/sh
# Tether agent installer, served by the coordinator at /install.sh.
# Usage (as root): sh install.sh --id ACTIVATION_ID --code ACTIVATION_CODE [--name NAME] [--reregister]
#                  [--endpoint 'https://A:8443,https://B:8443']
#
# Downloads tether-agent from this coordinator (TLS trusted only through the CA
# whose SHA-256 is the pin below), checks the binary's SHA-256, installs it with
# the service for the init system it finds (systemd, upstart, else SysV),
# registers unless already registered, and starts it. Running it again changes
# nothing; --reregister registers the node again. --endpoint replaces the
# coordinator's gRPC endpoint below with another, or with a comma-separated list
# of replicas sharing this CA (kept whole, in one argument, for `register`).
set -eu

ENDPOINT='@ENDPOINT@'
HTTP_ENDPOINT='@HTTP_ENDPOINT@'
CA_PIN='@CA_PIN@'
AGENT_SHA256='@AGENT_SHA256@'

PREFIX=${TETHER_PREFIX:-/usr/bin}
ETC=/etc/tether
STATE_DIR=/var/lib/tether-agent
LOG_DIR=/var/log/tether
AGENT=$PREFIX/tether-agent

id='' code='' name='' reregister=''
while [ $# -gt 0 ]; do
    case "$1" in
        --id) id=$2; shift 2 ;;
        --code) code=$2; shift 2 ;;
        --name) name=$2; shift 2 ;;
        --reregister) reregister=1; shift ;;
        --endpoint) ENDPOINT=$2; shift 2 ;;
        *) echo "tether install: unknown argument $1 (expected --id, --code, --name, --reregister, --endpoint)" >&2; exit 2 ;;
    esac
done

say() { echo "tether install: $*"; }
die() { echo "tether install: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root"
command -v sha256sum >/dev/null 2>&1 || die "sha256sum (coreutils) is needed"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The CA: fetched without trust, then accepted only if it hashes to the pin.
fetch_insecure() {
    if command -v curl >/dev/null 2>&1; then curl -fsSk -o "$2" "$1"
    else wget -q --no-check-certificate -O "$2" "$1"; fi
}
fetch() {
    if command -v curl >/dev/null 2>&1; then curl -fsS --cacert "$ETC/ca.pem" -o "$2" "$1"
    else wget -q --ca-certificate="$ETC/ca.pem" -O "$2" "$1"; fi
}
pin_of() { sed -e '/-----/d' "$1" | base64 -d | sha256sum | cut -d' ' -f1; }

mkdir -p "$ETC" "$LOG_DIR"
chmod 0755 "$ETC"
# The agent's own log directory, root only (older installs shared it).
chown root:root "$LOG_DIR"
chmod 0700 "$LOG_DIR"
if [ ! -s "$ETC/ca.pem" ] || [ "sha256:$(pin_of "$ETC/ca.pem")" != "$CA_PIN" ]; then
    fetch_insecure "$HTTP_ENDPOINT/ca.pem" "$tmp/ca.pem" || die "cannot fetch $HTTP_ENDPOINT/ca.pem"
    got="sha256:$(pin_of "$tmp/ca.pem")"
    [ "$got" = "$CA_PIN" ] || die "the coordinator's CA is $got, expected $CA_PIN: refusing"
    install -m 0644 "$tmp/ca.pem" "$ETC/ca.pem"
    say "CA certificate installed ($CA_PIN)"
fi

# The binary: replaced only if it differs from the coordinator's.
binary_changed=''
if [ -x "$AGENT" ] && [ "$(sha256sum "$AGENT" | cut -d' ' -f1)" = "$AGENT_SHA256" ]; then
    say "$AGENT is up to date"
else
    fetch "$HTTP_ENDPOINT/agent/tether-agent" "$tmp/tether-agent" || die "cannot download the agent from $HTTP_ENDPOINT"
    got=$(sha256sum "$tmp/tether-agent" | cut -d' ' -f1)
    [ "$got" = "$AGENT_SHA256" ] || die "downloaded agent has SHA-256 $got, expected $AGENT_SHA256: refusing"
    mkdir -p "$PREFIX"
    install -m 0755 "$tmp/tether-agent" "$AGENT.new"
    mv -f "$AGENT.new" "$AGENT"
    binary_changed=1
    say "installed $AGENT ($AGENT_SHA256)"
fi

# Writes $2 from stdin unless it already holds exactly that; says whether it changed.
put() {
    cat >"$tmp/put"
    if [ -f "$2" ] && cmp -s "$tmp/put" "$2"; then return 1; fi
    mkdir -p "$(dirname "$2")"
    install -m "$1" "$tmp/put" "$2"
    say "wrote $2"
}

[ -f "$ETC/agent.toml" ] || put 0644 "$ETC/agent.toml" <<'TETHER_EOF' || true
@AGENT_TOML@TETHER_EOF

# Registration: left alone unless asked to register again.
if [ -s "$STATE_DIR/registration.json" ] && [ -z "$reregister" ]; then
    say "already registered ($STATE_DIR/registration.json); --reregister to register again"
else
    [ -n "$id" ] && [ -n "$code" ] || die "--id and --code are needed to register"
    set -- register --endpoint "$ENDPOINT" --id "$id" --code "$code" --ca-pin "$CA_PIN" --state-dir "$STATE_DIR"
    [ -n "$name" ] && set -- "$@" --name "$name"
    [ -n "$reregister" ] && set -- "$@" --force
    instance=$("$AGENT" "$@") || die "registration failed"
    say "registered as $instance"
    binary_changed=1
fi

# The service, for the init system this node runs.
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    unit=/etc/systemd/system/tether-agent.service
    if put 0644 "$unit" <<'TETHER_EOF'
@SYSTEMD_UNIT@TETHER_EOF
    then systemctl daemon-reload; fi
    systemctl enable tether-agent >/dev/null 2>&1 || true
    if [ -n "$binary_changed" ]; then systemctl restart tether-agent; else systemctl start tether-agent; fi
    say "running under systemd (systemctl status tether-agent)"
elif command -v initctl >/dev/null 2>&1 && initctl version 2>/dev/null | grep -q upstart; then
    put 0644 /etc/init/tether-agent.conf <<'TETHER_EOF' || true
description "Tether node agent"
start on runlevel [2345]
stop on runlevel [!2345]
respawn
kill signal TERM
exec /usr/bin/tether-agent run
TETHER_EOF
    if [ -n "$binary_changed" ]; then initctl stop tether-agent >/dev/null 2>&1 || true; fi
    initctl start tether-agent >/dev/null 2>&1 || true
    say "running under upstart (initctl status tether-agent)"
else
    put 0755 /etc/init.d/tether-agent <<'TETHER_EOF' || true
@SYSV_SCRIPT@TETHER_EOF
    if command -v chkconfig >/dev/null 2>&1; then chkconfig --add tether-agent
    elif command -v update-rc.d >/dev/null 2>&1; then update-rc.d tether-agent defaults >/dev/null 2>&1 || true
    fi
    if [ -n "$binary_changed" ]; then /etc/init.d/tether-agent restart; else /etc/init.d/tether-agent start; fi
    say "running under SysV init (/etc/init.d/tether-agent status)"
fi
