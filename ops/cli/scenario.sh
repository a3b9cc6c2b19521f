#!/usr/bin/env bash
# The stock `openstack` CLI against `stratus serve`, end to end (issue 4, item 6).
#
# Usage: ops/cli/scenario.sh [STRATUS_BINARY]   (default: target/debug/stratus)
# Needs `openstack` on PATH (ops/cli/run.sh installs a pinned one in a virtualenv).
# Starts `stratus serve` on free loopback ports with a temporary data directory, sources
# the openrc it writes, runs every step and checks the server's status after each one.
# A step that fails or a status that does not match stops the script with the CLI's
# output; the server's log is printed too. Exit 0 only when every step passed.
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

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
COMPUTE_PORT=$(free_port); IDENTITY_PORT=$(free_port); IMAGE_PORT=$(free_port)

fail() {
    echo "SCENARIO FAILED: $*" >&2
    echo "---- stratus serve log (last 40 lines) ----" >&2
    tail -n 40 "$WORK/serve.log" >&2 || true
    exit 1
}

# run CMD...: runs an openstack command, fails loudly with its output.
# Checks capture the output first (`LISTED=$(run ...)`, then `grep -q ... <<<"$LISTED"`):
# in `run ... | grep -q`, grep may exit at its first match while run still writes, and
# the writer's SIGPIPE fails the pipeline under pipefail, at random.
run() {
    local out
    if ! out=$(openstack "$@" 2>&1); then
        fail "openstack $*
$out"
    fi
    printf '%s\n' "$out"
}

# expect_status SERVER STATUS: polls until the server shows STATUS (60 s at most).
expect_status() {
    local server=$1 want=$2 got="" i
    for i in $(seq 1 300); do
        got=$(openstack server show -f value -c status "$server" 2>&1) || fail "server show $server: $got"
        [ "$got" = "$want" ] && { echo "  $server is $want"; return 0; }
        [ "$got" = "ERROR" ] && break
        sleep 0.2
    done
    fail "server $server: expected status $want, got $got
$(openstack server show "$server" 2>&1)"
}

step() { echo "== $*"; }

STRATUS_ADMIN_PASSWORD=scenario-secret RUST_LOG=warn "$STRATUS" serve \
    --data-dir "$WORK/data" \
    --listen "127.0.0.1:$COMPUTE_PORT" \
    --identity-listen "127.0.0.1:$IDENTITY_PORT" \
    --image-listen "127.0.0.1:$IMAGE_PORT" \
    --hosts 2 >"$WORK/serve.log" 2>&1 &
SERVE_PID=$!
for i in $(seq 1 100); do
    [ -f "$WORK/data/openrc" ] && grep -q "listening" "$WORK/serve.log" && break
    kill -0 "$SERVE_PID" 2>/dev/null || fail "stratus serve exited"
    sleep 0.1
done
[ -f "$WORK/data/openrc" ] || fail "no openrc written"
# shellcheck disable=SC1091
source "$WORK/data/openrc"

step "identity"
run token issue -f value -c id >/dev/null
run project list

step "flavors"
run flavor create --ram 256 --disk 1 --vcpus 1 --id scen-1 scen.tiny >/dev/null
LISTED=$(run flavor list)
grep -q scen.tiny <<<"$LISTED" || fail "flavor list lacks scen.tiny:
$LISTED"
[ "$(run flavor show -f value -c ram scen.tiny)" = "256" ] || fail "flavor show scen.tiny: wrong ram"
run flavor delete scen.tiny
if openstack flavor show scen.tiny >/dev/null 2>&1; then fail "scen.tiny still shown after delete"; fi

step "images"
head -c 4096 /dev/urandom >"$WORK/disk.img"
run image create --file "$WORK/disk.img" --disk-format qcow2 --container-format bare scen-img >/dev/null
LISTED=$(run image list)
grep -q scen-img <<<"$LISTED" || fail "image list lacks scen-img:
$LISTED"
[ "$(run image show -f value -c status scen-img)" = "active" ] || fail "scen-img not active"

step "server create --wait"
run server create --image cirros --flavor m1.tiny --nic none --wait vm1 >/dev/null
expect_status vm1 ACTIVE
LISTED=$(run server list)
grep -q vm1 <<<"$LISTED" || fail "server list lacks vm1:
$LISTED"
# The Image column: the CLI names its servers' images with one
# `GET /v2/images?id=in:<id>,...` and leaves the column empty when that finds nothing.
LISTED=$(run server list -f json -c Name -c Image)
IMAGE_COL=$(printf '%s' "$LISTED" | python3 -c 'import json,sys; print(*[s["Image"] for s in json.load(sys.stdin) if s["Name"] == "vm1"])' || true)
[ "$IMAGE_COL" = "cirros" ] || fail "server list shows Image '$IMAGE_COL' for vm1, not cirros:
$LISTED"
run server show vm1 >/dev/null

step "pause / unpause";   run server pause vm1;   expect_status vm1 PAUSED;    run server unpause vm1; expect_status vm1 ACTIVE
step "suspend / resume";  run server suspend vm1; expect_status vm1 SUSPENDED; run server resume vm1;  expect_status vm1 ACTIVE
step "stop / start";      run server stop vm1;    expect_status vm1 SHUTOFF;   run server start vm1;   expect_status vm1 ACTIVE
step "reboot";            run server reboot vm1;  expect_status vm1 ACTIVE
step "reboot --hard";     run server reboot --hard vm1; expect_status vm1 ACTIVE
step "shelve / unshelve"; run server shelve vm1;  expect_status vm1 SHELVED_OFFLOADED; run server unshelve vm1; expect_status vm1 ACTIVE

step "rebuild"
run server rebuild --image scen-img --wait vm1 >/dev/null
expect_status vm1 ACTIVE
SCEN_IMG=$(run image show -f value -c id scen-img)
IMG=$(run server show -f json vm1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["image"])' || true)
grep -q "$SCEN_IMG" <<<"$IMG" || fail "vm1 does not show scen-img ($SCEN_IMG) after rebuild: $IMG"
run server stop vm1; expect_status vm1 SHUTOFF
run server rebuild --image cirros vm1 >/dev/null
expect_status vm1 SHUTOFF
IMG=$(run server show -f json vm1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["image"])' || true)
grep -q cirros <<<"$IMG" || fail "vm1 does not show cirros after the second rebuild: $IMG"
run server start vm1; expect_status vm1 ACTIVE

step "resize + confirm"
run server resize --flavor m1.small vm1
expect_status vm1 VERIFY_RESIZE
run server resize confirm vm1
expect_status vm1 ACTIVE
[ "$(openstack server show -f json vm1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["flavor"]["original_name"])' 2>/dev/null || true)" = "m1.small" ] \
    || [ "$(openstack server show -f value -c flavor vm1 | grep -c m1.small)" -ge 1 ] || fail "vm1 is not m1.small after confirm"

step "resize + revert"
run server resize --flavor m1.medium vm1
expect_status vm1 VERIFY_RESIZE
run server resize revert vm1
expect_status vm1 ACTIVE
FLAVOR=$(run server show -f value -c flavor vm1)
grep -q m1.small <<<"$FLAVOR" || fail "vm1 is not back to m1.small after revert: $FLAVOR"

step "migrate + confirm"
run server migrate vm1
expect_status vm1 VERIFY_RESIZE
run server migration confirm vm1
expect_status vm1 ACTIVE

step "server group create / list / show"
run server group create --policy anti-affinity g1 >/dev/null
openstack server group list -f value -c Name | grep -qx g1 || fail "g1 not listed"
GID=$(run server group show -f value -c id g1)
[ "$(run server group show -f value -c policy g1)" = "anti-affinity" ] || fail "g1 policy"

step "server create --hint group="
run server create --image cirros --flavor m1.tiny --nic none --hint group="$GID" --wait vm-g1 >/dev/null
VMG=$(run server show -f value -c id vm-g1)
run server group show -f value -c members g1 | grep -q "$VMG" || fail "vm-g1 is not a member of g1"

step "server group delete"
run server delete --wait vm-g1
run server group delete g1
if openstack server group show g1 >/dev/null 2>&1; then fail "g1 still shown after delete"; fi

step "delete --wait"
run server delete --wait vm1
if openstack server show vm1 >/dev/null 2>&1; then fail "vm1 still shown after delete --wait"; fi

echo "SCENARIO PASSED"
