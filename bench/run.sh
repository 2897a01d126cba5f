#!/usr/bin/env bash
# Benchmarks, each against a baseline measured in the same run:
#   profile     profile_agg vs plain GROUP BY over 10M ticks; session profile from rollups
#   accuracy    trade-side classification accuracy on the shared ground-truth data
#   backtest    bars per second of tapeflow.backtest from psql
#   sse         tapeflow-web (release): SSE delivery latency p50/p99 to 500 clients vs a single
#               client, same events, same run (tests/examples/sse_bench.rs; BENCH_SSE_CLIENTS,
#               BENCH_SSE_EVENTS, BENCH_SSE_INTERVAL_MS, BENCH_SSE_PAYLOAD)
#   exec        tapeflow-exec (release, Alpaca broker against the fake Alpaca): signal insert →
#               order accepted p50/p99, signals/s of a 1,000-signal burst, vs a bare LISTEN/NOTIFY
#               round trip (tests/examples/exec_bench.rs; BENCH_EXEC_SIGNALS, BENCH_EXEC_INTERVAL_MS)
# Usage: bench/run.sh [profile|accuracy|backtest|sse|exec ...]   (default: all). Needs `make db`.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
ADMIN="$(bash scripts/cluster.sh url | sed 's|/[^/]*$|/postgres|')"
DB=tapeflow_bench
URL="$(bash scripts/cluster.sh url | sed "s|/[^/]*\$|/$DB|")"
what=("$@"); [ ${#what[@]} -gt 0 ] || what=(profile accuracy backtest sse exec)

fresh_db() {
  psql "$ADMIN" -Xq -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
  TAPEFLOW_TIMESCALEDB=off bash scripts/migrate.sh "$URL" >/dev/null
}

for w in "${what[@]}"; do
  case "$w" in
    profile) fresh_db; psql "$URL" -X -v ticks="${BENCH_TICKS:-10000000}" -f bench/profile.sql ;;
    accuracy) cargo run -q --release -p tapeflow-tests --example side_accuracy ;;
    backtest) fresh_db; psql "$URL" -X -f bench/backtest.sql ;;
    sse)
      # Its own throw-away database on the same cluster (tests' TestDb), dropped when it ends.
      cargo build -q --release --bin tapeflow-web
      DATABASE_URL="$(bash scripts/cluster.sh url)" cargo run -q --release -p tapeflow-tests --example sse_bench ;;
    exec)
      # Its own throw-away databases on the same cluster (tests' TestDb), dropped when it ends.
      cargo build -q --release --bin tapeflow-exec
      DATABASE_URL="$(bash scripts/cluster.sh url)" cargo run -q --release -p tapeflow-tests --example exec_bench ;;
    *) echo "unknown benchmark $w" >&2; exit 2 ;;
  esac
done
psql "$ADMIN" -Xq -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
