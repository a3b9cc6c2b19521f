#!/usr/bin/env bash
# Runs every check and test of the workspace. This is the README's test command;
# .ci/run calls exactly this. Idempotent; installs nothing it does not need.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
cargo fmt --all --check
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
cargo test --workspace --locked
