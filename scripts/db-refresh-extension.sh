#!/usr/bin/env bash
# Development convenience: when the installed extension's SQL differs from the one the
# database was created with (same version, new functions), recreate the extension and the
# objects that depend on it, then rebuild derived data from ticks. Ticks, symbols and other
# base tables do not depend on extension types and are kept. Released versions upgrade with
# the scripts in pg_extension/sql/ instead.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
URL="${1:-${DATABASE_URL:-$("$ROOT/scripts/cluster.sh" url)}}"
PG_CONFIG="${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}"
export PGOPTIONS="-c client_min_messages=warning"
PSQL=(psql "$URL" -X -q -v ON_ERROR_STOP=1)

sqlfile="$(ls "$("$PG_CONFIG" --sharedir)"/extension/tapeflow--*.sql | grep -v -- '--.*--' | tail -1)"
sum="$(sha256sum "$sqlfile" | cut -c1-16)"
installed="$("${PSQL[@]}" -tAc "SELECT 1 FROM pg_extension WHERE extname = 'tapeflow'")"
[ "$installed" = "1" ] || exit 0
recorded="$("${PSQL[@]}" -tAc "SELECT obj_description(oid, 'pg_extension') FROM pg_extension WHERE extname = 'tapeflow'")"
if [ "${2:-}" = "--stamp" ] || [[ "$recorded" != build* ]]; then
  # A database created by this build (or before stamps existed): record the build.
  "${PSQL[@]}" -c "COMMENT ON EXTENSION tapeflow IS 'build $sum'"
  exit 0
fi
[ "$recorded" = "build $sum" ] && exit 0
echo "==> the tapeflow extension changed: recreating it and its dependent objects"
"${PSQL[@]}" <<SQL
BEGIN;
DO \$\$ BEGIN
  -- A continuous aggregate (TimescaleDB) is a view over its materialization.
  IF EXISTS (SELECT 1 FROM pg_class WHERE oid = to_regclass('tapeflow.bars_1m') AND relkind IN ('m', 'v')) THEN
    EXECUTE 'DROP MATERIALIZED VIEW tapeflow.bars_1m CASCADE';
  END IF;
END \$\$;
DROP TABLE IF EXISTS tapeflow.bars_1m CASCADE;
DROP EXTENSION tapeflow CASCADE;
-- Views are derived: the migrations below recreate every one of them, in their latest form.
DO \$\$ DECLARE v record; BEGIN
  FOR v IN SELECT viewname FROM pg_views WHERE schemaname = 'tapeflow' LOOP
    EXECUTE format('DROP VIEW IF EXISTS tapeflow.%I CASCADE', v.viewname);
  END LOOP;
END \$\$;
DELETE FROM tapeflow.schema_migrations WHERE version >= '002';
CREATE EXTENSION tapeflow;
COMMIT;
SQL
"$ROOT/scripts/migrate.sh" "$URL"
"${PSQL[@]}" -c "SELECT tapeflow.rebuild_rollups()" >/dev/null
"${PSQL[@]}" -c "COMMENT ON EXTENSION tapeflow IS 'build $sum'"
