#!/usr/bin/env bash
# A real QEMU guest driven through the API (issue 14, item 6): the stock `openstack` CLI
# against `stratus serve --driver libvirt --libvirt-uri qemu:///system`.
#
#   ops/guest/run.sh [STRATUS_BINARY]   (default: target/debug/stratus, built here with
#                                        --features libvirt)
#
# Installs and starts libvirt when needed (ops/guest/libvirtd.sh), builds the tiny guest
# (ops/guest/build.sh: a Debian cloud kernel and a busybox initramfs), registers it as
# Glance's AKI/ARI/AMI triple (the machine image names its kernel and ramdisk with the
# kernel_id / ramdisk_id properties, booted by direct kernel boot as Nova's libvirt driver
# does), then: create with a key pair and a config drive -> ACTIVE -> the console shows
# the guest's marker, the config drive's hostname and the key -> stop -> SHUTOFF -> start
# -> ACTIVE -> the guest powers itself off (Magic SysRq `o`, sent to its keyboard by
# libvirt) -> Stratus shows SHUTOFF with no API call but reads -> delete -> libvirt has
# no such domain and its files are gone. The virtualization type is KVM when a probe
# guest boots under KVM here, TCG (type `qemu`) otherwise, so the scenario never skips.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/sbin:/sbin"
STRATUS=${1:-}
bash ops/guest/libvirtd.sh
bash ops/guest/build.sh target/guest
bash ops/cli/run.sh --install-only
VENV=${OSC_VENV:-target/osc-venv}
export PATH="$PWD/$VENV/bin:$PATH"
if [ -z "$STRATUS" ]; then
    cargo build --locked -p stratus --features libvirt --bin stratus
    STRATUS=target/debug/stratus
fi
GUEST="$PWD/target/guest"
WORK=$(mktemp -d)
# QEMU runs as libvirt's unprivileged user: the instance files must be reachable.
chmod 755 "$WORK"
SERVE_PID=""
cleanup() {
    if [ -n "$SERVE_PID" ]; then kill "$SERVE_PID" 2>/dev/null || true; wait "$SERVE_PID" 2>/dev/null || true; fi
    # Nothing of this run may stay defined, whatever happened.
    for d in $(virsh -c qemu:///system list --all --name 2>/dev/null | grep '^instance-' || true); do
        if [ -d "$WORK/data/instances/${d#instance-}" ]; then
            virsh -c qemu:///system destroy "$d" >/dev/null 2>&1 || true
            virsh -c qemu:///system undefine --managed-save --nvram "$d" >/dev/null 2>&1 || true
        fi
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
COMPUTE_PORT=$(free_port); IDENTITY_PORT=$(free_port); IMAGE_PORT=$(free_port); NETWORK_PORT=$(free_port)

fail() {
    echo "GUEST SCENARIO FAILED: $*" >&2
    echo "---- stratus serve log (last 40 lines) ----" >&2
    tail -n 40 "$WORK/serve.log" >&2 || true
    exit 1
}
run() {
    local out
    if ! out=$(openstack "$@" 2>&1); then
        fail "openstack $*
$out"
    fi
    printf '%s\n' "$out"
}
# expect_status SERVER STATUS SECONDS
expect_status() {
    local server=$1 want=$2 secs=$3 got="" i
    for i in $(seq 1 $((secs * 4))); do
        got=$(openstack server show -f value -c status "$server" 2>&1) || fail "server show $server: $got"
        [ "$got" = "$want" ] && { echo "  $server is $want"; return 0; }
        [ "$got" = "ERROR" ] && break
        sleep 0.25
    done
    fail "server $server: expected status $want, got $got
$(openstack server show "$server" 2>&1)"
}
# expect_console SERVER TEXT SECONDS: polls the console output until it shows TEXT.
expect_console() {
    local server=$1 want=$2 secs=$3 out="" i
    for i in $(seq 1 $((secs * 2))); do
        out=$(openstack console log show "$server" 2>&1) || fail "console log show: $out"
        grep -qF -- "$want" <<<"$out" && { echo "  console shows: $want"; return 0; }
        sleep 0.5
    done
    fail "console of $server never showed '$want':
$out"
}
step() { echo "== $*"; }

# KVM when a guest really runs under it here, TCG otherwise.
VIRT_TYPE=qemu
if [ -e /dev/kvm ] && timeout 10 qemu-system-x86_64 -enable-kvm -m 128 -nographic -no-reboot \
    -kernel "$GUEST/vmlinuz" -initrd "$GUEST/initrd.img" \
    -append 'console=ttyS0 panic=-1 rdinit=/bin/nonexistent' 2>/dev/null | grep -q 'Kernel panic'; then
    VIRT_TYPE=kvm
fi
echo "virtualization: $VIRT_TYPE"

STRATUS_ADMIN_PASSWORD=guest-secret RUST_LOG=warn "$STRATUS" serve \
    --data-dir "$WORK/data" \
    --listen "127.0.0.1:$COMPUTE_PORT" \
    --identity-listen "127.0.0.1:$IDENTITY_PORT" \
    --image-listen "127.0.0.1:$IMAGE_PORT" \
    --network-listen "127.0.0.1:$NETWORK_PORT" \
    --driver libvirt --libvirt-uri qemu:///system --libvirt-virt-type "$VIRT_TYPE" \
    >"$WORK/serve.log" 2>&1 &
SERVE_PID=$!
for i in $(seq 1 100); do
    [ -f "$WORK/data/openrc" ] && grep -q "listening" "$WORK/serve.log" && break
    kill -0 "$SERVE_PID" 2>/dev/null || fail "stratus serve exited"
    sleep 0.1
done
[ -f "$WORK/data/openrc" ] || fail "no openrc written"
chmod 755 "$WORK/data"
# shellcheck disable=SC1091
source "$WORK/data/openrc"

step "the guest's images (AKI, ARI, AMI with kernel_id and ramdisk_id)"
KERNEL=$(run image create --disk-format aki --container-format aki --file "$GUEST/vmlinuz" -f value -c id guest-kernel)
RAMDISK=$(run image create --disk-format ari --container-format ari --file "$GUEST/initrd.img" -f value -c id guest-ramdisk)
head -c 1048576 /dev/zero >"$WORK/root.img"
run image create --disk-format ami --container-format ami --file "$WORK/root.img" \
    --property kernel_id="$KERNEL" --property ramdisk_id="$RAMDISK" \
    --property os_command_line='console=ttyS0' guest-machine >/dev/null
run flavor create --ram 256 --disk 1 --vcpus 1 guest.tiny >/dev/null
echo "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f guest@stratus" >"$WORK/key.pub"
run keypair create --public-key "$WORK/key.pub" guest-key >/dev/null

step "create -> ACTIVE (config drive, key pair)"
T0=$(date +%s.%N)
run server create --flavor guest.tiny --image guest-machine --key-name guest-key \
    --config-drive True g1 >/dev/null
expect_status g1 ACTIVE 120
echo "  create -> ACTIVE in $(python3 -c "import time; print(round(time.time() - $T0, 2))") s"
ID=$(run server show -f value -c id g1)
DOMAIN="instance-$ID"
expect_console g1 "STRATUS-GUEST-READY" 120
expect_console g1 "hostname=g1" 5
expect_console g1 "key=ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f" 5
[ "$(virsh -c qemu:///system domstate "$DOMAIN")" = "running" ] || fail "libvirt: $DOMAIN not running"

step "stop -> SHUTOFF, start -> ACTIVE"
run server stop g1 >/dev/null
expect_status g1 SHUTOFF 120
[ "$(virsh -c qemu:///system domstate "$DOMAIN")" = "shut off" ] || fail "libvirt: $DOMAIN not shut off"
run server start g1 >/dev/null
expect_status g1 ACTIVE 120
# The serial log starts afresh with each boot (before the start is answered).
expect_console g1 "STRATUS-GUEST-READY" 120

step "the guest powers itself off -> SHUTOFF from libvirt's event, no API call"
virsh -c qemu:///system send-key "$DOMAIN" KEY_LEFTALT KEY_SYSRQ KEY_O >/dev/null
expect_status g1 SHUTOFF 60
POWER=$(run server show -f value -c OS-EXT-STS:power_state g1)
case "$POWER" in 4|Shutdown) ;; *) fail "power state after the guest's power-off: $POWER" ;; esac
ACTIONS=$(run server event list -f value -c Action g1)
[ "$(head -n1 <<<"$ACTIONS")" = "stop" ] || fail "the newest instance action is not the sync's stop:
$ACTIONS"

step "delete -> the domain and its files are gone"
run server delete --wait g1 >/dev/null
if virsh -c qemu:///system dominfo "$DOMAIN" >/dev/null 2>&1; then fail "libvirt still has $DOMAIN"; fi
[ ! -e "$WORK/data/instances/$ID" ] || fail "instance files left: $(ls -la "$WORK/data/instances/$ID")"
echo "GUEST SCENARIO PASSED"
