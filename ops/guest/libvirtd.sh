#!/usr/bin/env bash
# Makes qemu:///system usable here: installs QEMU and libvirt's daemon with apt when
# missing, and starts virtlogd and libvirtd when they are not running (these machines
# have no systemd). Idempotent; prints the QEMU version libvirt reports.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
if ! command -v libvirtd >/dev/null || ! command -v qemu-system-x86_64 >/dev/null \
    || ! command -v virsh >/dev/null; then
    $SUDO apt-get update
    $SUDO apt-get install -y --no-install-recommends qemu-system-x86 libvirt-daemon-system \
        libvirt-clients
fi
# /dev/kvm as Debian's udev rules leave it (group kvm, 0660). These machines have no
# udev, and a root-only /dev/kvm makes libvirt find its QEMU capabilities cache stale at
# every domain start (the probe, run as root, saw KVM; QEMU's user cannot open it), so
# each start re-probes QEMU for ~50 s. Guests still run under TCG (domain type `qemu`).
if [ -e /dev/kvm ] && getent group kvm >/dev/null \
    && [ "$(stat -c '%G %a' /dev/kvm)" != "kvm 660" ]; then
    $SUDO chgrp kvm /dev/kvm
    $SUDO chmod 660 /dev/kvm
fi
if ! virsh -c qemu:///system version >/dev/null 2>&1; then
    pgrep -x virtlogd >/dev/null || $SUDO virtlogd -d
    pgrep -x libvirtd >/dev/null || $SUDO libvirtd -d
    for _ in $(seq 1 50); do
        virsh -c qemu:///system version >/dev/null 2>&1 && break
        sleep 0.2
    done
fi
virsh -c qemu:///system version | grep -i 'hypervisor'
