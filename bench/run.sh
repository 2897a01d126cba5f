#!/usr/bin/env bash
# Benchmarks, each against a baseline measured in the same run:
#   profile     profile_agg vs plain GROUP BY over 10M ticks; session profile from rollups
#   accuracy    trade-side classification accuracy on the shared ground-truth data
#   backtest    bars per second of tapeflow.backtest from psql
# Usage: bench/run.sh [profile|accuracy|backtest ...]   (default: all). Needs `make db`.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
ADMIN="$(bash scripts/cluster.sh url | sed 's|/[^/]*$|/postgres|')"
DB=tapeflow_bench
URL="$(bash scripts/cluster.sh url | sed "s|/[^/]*\$|/$DB|")"
what=("$@"); [ ${#what[@]} -gt 0 ] || what=(profile accuracy backtest)

fresh_db() {
  psql "$ADMIN" -Xq -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
  TAPEFLOW_TIMESCALEDB=off bash scripts/migrate.sh "$URL" >/dev/null
}

for w in "${what[@]}"; do
  case "$w" in
    profile) fresh_db; psql "$URL" -X -v ticks="${BENCH_TICKS:-10000000}" -f bench/profile.sql ;;
    accuracy) cargo run -q --release -p tapeflow-analytics --example side_accuracy ;;
    backtest) fresh_db; psql "$URL" -X -f bench/backtest.sql ;;
    *) echo "unknown benchmark $w" >&2; exit 2 ;;
  esac
done
psql "$ADMIN" -Xq -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
