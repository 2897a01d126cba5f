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
#   ingest      the tick write path vs a plain COPY of the same 1M TAQ-derived ticks, before and
#               after sql/013_ingest.sql, and the feeder's path through its sink with one writer
#               and with TAPEFLOW_FEED_WRITERS, in one run (plain path; TimescaleDB too when
#               installed), the unique key alone in three layouts (symbol-led, time-led, a
#               table per symbol) and with a text or an int4 symbol, then tick -> SSE
#               latency p50/p99 at 10,000 ticks/s
#               (tests/examples/ingest_bench.rs; BENCH_INGEST_TICKS, BENCH_INGEST_BATCH,
#               BENCH_INGEST_ROUNDS: pairs of COPY and feeder behind the median ratio,
#               TAPEFLOW_FEED_WRITERS, BENCH_LATENCY_RATE, BENCH_LATENCY_SECS)
#   citus       the same ticks (BENCH_TICKS, default 10M) written and profiled per symbol and
#               across symbols on one server and on the local Citus cluster (make citus), same
#               run; the answers' digests must agree (bench/citus.sql). Skipped without Citus.
#   arbitrage   Polymarket: tapeflow.arbitrage_scan() markets/s over 5,000 synthetic markets with
#               20 levels a side beside plain SQL reading the same books (bench/arbitrage.sql;
#               BENCH_MARKETS), then book update -> opportunity announced on tapeflow_arbitrage
#               p50/p99 beside the write alone and a bare NOTIFY (tests/examples/arbitrage_bench.rs;
#               BENCH_ARB_UPDATES)
# Usage: bench/run.sh [profile|accuracy|backtest|sse|exec|ingest|citus|arbitrage ...]   (default: all). Needs `make db`.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
ADMIN="$(bash scripts/cluster.sh url | sed 's|/[^/]*$|/postgres|')"
DB=tapeflow_bench
URL="$(bash scripts/cluster.sh url | sed "s|/[^/]*\$|/$DB|")"
what=("$@"); [ ${#what[@]} -gt 0 ] || what=(profile accuracy backtest sse exec ingest)

fresh_db() {
  psql "$ADMIN" -Xq -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
  TAPEFLOW_TIMESCALEDB=off bash scripts/migrate.sh "$URL" >/dev/null
}

# A fresh database $1 with the migrations before version $2 only (the schema a benchmark starts
# from); $3 = on|off, the TimescaleDB path. migrate.sh applies what is in the sql/ beside it.
db_before() {
  local url tmp f
  url="$(bash scripts/cluster.sh url | sed "s|/[^/]*\$|/$1|")"
  psql "$ADMIN" -Xq -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1" || return 1
  tmp="$(mktemp -d)"; mkdir "$tmp/scripts" "$tmp/sql"
  ln -s "$ROOT/scripts/migrate.sh" "$tmp/scripts/"
  for f in "$ROOT"/sql/[0-9][0-9][0-9]_*.sql; do [[ "$(basename "$f")" < "$2" ]] && ln -s "$f" "$tmp/sql/"; done
  TAPEFLOW_TIMESCALEDB="$3" bash "$tmp/scripts/migrate.sh" "$url" >/dev/null || { rm -rf "$tmp"; return 1; }
  rm -rf "$tmp"
  echo "$url"
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
    ingest)
      # Databases at the schema before 013; the benchmark migrates them itself, between its
      # before and after runs. The web app's own throw-away database (tests' TestDb) is dropped
      # when it ends.
      cargo build -q --release --bin tapeflow-web && cargo build -q --release -p tapeflow-tests --example ingest_bench
      trades="$(mktemp)"
      taq="${TAPEFLOW_SHARED_DATA:-$ROOT/../shared/data}/a_equities_taq/taq_XXX_trades_raw_2018-01-02_03.csv.gz"
      if [ -f "$taq" ]; then gzip -dc "$taq" >"$trades"; else : >"$trades"; fi
      # Databases of its own run (another run beside it recreates $DB, or its own).
      ingest_db="${DB}_ingest_$$"
      plain="$(db_before "$ingest_db" 013 off)"
      ts=""; if bash scripts/cluster.sh timescaledb; then ts="$(db_before "${ingest_db}_ts" 013 on)"; fi
      BENCH_INGEST_URL="$plain" BENCH_INGEST_TS_URL="$ts" BENCH_INGEST_TRADES="$([ -s "$trades" ] && echo "$trades")" \
        DATABASE_URL="$(bash scripts/cluster.sh url)" cargo run -q --release -p tapeflow-tests --example ingest_bench
      rm -f "$trades"
      psql "$ADMIN" -Xq -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $ingest_db WITH (FORCE)" \
        -c "DROP DATABASE IF EXISTS ${ingest_db}_ts WITH (FORCE)" ;;
    citus)
      if ! bash scripts/citus.sh available; then echo "citus: skipped, Citus is not installed"; continue; fi
      fresh_db
      echo "==> one server"
      psql "$URL" -X -v ticks="${BENCH_TICKS:-10000000}" -c "SET bench.ticks = ${BENCH_TICKS:-10000000}" -f bench/citus.sql
      # A database of its own on the local cluster (started if need be), dropped on every node after.
      TAPEFLOW_DB=$DB bash scripts/citus.sh start >/dev/null
      curl_="$(TAPEFLOW_DB=$DB bash scripts/citus.sh url)"
      bash scripts/migrate.sh "$curl_" >/dev/null 2>&1
      echo "==> Citus: coordinator + 2 workers"
      psql "$curl_" -X -v ticks="${BENCH_TICKS:-10000000}" -c "SET bench.ticks = ${BENCH_TICKS:-10000000}" -f bench/citus.sql
      for p in 0 1 2; do
        psql "postgresql://postgres@127.0.0.1:$((${TAPEFLOW_CITUS_PORT:-5440} + p))/postgres" -Xq \
          -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
      done ;;
    arbitrage)
      fresh_db
      psql "$URL" -X -v markets="${BENCH_MARKETS:-5000}" -f bench/arbitrage.sql
      BENCH_ARB_URL="$URL" cargo run -q --release -p tapeflow-tests --example arbitrage_bench ;;
    *) echo "unknown benchmark $w" >&2; exit 2 ;;
  esac
done
psql "$ADMIN" -Xq -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
