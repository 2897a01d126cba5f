#!/usr/bin/env bash
# Benchmarks, each against a baseline measured in the same run:
#   profile     profile_agg vs plain GROUP BY over 10M ticks; session profile from rollups
#   accuracy    trade-side classification accuracy on the shared ground-truth data
#   backtest    bars per second of tapeflow.backtest from psql
#   sse         tapeflow-web (release): SSE delivery latency p50/p99 to 500 clients vs a single
#               client, same events, same run (tests/examples/sse_bench.rs; BENCH_SSE_CLIENTS,
#               BENCH_SSE_EVENTS, BENCH_SSE_INTERVAL_MS, BENCH_SSE_PAYLOAD)
# Usage: bench/run.sh [profile|accuracy|backtest|sse ...]   (default: all). Needs `make db`.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
ADMIN="$(bash scripts/cluster.sh url | sed 's|/[^/]*$|/postgres|')"
DB=tapeflow_bench
URL="$(bash scripts/cluster.sh url | sed "s|/[^/]*\$|/$DB|")"
what=("$@"); [ ${#what[@]} -gt 0 ] || what=(profile accuracy backtest sse)

fresh_db() {
  psql "$ADMIN" -Xq -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
  TAPEFLOW_TIMESCALEDB=off bash scripts/migrate.sh "$URL" >/dev/null
}

for w in "${what[@]}"; do
  case "$w" in
    profile) fresh_db; psql "$URL" -X -v ticks="${BENCH_TICKS:-10000000}" -f bench/profile.sql ;;
    accuracy) cargo run -q --release -p tapeflow-analytics --example side_accuracy ;;
    backtest) fresh_db; psql "$URL" -X -f bench/backtest.sql ;;
    sse)
      # Its own throw-away database on the same cluster (tests' TestDb), dropped when it ends.
      cargo build -q --release --bin tapeflow-web
      DATABASE_URL="$(bash scripts/cluster.sh url)" cargo run -q --release -p tapeflow-tests --example sse_bench ;;
    *) echo "unknown benchmark $w" >&2; exit 2 ;;
  esac
done
psql "$ADMIN" -Xq -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
