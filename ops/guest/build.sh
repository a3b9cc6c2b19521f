#!/usr/bin/env bash
# Builds the tiny test guest from Debian packages: a cloud kernel (direct kernel boot)
# and a busybox initramfs whose init loads the disk/cdrom/ISO 9660 modules, mounts the
# config drive (label config-2), prints its hostname, its first public key and a marker
# line to the serial console, then waits. It powers off at the ACPI power button
# (libvirt's shutdown, a clean stop), and Magic SysRq is enabled, so `o` (from the host:
# libvirt's send-key Alt+SysRq+O) makes the guest power itself off.
#
#   ops/guest/build.sh [OUT_DIR]      (default target/guest)
#
# Writes OUT_DIR/vmlinuz and OUT_DIR/initrd.img; idempotent (nothing is rebuilt when both
# exist and this script has not changed). Needs apt-get, dpkg-deb and busybox-static
# (installed with apt when missing).
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-target/guest}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
stamp="$out/.built-by-$(sha256sum ops/guest/build.sh | cut -c1-16)"
if [ -f "$stamp" ] && [ -f "$out/vmlinuz" ] && [ -f "$out/initrd.img" ]; then
    exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
if [ ! -x /bin/busybox ]; then
    $SUDO apt-get update && $SUDO apt-get install -y busybox-static
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# The kernel the cloud-amd64 meta-package currently points at.
pkg="$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')"
if [ -z "$pkg" ]; then
    $SUDO apt-get update
    pkg="$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/{print $2; exit}')"
fi
# apt's download user must be able to write there.
chmod 777 "$work"
(cd "$work" && apt-get download "$pkg" >/dev/null)
dpkg-deb -x "$work"/linux-image-*.deb "$work/k"
version="$(ls "$work/k/lib/modules")"
kmods="$work/k/lib/modules/$version"
busybox depmod -b "$work/k" "$version"

root="$work/initramfs"
mkdir -p "$root"/{bin,dev,proc,sys,mnt,tmp,etc} "$root/lib/modules/$version"
cp /bin/busybox "$root/bin/busybox"
# Disk, cdrom and ISO 9660 modules with everything they depend on (modules.dep).
wanted="virtio_pci virtio_blk virtio_scsi ata_piix ahci sd_mod sr_mod isofs evdev button"
for m in $wanted; do
    # Not every module exists in every kernel flavour (the cloud kernel has no AHCI).
    line="$(grep -E "(^|/)$m\.ko:" "$kmods/modules.dep" || true)"
    [ -n "$line" ] || continue
    for f in ${line%%:*} ${line#*:}; do
        mkdir -p "$root/lib/modules/$version/$(dirname "$f")"
        cp "$kmods/$f" "$root/lib/modules/$version/$f"
    done
done
cp "$kmods"/modules.builtin "$kmods"/modules.order "$root/lib/modules/$version/"
busybox depmod -b "$root" "$version"
cat > "$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
echo 1 > /proc/sys/kernel/sysrq
for m in virtio_pci virtio_blk virtio_scsi ata_piix ahci sd_mod sr_mod isofs evdev button; do
    modprobe "$m" 2>/dev/null
done
sleep 1
# ACPI power button (libvirt's shutdown): power off at its first event, as a real
# guest's init would.
for e in /sys/class/input/event*; do
    if [ "$(cat "$e/device/name" 2>/dev/null)" = "Power Button" ]; then
        (dd if="/dev/input/${e##*/}" bs=24 count=1 of=/dev/null 2>/dev/null
         echo "STRATUS-GUEST power button: powering off"; poweroff -f) &
    fi
done
found=""
for d in /dev/sr0 /dev/sr1 /dev/vd? /dev/sd? /dev/hd?; do
    [ -b "$d" ] || continue
    if mount -t iso9660 -o ro "$d" /mnt 2>/dev/null; then
        if [ -f /mnt/openstack/latest/meta_data.json ]; then
            found="$d"
            break
        fi
        umount /mnt
    fi
done
if [ -n "$found" ]; then
    md=/mnt/openstack/latest/meta_data.json
    host="$(sed -n 's/.*"hostname": *"\([^"]*\)".*/\1/p' "$md")"
    key="$(sed -n 's/.*"public_keys": *{[^}]*: *"\([^"]*\)".*/\1/p' "$md")"
    hostname "$host"
    echo "STRATUS-GUEST config-drive=$found hostname=$host"
    echo "STRATUS-GUEST key=$key"
else
    echo "STRATUS-GUEST config-drive=none"
fi
echo "STRATUS-GUEST-READY"
while true; do sleep 3600; done
INIT
chmod +x "$root/init"
(cd "$root" && find . | busybox cpio -o -H newc 2>/dev/null | gzip -9) > "$out/initrd.img"
cp "$work/k/boot/vmlinuz-$version" "$out/vmlinuz"
rm -f "$out"/.built-by-*
touch "$stamp"
echo "guest: $out/vmlinuz ($version), $out/initrd.img ($(du -h "$out/initrd.img" | cut -f1))"
