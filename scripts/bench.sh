#!/usr/bin/env bash
# Runs the benchmark harness (docs/benchmarks.md) on release builds:
#   scripts/bench.sh --mode embedded --schedules 2000 --duration 60s
#   scripts/bench.sh --mode distributed --schedules 5000 --planners 2 --workers 2 --json out.json
# Installs what the distributed mode needs (same script as the tests); the harness starts
# its own private Postgres, etcd and Tansu.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/test-env.sh
source scripts/test-env.sh
trap cronhook_test_env_down EXIT
cargo build --release --locked -p cronhook -p cronhook-e2e --bins
CRONHOOK_BIN="$PWD/target/release/cronhook" target/release/cronhook-bench "$@"
