#!/usr/bin/env bash
# The README's test command: starts every server the tests need (scripts/test-env.sh),
# builds the cronhook binary the end-to-end tests run, runs the whole workspace suite,
# and tears the servers down, pass or fail.
#
#   scripts/test.sh                 # everything (what CI runs)
#   scripts/test.sh -p cronhook-store   # extra args go to cargo nextest / cargo test

set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/test-env.sh
source scripts/test-env.sh
trap cronhook_test_env_down EXIT

echo "[test] servers: Postgres $CRONHOOK_TEST_DATABASE_URL | etcd $CRONHOOK_TEST_ETCD | Kafka (Tansu) $CRONHOOK_TEST_KAFKA"

# The end-to-end tests start the real binary (target/debug/cronhook).
cargo build --locked -p cronhook --bin cronhook

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --workspace --no-fail-fast "$@"
else
  cargo test --locked --workspace --no-fail-fast "$@"
fi
