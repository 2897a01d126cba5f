#!/usr/bin/env bash
# Applies sql/NNN_*.sql in order to the database at $1 (default: the project cluster),
# each in its own transaction, recording applied files in tapeflow.schema_migrations.
# A file already recorded is skipped, so re-running is safe.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
URL="${1:-${DATABASE_URL:-$("$ROOT/scripts/cluster.sh" url)}}"
export PGOPTIONS="-c client_min_messages=warning"
PSQL=(psql "$URL" -X -q -v ON_ERROR_STOP=1)

"${PSQL[@]}" -c "CREATE SCHEMA IF NOT EXISTS tapeflow;
  CREATE TABLE IF NOT EXISTS tapeflow.schema_migrations (
    version text PRIMARY KEY, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"

for f in "$ROOT"/sql/[0-9][0-9][0-9]_*.sql; do
  version="$(basename "$f" .sql)"
  sum="$(sha256sum "$f" | cut -c1-16)"
  applied="$("${PSQL[@]}" -tAc "SELECT checksum FROM tapeflow.schema_migrations WHERE version = '$version'")"
  if [ -n "$applied" ]; then
    [ "$applied" = "$sum" ] || echo "warning: $version changed since it was applied (recorded $applied, now $sum)" >&2
    continue
  fi
  echo "==> migration $version"
  { echo "BEGIN;"; [ -n "${TAPEFLOW_TIMESCALEDB:-}" ] && echo "SET LOCAL tapeflow.timescaledb = '$TAPEFLOW_TIMESCALEDB';";
    cat "$f"; echo; echo "INSERT INTO tapeflow.schema_migrations (version, checksum) VALUES ('$version', '$sum');"; echo "COMMIT;"; } \
    | "${PSQL[@]}" -f - >/dev/null
done
