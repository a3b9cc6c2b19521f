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
COMPUTE_PORT=$(free_port); IDENTITY_PORT=$(free_port); IMAGE_PORT=$(free_port); NETWORK_PORT=$(free_port)

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
    --network-listen "127.0.0.1:$NETWORK_PORT" \
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
# Raw bytes, registered as raw: uploads are checked against their disk_format (a
# random file claiming qcow2 is refused, as by Glance).
head -c 4096 /dev/urandom >"$WORK/disk.img"
run image create --file "$WORK/disk.img" --disk-format raw --container-format bare scen-img >/dev/null
LISTED=$(run image list)
grep -q scen-img <<<"$LISTED" || fail "image list lacks scen-img:
$LISTED"
[ "$(run image show -f value -c status scen-img)" = "active" ] || fail "scen-img not active"

step "image import (stage, glance-direct)"
METHODS=$(run image import info -f json)
grep -q glance-direct <<<"$METHODS" || fail "image import info: $METHODS"
# A queued image without data: the CLI uploads its stdin when that is not a terminal
# (and fails when stdin is closed), so it runs on a pseudo-terminal here.
python3 -c 'import os, pty, sys; sys.exit(os.waitstatus_to_exitcode(pty.spawn(sys.argv[1:])))' \
    openstack image create --disk-format raw --container-format bare scen-imp </dev/null >/dev/null 2>&1 \
    || fail "image create scen-imp (no data)"
[ "$(run image show -f value -c status scen-imp)" = "queued" ] || fail "scen-imp not queued"
run image stage --file "$WORK/disk.img" scen-imp >/dev/null
[ "$(run image show -f value -c status scen-imp)" = "uploading" ] || fail "scen-imp not uploading after stage"
run image import --method glance-direct scen-imp >/dev/null
for i in $(seq 1 100); do
    STATUS=$(run image show -f value -c status scen-imp)
    [ "$STATUS" = active ] && break
    sleep 0.1
done
[ "$STATUS" = active ] || fail "scen-imp after import: $STATUS"
[ "$(run image show -f value -c size scen-imp)" = 4096 ] || fail "scen-imp size"
run image delete scen-imp

step "image tags, hidden, sharing"
run image set --tag blue --tag green scen-img >/dev/null
TAGS=$(run image show -f value -c tags scen-img)
grep -q blue <<<"$TAGS" && grep -q green <<<"$TAGS" || fail "scen-img tags: $TAGS"
run image unset --tag green scen-img >/dev/null
TAGS=$(run image show -f value -c tags scen-img)
grep -q green <<<"$TAGS" && fail "tag green still set: $TAGS"
LISTED=$(run image list --tag blue)
grep -q scen-img <<<"$LISTED" || fail "image list --tag blue lacks scen-img"
run image set --hidden scen-img >/dev/null
LISTED=$(run image list)
grep -q scen-img <<<"$LISTED" && fail "hidden scen-img still listed"
LISTED=$(run image list --hidden)
grep -q scen-img <<<"$LISTED" || fail "image list --hidden lacks scen-img"
run image set --unhidden --shared scen-img >/dev/null
IMG_ID=$(run image show -f value -c id scen-img)
run project create scen-share >/dev/null
run user create --password share-secret --project scen-share scen-sharer >/dev/null
run role add --project scen-share --user scen-sharer member
run image add project scen-img scen-share >/dev/null
MEMBERS=$(run image member list scen-img)
grep -q pending <<<"$MEMBERS" || fail "image member list: $MEMBERS"
as_member() { OS_PROJECT_NAME=scen-share OS_USERNAME=scen-sharer OS_PASSWORD=share-secret run "$@"; }
LISTED=$(as_member image list)
grep -q scen-img <<<"$LISTED" && fail "a pending member lists scen-img"
as_member image set --accept "$IMG_ID" >/dev/null
LISTED=$(as_member image list)
grep -q scen-img <<<"$LISTED" || fail "the member does not list the accepted scen-img"
MEMBERS=$(run image member list scen-img)
grep -q accepted <<<"$MEMBERS" || fail "image member list after accept: $MEMBERS"
run image remove project scen-img scen-share
if OS_PROJECT_NAME=scen-share OS_USERNAME=scen-sharer OS_PASSWORD=share-secret \
    openstack image show "$IMG_ID" >/dev/null 2>&1; then
    fail "scen-img still visible to scen-share after remove project"
fi

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
step "rescue / unrescue"; run server rescue vm1;  expect_status vm1 RESCUE;    run server unrescue vm1; expect_status vm1 ACTIVE
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

step "metadata / tags / console log / diagnostics"
run server set --property role=web --property tier=front vm1
props() { run server show -f json vm1 | python3 -c 'import json,sys; p=json.load(sys.stdin)["properties"]; print(p if isinstance(p, str) else ",".join(f"{k}={v}" for k, v in sorted(p.items())))'; }
PROPS=$(props)
grep -q "role=.\?web" <<<"$PROPS" && grep -q "tier=.\?front" <<<"$PROPS" || fail "vm1 properties after set: $PROPS"
run server unset --property tier vm1
PROPS=$(props)
grep -q tier <<<"$PROPS" && fail "vm1 still has tier after unset: $PROPS"
run --os-compute-api-version 2.26 server set --tag prod --tag blue vm1
LISTED=$(run --os-compute-api-version 2.26 server list --tag prod -f value -c Name)
grep -qx vm1 <<<"$LISTED" || fail "server list --tag prod lacks vm1: $LISTED"
LISTED=$(run --os-compute-api-version 2.26 server list --not-tag blue -f value -c Name)
grep -qx vm1 <<<"$LISTED" && fail "server list --not-tag blue shows vm1: $LISTED"
run --os-compute-api-version 2.26 server unset --tag blue vm1
TAGS=$(run --os-compute-api-version 2.26 server show -f json vm1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["tags"])')
grep -q prod <<<"$TAGS" && ! grep -q blue <<<"$TAGS" || fail "vm1 tags after unset: $TAGS"
CONSOLE=$(run console log show --lines 1 vm1)
grep -q "login:" <<<"$CONSOLE" || fail "console log show: $CONSOLE"
DIAG=$(run --os-compute-api-version 2.48 server show --diagnostics vm1)
grep -q running <<<"$DIAG" || fail "server show --diagnostics: $DIAG"

step "server set --password"
run server set --password 'n3w-Secret' vm1
expect_status vm1 ACTIVE

step "multiple create with tags, user data and config drive"
printf '#!/bin/sh\necho hello\n' > "$WORK/user-data.sh"
run --os-compute-api-version 2.52 server create --image cirros --flavor m1.tiny --nic none \
    --min 2 --max 2 --tag fleet --user-data "$WORK/user-data.sh" --use-config-drive --wait multi >/dev/null
LISTED=$(run --os-compute-api-version 2.52 server list --tag fleet -f value -c Name | sort | tr '\n' ' ')
[ "$LISTED" = "multi-1 multi-2 " ] || fail "server list --tag fleet after --min 2 --max 2: $LISTED"
SHOWN=$(run --os-compute-api-version 2.57 server show -f json multi-1)
python3 -c 'import json,sys; s=json.loads(sys.argv[1]); assert s["config_drive"] == "True", s; assert "fleet" in s["tags"], s' "$SHOWN" \
    || fail "multi-1 lacks its config drive or tag: $SHOWN"
run server delete --wait multi-1 multi-2

step "server image create / server backup create"
run server image create --name vm1-snap --wait vm1 >/dev/null
[ "$(run image show -f value -c status vm1-snap)" = "active" ] || fail "vm1-snap not active"
SNAP_PROPS=$(run image show -f json -c properties vm1-snap)
grep -q '"image_type": "snapshot"' <<<"$SNAP_PROPS" || fail "vm1-snap properties: $SNAP_PROPS"
expect_status vm1 ACTIVE
run server backup create --name vm1-bak-1 --type daily --rotate 1 --wait vm1 >/dev/null
expect_status vm1 ACTIVE
run server backup create --name vm1-bak-2 --type daily --rotate 1 --wait vm1 >/dev/null
expect_status vm1 ACTIVE
LISTED=$(run image list -f value -c Name)
grep -qx vm1-bak-2 <<<"$LISTED" || fail "image list lacks vm1-bak-2: $LISTED"
grep -qx vm1-bak-1 <<<"$LISTED" && fail "the rotation kept vm1-bak-1: $LISTED"
run image delete vm1-snap vm1-bak-2

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

step "server event list / show"
# The request id of a lock, read from the CLI's own debug log of the response
# (x-openstack-request-id of its last request, the POST action).
OUT=$(openstack --debug server lock vm1 2>&1) || fail "server lock: $OUT"
LOCK_RID=$(grep -io 'x-openstack-request-id: req-[0-9a-f-]*' <<<"$OUT" | tail -n 1 | awk '{print $2}')
[ -n "$LOCK_RID" ] || fail "no request id in the lock's debug output"
run server unlock vm1
EVENTS=$(run server event list -f json vm1)
python3 -c '
import json,sys
rows=json.loads(sys.argv[1]); rid=sys.argv[2]
acts=[r["Action"] for r in rows]
assert acts[:2]==["unlock","lock"], acts
assert acts[-1]=="create", acts
for a in ["pause","unpause","suspend","resume","stop","start","reboot","shelve","unshelve","rebuild","resize","confirmResize","revertResize","migrate"]:
    assert a in acts, (a, acts)
assert rows[1]["Request ID"]==rid, (rows[1], rid)
' "$EVENTS" "$LOCK_RID" || fail "server event list vm1:
$EVENTS"
SHOWN=$(run server event show -f json vm1 "$LOCK_RID")
python3 -c '
import json,sys
a=json.loads(sys.argv[1])
assert a["action"]=="lock" and a["request_id"]==sys.argv[2], a
' "$SHOWN" "$LOCK_RID" || fail "server event show vm1 $LOCK_RID: $SHOWN"
PAUSE_RID=$(python3 -c '
import json,sys
print([r["Request ID"] for r in json.loads(sys.argv[1]) if r["Action"]=="pause"][0])' "$EVENTS")
SHOWN=$(run server event show -f json vm1 "$PAUSE_RID")
python3 -c '
import json,sys
a=json.loads(sys.argv[1])
assert a["action"]=="pause" and a["request_id"]==sys.argv[2], a
ev=a["events"]
ev=ev if isinstance(ev,list) else json.loads(ev)
assert [e["event"] for e in ev]==["compute_pause_instance"], ev
assert ev[0]["result"]=="Success", ev
' "$SHOWN" "$PAUSE_RID" || fail "server event show vm1 $PAUSE_RID: $SHOWN"
echo "  lock $LOCK_RID and pause $PAUSE_RID listed and shown"

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

step "compute service list / set --disable / --enable"
SERVICES=$(run compute service list -f value -c Binary -c Host -c Status -c State)
grep -q "nova-compute host1 enabled up" <<<"$SERVICES" || fail "compute service list lacks host1:
$SERVICES"
grep -q "nova-compute host2 enabled up" <<<"$SERVICES" || fail "compute service list lacks host2:
$SERVICES"
run compute service set --disable --disable-reason "scenario maintenance" host1 nova-compute
LONG=$(run compute service list --long --host host1 -f value -c Status -c "Disabled Reason")
grep -q "disabled scenario maintenance" <<<"$LONG" || fail "host1 not disabled with its reason: $LONG"
# A disabled host gets no builds: vm2 lands on host2.
run server create --image cirros --flavor m1.tiny --nic none --wait vm2 >/dev/null
VM2_HOST=$(run server show -f value -c OS-EXT-SRV-ATTR:host vm2)
[ "$VM2_HOST" = "host2" ] || fail "vm2 built on $VM2_HOST although host1 is disabled"
run compute service set --enable host1 nova-compute
STATUS=$(run compute service list --host host1 -f value -c Status)
[ "$STATUS" = "enabled" ] || fail "host1 not enabled again: $STATUS"

step "hypervisor list / show / stats show"
HYPS=$(run hypervisor list -f value -c "Hypervisor Hostname" -c State)
grep -q "host1 up" <<<"$HYPS" || fail "hypervisor list lacks host1: $HYPS"
# `hypervisor show` also lists the host's aggregates (GET /os-aggregates).
HYP=$(run hypervisor show -f json host2)
python3 -c 'import json,sys; h=json.loads(sys.argv[1]); assert h["hypervisor_hostname"]=="host2" and h["status"]=="enabled", h' "$HYP" \
    || fail "hypervisor show host2: $HYP"
# (the CLI prints a deprecation notice before the JSON)
STATS=$(run hypervisor stats show -f json)
python3 -c 'import json,sys; t=sys.argv[1]; s=json.loads(t[t.index("{"):]); assert s["count"]==2 and s["running_vms"]>=1, s' "$STATS" \
    || fail "hypervisor stats show: $STATS"
run server delete --wait vm2

step "quota show / set, limits show, over quota"
QUOTA=$(run quota show --compute -f json)
python3 -c 'import json,sys; q={r["Resource"]:r["Limit"] for r in json.load(sys.stdin)}; assert q["instances"]==10 and q["cores"]==20, q' <<<"$QUOTA" \
    || fail "quota show: not Nova's defaults: $QUOTA"
DEFAULTS=$(run quota show --compute --default -f json)
grep -q '"key-pairs"\|"key_pairs"' <<<"$DEFAULTS" || fail "quota show --default: no key_pairs: $DEFAULTS"
run quota set --instances 1 admin
QUOTA=$(run quota show --compute -f json admin)
python3 -c 'import json,sys; q={r["Resource"]:r["Limit"] for r in json.load(sys.stdin)}; assert q["instances"]==1, q' <<<"$QUOTA" \
    || fail "quota set --instances 1 not shown: $QUOTA"
LIMITS=$(run limits show --absolute -f json)
python3 -c '
import json,sys
l={r["Name"]:r["Value"] for r in json.load(sys.stdin)}
assert l["max_total_instances"]==1 and l["total_instances_used"]==1 and l["total_ram_used"]==2048, l' <<<"$LIMITS" \
    || fail "limits show --absolute: $LIMITS"
if OUT=$(openstack server create --flavor m1.tiny --image cirros --nic none over-quota 2>&1); then
    fail "a create over quota was accepted: $OUT"
fi
grep -q "Quota exceeded for instances: Requested 1, but already used 1 of 1 instances" <<<"$OUT" \
    || fail "over-quota create did not fail with Nova's quota message: $OUT"
echo "  refused: Quota exceeded for instances"
USAGE=$(run quota show --compute --usage -f json admin)
grep -q '"In Use"' <<<"$USAGE" || fail "quota show --usage: no usage column: $USAGE"
run quota set --instances 10 admin

step "delete --wait"
run server delete --wait vm1
if openstack server show vm1 >/dev/null 2>&1; then fail "vm1 still shown after delete --wait"; fi

step "keypairs"
# Generated: the CLI prints the private key, once. (python-openstackclient makes the
# key itself at every microversion and imports its public half, as Nova 2.92 requires;
# the server-side generation of older microversions is tested over HTTP in
# services/api/tests/keypairs.rs.)
K1=$(run keypair create k1)
grep -q "BEGIN .*PRIVATE KEY" <<<"$K1" || fail "keypair create k1 printed no private key:
$K1"
# Imported: a key made by ssh-keygen when there is one, else k1's public key.
if command -v ssh-keygen >/dev/null; then
    ssh-keygen -q -t ed25519 -N '' -C scenario -f "$WORK/k2" >/dev/null
    WANT_FP=$(ssh-keygen -l -E md5 -f "$WORK/k2.pub" | awk '{print $2}' | sed 's/^MD5://')
else
    run keypair show --public-key k1 >"$WORK/k2.pub"
    WANT_FP=$(run keypair show -f value -c fingerprint k1)
fi
run keypair create --public-key "$WORK/k2.pub" k2 >/dev/null
LISTED=$(run keypair list)
grep -q k1 <<<"$LISTED" && grep -q k2 <<<"$LISTED" || fail "keypair list lacks k1 or k2:
$LISTED"
FP=$(run keypair show -f value -c fingerprint k2)
[ "$FP" = "$WANT_FP" ] || fail "k2's fingerprint is $FP, ssh-keygen says $WANT_FP"
if OUT=$(openstack keypair create --public-key "$WORK/k2.pub" k2 2>&1); then fail "a second k2 was created"; fi
grep -q "already exists" <<<"$OUT" || fail "duplicate k2: unexpected error: $OUT"
run server create --image cirros --flavor m1.tiny --nic none --key-name k1 --wait vm-key >/dev/null
expect_status vm-key ACTIVE
[ "$(run server show -f value -c key_name vm-key)" = "k1" ] || fail "vm-key does not show key_name k1"
if OUT=$(openstack server create --image cirros --flavor m1.tiny --nic none --key-name nokey vm-nokey 2>&1); then
    fail "a server was created with an unknown key pair"
fi
grep -q "Invalid key_name provided" <<<"$OUT" || fail "unknown key_name: unexpected error: $OUT"
run server delete --wait vm-key
run keypair delete k1 k2
LISTED=$(run keypair list)
if grep -q -w "k1\|k2" <<<"$LISTED"; then fail "keypairs still listed after delete:
$LISTED"; fi

step "aggregates and availability zones"
run aggregate create --zone scen-az scen-agg >/dev/null
run aggregate add host scen-agg host2 >/dev/null
run aggregate set --property scen-key=scen-value scen-agg
SHOWN=$(run aggregate show -f json scen-agg)
python3 -c '
import json, sys
a = json.loads(sys.argv[1])
assert a["availability_zone"] == "scen-az", a
assert a["hosts"] == ["host2"], a
props = a["properties"]
if isinstance(props, str):
    assert "scen-key" in props and "scen-value" in props, a
else:
    assert props.get("scen-key") == "scen-value", a
' "$SHOWN" || fail "aggregate show scen-agg: $SHOWN"
LISTED=$(run aggregate list)
grep -q scen-agg <<<"$LISTED" || fail "aggregate list lacks scen-agg:
$LISTED"
ZONES=$(run availability zone list -f value -c "Zone Name")
grep -qx scen-az <<<"$ZONES" && grep -qx nova <<<"$ZONES" || fail "availability zone list: $ZONES"
LONG=$(run availability zone list --long -f value)
grep -q "scen-az.*host2" <<<"$LONG" && grep -q "nova.*host1" <<<"$LONG" \
    || fail "availability zone list --long does not place host2 in scen-az and host1 in nova:
$LONG"
run server create --image cirros --flavor m1.tiny --nic none --availability-zone scen-az --wait vm-az >/dev/null
expect_status vm-az ACTIVE
AZ=$(run server show -f value -c OS-EXT-AZ:availability_zone vm-az)
[ "$AZ" = "scen-az" ] || fail "vm-az is in zone '$AZ', not scen-az"
ON=$(run server show -f value -c OS-EXT-SRV-ATTR:host vm-az)
[ "$ON" = "host2" ] || fail "vm-az landed on '$ON', not on host2 (scen-az's only host)"
if OUT=$(openstack server create --image cirros --flavor m1.tiny --nic none --availability-zone nowhere vm-nowhere 2>&1); then
    fail "a server in an unknown zone was accepted: $OUT"
fi
grep -q "The requested availability zone is not available" <<<"$OUT" || fail "unknown zone: $OUT"
run server delete --wait vm-az
run aggregate remove host scen-agg host2 >/dev/null
run aggregate delete scen-agg
LISTED=$(run aggregate list)
if grep -q scen-agg <<<"$LISTED"; then fail "scen-agg still listed after delete:
$LISTED"; fi

step "compute service delete leaves the host's aggregates"
run aggregate create scen-gone >/dev/null
run aggregate add host scen-gone host2 >/dev/null
ID=$(run compute service list --host host2 -f value -c ID)
# The claim of vm-az is given back by a reactor after the server is gone: until then
# the delete is refused as "hosting instances".
for i in $(seq 1 50); do
    OUT=$(openstack compute service delete "$ID" 2>&1) && break
    grep -q "hosting instances" <<<"$OUT" || fail "compute service delete $ID: $OUT"
    [ "$i" -lt 50 ] || fail "compute service delete $ID still refused: $OUT"
    sleep 0.2
done
SERVICES=$(run compute service list -f value -c Host)
if grep -qx host2 <<<"$SERVICES"; then fail "host2 still listed after compute service delete:
$SERVICES"; fi
HOSTS=$(run aggregate show -f value -c hosts scen-gone)
if grep -q host2 <<<"$HOSTS"; then fail "scen-gone still lists host2 after its service was deleted: $HOSTS"; fi
run aggregate delete scen-gone

step "usage list / usage show (os-simple-tenant-usage)"
END=$(date -u -d tomorrow +%Y-%m-%d)
PROJECT_ID=$(run token issue -f value -c project_id)
LISTED=$(run usage list --start 2000-01-01 --end "$END" -f json)
# The CLI asks `detailed=True`, which Nova (and Stratus) read as not detailed (only `1`
# is): no server count in the list, totals only.
python3 - "$OS_PROJECT_NAME" "$PROJECT_ID" "$LISTED" <<'PY' || fail "usage list: no usage for $OS_PROJECT_NAME:
$LISTED"
import json, sys
rows = [r for r in json.loads(sys.argv[3]) if r["Project"] in sys.argv[1:3]]
assert len(rows) == 1, rows
r = rows[0]
assert float(r["CPU Hours"]) > 0 and float(r["RAM MB-Hours"]) > 0, r
PY
SHOWN=$(run usage show --project "$OS_PROJECT_NAME" --start 2000-01-01 --end "$END" -f json)
python3 - "$SHOWN" <<'PY' || fail "usage show: $SHOWN"
import json, sys
r = json.loads(sys.argv[1])
servers = r["Servers"]  # the server_usages entries (a count in table output)
assert any(u["name"] == "vm1" for u in servers), servers
assert float(r["CPU Hours"]) > 0 and float(r["Disk GB-Hours"]) > 0, r
PY
# A window before anything ran: no usage.
EMPTY=$(run usage list --start 2000-01-01 --end 2000-01-02 -f json)
[ "$EMPTY" = "[]" ] || fail "usage list of 2000-01-01: $EMPTY"

step "identity: projects, users, roles, assignments, application credentials, revocation"
run project create --description "scenario project" scen-proj >/dev/null
run user create --password scen-pw-1 --project scen-proj --email scen@example.com scen-user >/dev/null
EMAIL=$(run user show -f value -c email scen-user)
[ "$EMAIL" = scen@example.com ] || fail "user create --email: $EMAIL"
run role create scen-role >/dev/null
run role add --project scen-proj --user scen-user member >/dev/null
run role add --project scen-proj --user scen-user scen-role >/dev/null
ASSIGNED=$(run role assignment list --user scen-user --project scen-proj --names -f json)
python3 - "$ASSIGNED" <<'PY' || fail "role assignment list: $ASSIGNED"
import json, sys
rows = json.loads(sys.argv[1])
assert sorted(r["Role"] for r in rows) == ["member", "scen-role"], rows
assert all(r["User"] == "scen-user@Default" and r["Project"] == "scen-proj@Default" for r in rows), rows
PY
PROJECT_USERS=$(run user list --project scen-proj -f value -c Name)
grep -qx scen-user <<<"$PROJECT_USERS" || fail "user list --project: $PROJECT_USERS"
run project set --name scen-proj2 --description changed scen-proj >/dev/null
DESC=$(run project show -f value -c description scen-proj2)
[ "$DESC" = changed ] || fail "project set: description $DESC"
run user set --name scen-user2 --email scen2@example.com scen-user >/dev/null
EMAIL=$(run user show -f value -c email scen-user2)
[ "$EMAIL" = scen2@example.com ] || fail "user set --email: $EMAIL"
# The user's own CLI session: an application credential with one of its roles.
as_user() {
    OS_USERNAME=scen-user2 OS_PASSWORD=scen-pw-1 OS_PROJECT_NAME=scen-proj2 run "$@"
}
CRED=$(as_user application credential create --role member --description "scenario CI" --expiration 2099-01-01T00:00:00 scen-cred -f json)
read -r CRED_ID CRED_SECRET < <(python3 -c 'import json,sys; c=json.loads(sys.argv[1]); print(c["ID"], c["Secret"])' "$CRED")
LISTED=$(as_user application credential list -f value -c Name)
grep -qx scen-cred <<<"$LISTED" || fail "application credential list: $LISTED"
SHOWN_ROLES=$(as_user application credential show -f value -c roles scen-cred)
grep -q member <<<"$SHOWN_ROLES" || fail "application credential show: roles $SHOWN_ROLES"
# as_app_cred CMD...: runs an openstack command authenticated by the credential alone.
as_app_cred() {
    env -u OS_USERNAME -u OS_PASSWORD -u OS_PROJECT_NAME -u OS_USER_DOMAIN_NAME \
        -u OS_PROJECT_DOMAIN_NAME OS_AUTH_TYPE=v3applicationcredential \
        OS_APPLICATION_CREDENTIAL_ID="$CRED_ID" OS_APPLICATION_CREDENTIAL_SECRET="$CRED_SECRET" \
        openstack "$@"
}
out=$(as_app_cred server list 2>&1) || fail "server list with an application credential: $out"
out=$(as_app_cred token issue -f value -c project_id 2>&1) || fail "token issue with an application credential: $out"
# Revocation: a token of the user stops working at the compute API once revoked.
USER_TOKEN=$(as_user token issue -f value -c id)
COMPUTE="http://127.0.0.1:$COMPUTE_PORT/v2.1"
# code TOKEN: the compute API's status for GET /servers with TOKEN (python: no curl needed).
code() {
    python3 - "$COMPUTE/servers" "$1" <<'PY'
import sys, urllib.error, urllib.request
req = urllib.request.Request(sys.argv[1], headers={"X-Auth-Token": sys.argv[2]})
try:
    print(urllib.request.urlopen(req).status)
except urllib.error.HTTPError as e:
    print(e.code)
PY
}
[ "$(code "$USER_TOKEN")" = 200 ] || fail "the user's token before revocation: $(code "$USER_TOKEN")"
run token revoke "$USER_TOKEN" >/dev/null
[ "$(code "$USER_TOKEN")" = 401 ] || fail "a revoked token still works at the compute API"
as_user application credential delete scen-cred >/dev/null
if out=$(as_app_cred server list 2>&1); then fail "a deleted application credential still authenticates: $out"; fi

step "application credential access rules"
# A credential limited to listing servers: that call works, any other is refused.
RULES='[{"service": "compute", "method": "GET", "path": "/v2.1/servers/detail"}]'
CRED=$(as_user application credential create --role member --access-rules "$RULES" scen-ruled -f json)
read -r CRED_ID CRED_SECRET < <(python3 -c 'import json,sys; c=json.loads(sys.argv[1]); print(c["ID"], c["Secret"])' "$CRED")
out=$(as_app_cred server list --no-name-lookup 2>&1) || fail "server list within the access rules: $out"
if out=$(as_app_cred flavor list 2>&1); then fail "flavor list outside the access rules worked: $out"; fi
RULE_ID=$(as_user access rule list -f value -c ID)
[ -n "$RULE_ID" ] || fail "access rule list is empty"
SHOWN=$(as_user access rule show -f value -c path "$RULE_ID")
[ "$SHOWN" = /v2.1/servers/detail ] || fail "access rule show: path $SHOWN"
# In use by a credential: not deletable; free once the credential is gone.
if out=$(OS_USERNAME=scen-user2 OS_PASSWORD=scen-pw-1 OS_PROJECT_NAME=scen-proj2 \
    openstack access rule delete "$RULE_ID" 2>&1); then fail "an access rule in use was deleted"; fi
as_user application credential delete scen-ruled >/dev/null
as_user access rule delete "$RULE_ID" >/dev/null
LISTED=$(as_user access rule list -f value -c ID)
[ -z "$LISTED" ] || fail "access rule list after delete: $LISTED"

step "user password set"
as_user user password set --original-password scen-pw-1 --password scen-pw-2 >/dev/null
if OS_USERNAME=scen-user2 OS_PASSWORD=scen-pw-1 OS_PROJECT_NAME=scen-proj2 \
    openstack token issue >/dev/null 2>&1; then fail "the old password still authenticates"; fi
OS_USERNAME=scen-user2 OS_PASSWORD=scen-pw-2 OS_PROJECT_NAME=scen-proj2 run token issue -f value -c id >/dev/null
run role remove --project scen-proj2 --user scen-user2 scen-role >/dev/null
run role delete scen-role >/dev/null
run user delete scen-user2 >/dev/null
run project delete scen-proj2 >/dev/null
PROJECTS=$(run project list -f value -c Name)
if grep -qx scen-proj2 <<<"$PROJECTS"; then fail "scen-proj2 listed after delete: $PROJECTS"; fi
# Names are free again.
run project create scen-proj2 >/dev/null
run project delete scen-proj2 >/dev/null

step "networks, subnets, ports (Neutron subset)"
LISTED=$(run network list -f value -c Name)
grep -qx private <<<"$LISTED" && grep -qx public <<<"$LISTED" || fail "network list lacks the default networks: $LISTED"
run network create scen-net >/dev/null
[ "$(run network show -f value -c status scen-net)" = ACTIVE ] || fail "scen-net not ACTIVE"
run subnet create --network scen-net --subnet-range 192.168.50.0/24 scen-subnet >/dev/null
[ "$(run subnet show -f value -c gateway_ip scen-subnet)" = 192.168.50.1 ] || fail "scen-subnet gateway"
run port create --network scen-net --fixed-ip subnet=scen-subnet,ip-address=192.168.50.20 scen-port >/dev/null
PORTS=$(run port list --network scen-net -f value -c Name -c "Fixed IP Addresses")
grep -q "192.168.50.20" <<<"$PORTS" || fail "port list lacks scen-port's address: $PORTS"
if OUT=$(openstack port create --network scen-net --fixed-ip subnet=scen-subnet,ip-address=192.168.50.20 dup 2>&1); then
    fail "an address was given twice"
fi
grep -q "already allocated" <<<"$OUT" || fail "duplicate address refusal: $OUT"

step "security groups"
run security group create scen-sg >/dev/null
run security group rule create --protocol tcp --dst-port 22 --ingress scen-sg >/dev/null
RULES=$(run security group rule list scen-sg -f value -c "Port Range")
grep -q "22:22" <<<"$RULES" || fail "security group rule list: $RULES"

step "routers and floating IPs"
run router create scen-router >/dev/null
run router set --external-gateway public scen-router
run router add subnet scen-router scen-subnet
GW=$(run router show -f json -c external_gateway_info scen-router)
grep -q "172.24.4." <<<"$GW" || fail "router gateway: $GW"

step "servers on networks"
run server create --image cirros --flavor m1.tiny --network scen-net --security-group scen-sg --wait vm-net >/dev/null
ADDRS=$(run server show -f value -c addresses vm-net)
grep -q "scen-net" <<<"$ADDRS" && grep -q "192.168.50." <<<"$ADDRS" || fail "vm-net addresses: $ADDRS"
SGS=$(run server show -f value -c security_groups vm-net)
grep -q "scen-sg" <<<"$SGS" || fail "vm-net security groups: $SGS"
run server add security group vm-net default
run server remove security group vm-net scen-sg
SGS=$(run server show -f value -c security_groups vm-net)
grep -q "default" <<<"$SGS" && ! grep -q "scen-sg" <<<"$SGS" || fail "vm-net security groups after add/remove: $SGS"
run server create --image cirros --flavor m1.tiny --port scen-port --wait vm-port >/dev/null
ADDRS=$(run server show -f value -c addresses vm-port)
grep -q "192.168.50.20" <<<"$ADDRS" || fail "vm-port addresses: $ADDRS"
FIP=$(run floating ip create public -f value -c floating_ip_address)
run server add floating ip vm-net "$FIP"
ADDRS=$(run server show -f value -c addresses vm-net)
grep -q "$FIP" <<<"$ADDRS" || fail "vm-net lacks its floating IP $FIP: $ADDRS"
run server remove floating ip vm-net "$FIP"
ADDRS=$(run server show -f value -c addresses vm-net)
grep -q "$FIP" <<<"$ADDRS" && fail "vm-net still shows $FIP: $ADDRS"
run floating ip delete "$FIP"
run port create --network private scen-extra >/dev/null
run server add port vm-net scen-extra
ADDRS=$(run server show -f value -c addresses vm-net)
grep -q "private" <<<"$ADDRS" || fail "vm-net lacks the added port: $ADDRS"
run server remove port vm-net scen-extra
run server delete --wait vm-net vm-port
# The user's port survives its server, unbound; the ports Nova made are gone.
[ "$(run port show -f value -c device_id scen-port)" = "" ] || fail "scen-port still bound"
run port delete scen-port scen-extra
run router remove subnet scen-router scen-subnet
run router delete scen-router
run subnet delete scen-subnet
run network delete scen-net
if openstack network show scen-net >/dev/null 2>&1; then fail "scen-net still shown after delete"; fi
run security group delete scen-sg
# Without --nic: the project's only network, here the shared `private` one.
run server create --image cirros --flavor m1.tiny --wait vm-default >/dev/null
ADDRS=$(run server show -f value -c addresses vm-default)
grep -q "private" <<<"$ADDRS" || fail "a server without --nic is not on the private network: $ADDRS"
run server delete --wait vm-default

echo "SCENARIO PASSED"
