#!/usr/bin/env bash
# Runs every check and test of the workspace. This is the README's test command;
# .ci/run calls exactly this. Idempotent; installs nothing it does not need.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
# The JetStream backend's tests spawn a real nats-server (Debian package, 2.9.x).
export PATH="$PATH:/usr/sbin"
if ! command -v nats-server >/dev/null; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update && $SUDO apt-get install -y nats-server
fi
# qemu-img: the image format inspector's tests check what it writes, and tempest's
# ImagesFormatTest images are built with it.
if ! command -v qemu-img >/dev/null; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update && $SUDO apt-get install -y qemu-utils
fi
# genisoimage (and its isoinfo): config drives are ISO 9660 volumes made as Nova makes
# them; the metadata tests read them back.
if ! command -v genisoimage >/dev/null || ! command -v isoinfo >/dev/null; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update && $SUDO apt-get install -y genisoimage
fi
# libvirt-dev + pkg-config: the libvirt compute driver (`--features libvirt`) links
# libvirt; its tests run on libvirt's in-process `test:///default` driver.
if ! pkg-config --exists libvirt 2>/dev/null; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update && $SUDO apt-get install -y libvirt-dev pkg-config
fi
cargo fmt --all --check
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
cargo test --workspace --all-features --locked
# The stock `openstack` CLI (pinned, in a virtualenv) against `stratus serve`.
bash ops/cli/run.sh
# A real QEMU guest (TCG here, KVM where it works) through the API and the stock CLI:
# installs and starts libvirt when needed and builds the guest from Debian packages.
bash ops/guest/run.sh
# The walk-throughs of README.md and ops/README.md, run as written (fresh processes, free ports).
bash ops/docs/run.sh
# The OpenAPI documents against `stratus serve` (pinned schemathesis, in a virtualenv).
bash ops/openapi/run.sh
# Tempest 47.0.0 (pinned, in a virtualenv): tempest.api.compute, identity.v3, image.v2
# and network
# against `stratus serve`, minus ops/tempest/exclude.txt (each exclusion with its reason).
bash ops/tempest/run.sh
