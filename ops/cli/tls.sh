#!/usr/bin/env bash
# The stock `openstack` CLI against `stratus serve --tls-cert` with a self-signed
# certificate, using only the openrc stratus writes: its OS_CACERT must make the CLI
# trust the endpoints (without it: CERTIFICATE_VERIFY_FAILED).
#
# Usage: ops/cli/tls.sh [STRATUS_BINARY]   (default: target/debug/stratus)
# Needs `openstack` (ops/cli/run.sh) and `openssl` on PATH.
set -euo pipefail
cd "$(dirname "$0")/../.."
STRATUS=${1:-target/debug/stratus}
WORK=$(mktemp -d)
SERVE_PID=""
cleanup() {
    if [ -n "$SERVE_PID" ]; then kill "$SERVE_PID" 2>/dev/null || true; wait "$SERVE_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
fail() {
    echo "TLS SCENARIO FAILED: $*" >&2
    tail -n 40 "$WORK/serve.log" >&2 || true
    exit 1
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=127.0.0.1" \
    -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
RUST_LOG=warn "$STRATUS" serve --data-dir "$WORK/data" \
    --listen "127.0.0.1:$(free_port)" --identity-listen "127.0.0.1:$(free_port)" \
    --image-listen "127.0.0.1:$(free_port)" --network-listen "127.0.0.1:$(free_port)" --hosts 1 \
    --tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem" >"$WORK/serve.log" 2>&1 &
SERVE_PID=$!
for _ in $(seq 1 100); do
    [ -f "$WORK/data/openrc" ] && grep -q "listening" "$WORK/serve.log" && break
    kill -0 "$SERVE_PID" 2>/dev/null || fail "stratus serve exited"
    sleep 0.1
done
grep -q "^export OS_CACERT='$WORK/cert.pem'$" "$WORK/data/openrc" || fail "openrc has no OS_CACERT: $(grep -v PASSWORD "$WORK/data/openrc")"
# shellcheck disable=SC1091
source "$WORK/data/openrc"
for cmd in "token issue -f value -c id" "image list -f value -c Name" "server list" "flavor list"; do
    # shellcheck disable=SC2086
    out=$(openstack $cmd 2>&1) || fail "openstack $cmd over TLS: $out"
done
echo "openstack CLI over TLS with the openrc's OS_CACERT: ok"
