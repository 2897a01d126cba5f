#!/usr/bin/env bash
# Every test: formatting and lints, unit and property tests, the extension's tests inside
# PostgreSQL, and the integration tests (real cluster, real binaries, SSE, headless Chromium).
# Expects `make db binaries` to have run (make test does that).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
HOME_DIR="${TAPEFLOW_HOME:-$ROOT/.tapeflow}"

echo "==> format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

echo "==> unit and property tests"
cargo test -p tapeflow-analytics -p tapeflow-db -p tapeflow-feeders -p tapeflow-web -p tapeflow-executor

echo "==> extension tests inside PostgreSQL 15"
mkdir -p "$HOME_DIR"
(cd pg_extension && cargo pgrx test pg15 --runas postgres --pgdata "$HOME_DIR/pgrx-test-data")

echo "==> integration tests"
cargo test -p tapeflow-tests -- --test-threads=2
