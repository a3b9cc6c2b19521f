#!/usr/bin/env bash
# Runs the walk-throughs of README.md and ops/README.md as written, against fresh
# processes on free ports, and fails when one does not behave as its text says
# (issue 17). Which blocks, the adaptations and the expected-result convention
# (`# 202`, `# "ACTIVE"`, `# wait for "..."`, `# -> PAUSED`): see ops/docs/walkthrough.py.
# Part of the test command (ops/test.sh). Idempotent; installs only what is missing:
# jq, curl and nats-server from apt, the pinned openstack CLI (ops/cli/run.sh).
#   DOC_TEST_KEEP=1   keep the temporary directories (printed at the end)
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/sbin"
missing=()
command -v jq >/dev/null || missing+=(jq)
command -v curl >/dev/null || missing+=(curl)
command -v nats-server >/dev/null || missing+=(nats-server)
command -v python3 >/dev/null || missing+=(python3)
if [ "${#missing[@]}" -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update && $SUDO apt-get install -y "${missing[@]}"
fi
# The `openstack` commands of the README run with the CLI ops/cli/run.sh pins.
bash ops/cli/run.sh --install-only
cargo build --locked -p stratus --bin stratus
keep=()
if [ "${DOC_TEST_KEEP:-}" = 1 ]; then keep=(--keep); fi
exec python3 ops/docs/walkthrough.py "${keep[@]}" \
    --stratus target/debug/stratus \
    --openstack "${OSC_VENV:-target/osc-venv}/bin/openstack" \
    --nats-server "$(command -v nats-server)" \
    README.md ops/README.md
