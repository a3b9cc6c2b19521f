#!/usr/bin/env bash
# Runs schemathesis against `stratus serve` with the committed OpenAPI documents
# (docs/openapi/{compute,identity,image,network}.json), issue 4 item 7.
#
# Installs a pinned schemathesis in a virtualenv (idempotent) and, for each document,
# starts a fresh `stratus serve` on free loopback ports with a temporary data directory
# (Keystone auth, admin password given), takes an admin token and runs the document's
# operations with a bounded number of generated examples. Fails on any 5xx, any
# response whose status or body is not in the document, or a wrong content type.
#   ST_VENV      where the virtualenv lives (default: target/st-venv)
#   ST_EXAMPLES  examples per operation and phase (default: 30)
#   ST_SEED      hypothesis seed (default: 4; set another to explore)
#   ST_DOCS      which documents (default: "compute identity image network")
set -euo pipefail
cd "$(dirname "$0")/../.."
ST_VERSION=4.32.5
VENV=${ST_VENV:-target/st-venv}
EXAMPLES=${ST_EXAMPLES:-30}
SEED=${ST_SEED:-4}
DOCS=${ST_DOCS:-compute identity image network}
STRATUS=${STRATUS:-target/debug/stratus}
if ! command -v python3 >/dev/null || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update && $SUDO apt-get install -y python3 python3-venv
fi
if [ "$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("schemathesis"))' 2>/dev/null)" != "$ST_VERSION" ]; then
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$ST_VERSION"
fi
[ -n "${STRATUS_PREBUILT:-}" ] || cargo build --locked -p stratus --bin stratus

WORK=$(mktemp -d)
SERVE_PID=""
LOG=/dev/null
stop_serve() {
    if [ -n "$SERVE_PID" ]; then kill "$SERVE_PID" 2>/dev/null || true; wait "$SERVE_PID" 2>/dev/null || true; fi
    SERVE_PID=""
}
cleanup() {
    stop_serve
    rm -rf "$WORK"
}
trap cleanup EXIT
fail() {
    echo "OPENAPI CHECK FAILED: $*" >&2
    echo "---- stratus serve log (last 40 lines) ----" >&2
    tail -n 40 "$LOG" >&2 || true
    exit 1
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
declare -A PORT

# Starts `stratus serve` with a fresh data directory and takes an admin token (TOKEN).
# Each document gets its own server: the generated requests change state (an admin
# may delete the bootstrap image, or change the admin's own password, which revokes
# its tokens), and one document's run must not decide what the next one sees.
start_serve() {
    local dir="$WORK/$1"
    mkdir -p "$dir"
    LOG="$dir/serve.log"
    PORT[compute]=$(free_port); PORT[identity]=$(free_port); PORT[image]=$(free_port)
    PORT[network]=$(free_port)
    STRATUS_ADMIN_PASSWORD=schemathesis-secret RUST_LOG=warn "$STRATUS" serve \
        --data-dir "$dir/data" \
        --listen "127.0.0.1:${PORT[compute]}" \
        --identity-listen "127.0.0.1:${PORT[identity]}" \
        --image-listen "127.0.0.1:${PORT[image]}" \
        --network-listen "127.0.0.1:${PORT[network]}" \
        --hosts 4 >"$LOG" 2>&1 &
    SERVE_PID=$!
    for _ in $(seq 1 100); do
        [ -f "$dir/data/openrc" ] && grep -q "listening" "$LOG" && break
        kill -0 "$SERVE_PID" 2>/dev/null || fail "stratus serve exited"
        sleep 0.1
    done
    [ -f "$dir/data/openrc" ] || fail "no openrc written"

    TOKEN=$("$VENV/bin/python" - "${PORT[identity]}" <<'PY'
import json, sys, urllib.request
body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
    "name": "admin", "domain": {"id": "default"}, "password": "schemathesis-secret"}}},
    "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}
req = urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}/v3/auth/tokens",
    data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
with urllib.request.urlopen(req) as resp:
    print(resp.headers["X-Subject-Token"])
PY
) || fail "could not take an admin token"
}

# Flavors the hooks (ops/openapi/hooks.py) boot and resize servers with.
create_run_flavors() {
    "$VENV/bin/python" - "${PORT[compute]}" "$TOKEN" <<'PY' || fail "could not create the run's flavors"
import json, sys, urllib.request
for fid, ram, disk in (("st-tiny", 256, 1), ("st-small", 512, 2)):
    body = {"flavor": {"id": fid, "name": fid, "ram": ram, "vcpus": 1, "disk": disk}}
    req = urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}/v2.1/flavors",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "X-Auth-Token": sys.argv[2]})
    urllib.request.urlopen(req).read()
PY
}

# Operations that destroy what the rest of the run needs (the flavors the hooks boot
# with, the admin user's access, the bootstrap image) run in a second pass, after
# everything else.
declare -A LAST
LAST[compute]="deleteFlavor"
LAST[identity]="${ST_LAST_IDENTITY:-updateUser updateProject deleteProject deleteUser deleteRole revokeUserProjectRole revokeToken deleteApplicationCredential}"
LAST[image]="${ST_LAST_IMAGE:-deleteImage}"
LAST[network]="${ST_LAST_NETWORK:-deleteNetwork deleteSubnet deleteQuota}"

# st DOC PASS PHASES FILTER...: one schemathesis pass over DOC's operations selected by
# FILTER.
# One worker: with two, hypothesis parses lambda sources from two threads at once, which
# CPython 3.11.7 can fail ("AST constructor recursion depth mismatch", a CPython race
# fixed in 3.11.8), and one worker is no slower here.
st() {
    local doc=$1 pass=$2 phases=$3
    shift 3
    echo "== schemathesis: docs/openapi/$doc.json ($pass) against 127.0.0.1:${PORT[$doc]}"
    PYTHONPATH="$PWD/ops/openapi" SCHEMATHESIS_HOOKS=hooks "$VENV/bin/schemathesis" run "docs/openapi/$doc.json" \
        --url "http://127.0.0.1:${PORT[$doc]}" \
        -H "X-Auth-Token: $TOKEN" \
        --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
        --phases "$phases" \
        --max-examples "$EXAMPLES" --seed "$SEED" \
        --generation-database none \
        --request-timeout 30 \
        --workers 1 \
        --report har --report-har-path "${ST_REPORT_DIR:-$WORK}/$doc-$pass.har" \
        --no-color "$@"
}

status=0
for doc in $DOCS; do
    start_serve "$doc"
    [ "$doc" != compute ] || create_run_flavors
    excludes=() includes=()
    # Endless server-sent-event streams: nothing to check in one response.
    [ "$doc" != compute ] || excludes+=(--exclude-operation-id streamNotifications)
    for id in ${LAST[$doc]:-}; do
        excludes+=(--exclude-operation-id "$id")
        includes+=(--include-operation-id "$id")
    done
    st "$doc" main examples,coverage,fuzzing,stateful "${excludes[@]}" || status=1
    if [ ${#includes[@]} -gt 0 ]; then
        # (no stateful phase: links of one operation to itself only)
        st "$doc" last examples,coverage,fuzzing "${includes[@]}" || status=1
    fi
    kill -0 "$SERVE_PID" 2>/dev/null || fail "stratus serve died during the $doc run"
    stop_serve
done
[ "$status" -eq 0 ] || fail "schemathesis found problems (above)"
echo "OPENAPI CHECK PASSED"
