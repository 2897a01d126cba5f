#!/usr/bin/env bash
# Brings a database's tapeflow extension up to the installed build.
#
# * An older version (a release before the installed one) is upgraded in place with
#   ALTER EXTENSION tapeflow UPDATE, which runs the scripts of pg_extension/sql/; the data stays,
#   and stored values of the older version are read as they are.
# * Development convenience: when the installed extension's SQL differs from the one the
#   database was created with (same version, new functions), the extension and the objects that
#   depend on it are recreated, then derived data is rebuilt from ticks. Ticks, symbols and other
#   base tables do not depend on extension types and are kept. The same happens when an older
#   version has no upgrade path to the installed one.
# Usage: db-refresh-extension.sh [URL] [--stamp]   (--stamp: record the build, change nothing)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
URL="${1:-${DATABASE_URL:-$("$ROOT/scripts/cluster.sh" url)}}"
PG_CONFIG="${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}"
export PGOPTIONS="-c client_min_messages=warning"
PSQL=(psql "$URL" -X -q -v ON_ERROR_STOP=1)

installed="$("${PSQL[@]}" -tAc "SELECT extversion FROM pg_extension WHERE extname = 'tapeflow'")"
[ -n "$installed" ] || exit 0
available="$("${PSQL[@]}" -tAc "SELECT default_version FROM pg_available_extensions WHERE name = 'tapeflow'")"
sqlfile="$("$PG_CONFIG" --sharedir)/extension/tapeflow--$available.sql"
sum="$(sha256sum "$sqlfile" | cut -c1-16)"
stamp() { "${PSQL[@]}" -c "COMMENT ON EXTENSION tapeflow IS 'build $sum'"; }

if [ "${2:-}" != "--stamp" ] && [ "$installed" != "$available" ]; then
  if out="$("${PSQL[@]}" -c "ALTER EXTENSION tapeflow UPDATE TO '$available'" 2>&1)"; then
    echo "==> the tapeflow extension was upgraded from $installed to $available (ALTER EXTENSION tapeflow UPDATE)"
    stamp
    exit 0
  fi
  echo "==> the tapeflow extension cannot be upgraded from $installed to $available ($out): recreating it"
  recreate=1
fi
recorded="$("${PSQL[@]}" -tAc "SELECT obj_description(oid, 'pg_extension') FROM pg_extension WHERE extname = 'tapeflow'")"
if [ -z "${recreate:-}" ]; then
  if [ "${2:-}" = "--stamp" ] || [[ "$recorded" != build* ]]; then
    # A database created by this build (or before stamps existed): record the build.
    stamp
    exit 0
  fi
  [ "$recorded" = "build $sum" ] && exit 0
  echo "==> the tapeflow extension changed: recreating it and its dependent objects"
fi
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
stamp
