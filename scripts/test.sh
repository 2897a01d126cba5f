#!/usr/bin/env bash
# Every test: formatting and lints, unit and property tests, the extension's tests inside
# PostgreSQL, and the integration tests (real cluster, real binaries, SSE, headless Chromium).
# Expects `make extension binaries` to have run (make test does that).
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
# cargo pgrx test installs its own build into the server's directories: stop the project
# cluster first and put the release build back afterwards.
bash scripts/demo.sh stop >/dev/null 2>&1 || true
bash scripts/cluster.sh stop
# The test server runs as the postgres user and creates its data directory there.
mkdir -p "$HOME_DIR/pgrx-test-data"
if [ "$(id -u)" = "0" ]; then chown postgres:postgres "$HOME_DIR" "$HOME_DIR/pgrx-test-data"; fi
(cd pg_extension && cargo pgrx test pg15 --runas postgres --pgdata "$HOME_DIR/pgrx-test-data")
bash scripts/extension.sh restore
bash scripts/cluster.sh start
bash scripts/db-refresh-extension.sh
bash scripts/migrate.sh
bash scripts/db-refresh-extension.sh "$(bash scripts/cluster.sh url)" --stamp

echo "==> integration tests"
# The TimescaleDB and Citus paths are tested where those are installed. Each skipped test says
# so in its own output, which cargo shows only on failure, so the skips are named here too.
if ! bash scripts/cluster.sh timescaledb; then
  echo "    skipped: the TimescaleDB-path tests (TimescaleDB is not installed, or not preloaded, in the cluster)"
fi
if ! bash scripts/citus.sh available; then
  echo "    skipped: the Citus tests (Citus is not installed)"
fi
cargo test --no-fail-fast -p tapeflow-tests -- --test-threads=2
