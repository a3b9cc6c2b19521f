#!/usr/bin/env bash
# Installs the pinned python-openstackclient in a virtualenv (idempotent) and runs the
# CLI scenario against a `stratus serve` built from this checkout.
#   OSC_VENV     where the virtualenv lives (default: target/osc-venv)
#   --install-only   only install (ops/docs/run.sh uses the same CLI)
set -euo pipefail
cd "$(dirname "$0")/../.."
OSC_VERSION=10.5.0
VENV=${OSC_VENV:-target/osc-venv}
if ! command -v python3 >/dev/null || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update && $SUDO apt-get install -y python3 python3-venv
fi
if ! command -v openssl >/dev/null; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update && $SUDO apt-get install -y openssl
fi
if [ "$("$VENV/bin/openstack" --version 2>/dev/null)" != "openstack $OSC_VERSION" ]; then
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "python-openstackclient==$OSC_VERSION"
fi
if [ "${1:-}" = "--install-only" ]; then exit 0; fi
cargo build --locked -p stratus --bin stratus
PATH="$PWD/$VENV/bin:$PATH" ops/cli/scenario.sh target/debug/stratus
PATH="$PWD/$VENV/bin:$PATH" ops/cli/tls.sh target/debug/stratus
