#!/usr/bin/env bash
# The project-local PostgreSQL 15 cluster under .tapeflow/ (git-ignored).
#   cluster.sh start   create (first time) and start it; idempotent
#   cluster.sh stop    stop it
#   cluster.sh url     print its libpq URL
#   cluster.sh status  exit 0 when it is running
#   cluster.sh timescaledb  exit 0 when it runs with TimescaleDB installed and preloaded (the
#                      migrations then take the TimescaleDB path; its tests and benchmarks run)
# PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
HOME_DIR="${TAPEFLOW_HOME:-$ROOT/.tapeflow}"
PORT="${TAPEFLOW_PGPORT:-5433}"
DB="${TAPEFLOW_DB:-tapeflow}"
PGBIN="${TAPEFLOW_PGBIN:-/usr/lib/postgresql/15/bin}"
DATA="$HOME_DIR/pgdata"
RUN="$HOME_DIR/run"
LOG="$HOME_DIR/logs/postgresql.log"

as_pg() {
  if [ "$(id -u)" = "0" ]; then sudo -u postgres -- "$@"; else "$@"; fi
}

url() { echo "postgresql://postgres@127.0.0.1:$PORT/$DB"; }

preload() {
  # timescaledb is preloaded when installed; tapeflow always (its scheduler is a background worker).
  local libs="tapeflow"
  if [ -f "$("$PGBIN/pg_config" --pkglibdir)/timescaledb.so" ] && [ "${TAPEFLOW_TIMESCALEDB:-on}" != "off" ]; then
    libs="timescaledb,$libs"
  fi
  echo "$libs"
}

init() {
  mkdir -p "$HOME_DIR/logs" "$RUN"
  if [ "$(id -u)" = "0" ]; then chown postgres:postgres "$HOME_DIR" "$HOME_DIR/logs" "$RUN"; fi
  if [ ! -f "$DATA/PG_VERSION" ]; then
    echo "==> creating cluster in $DATA (port $PORT)"
    as_pg "$PGBIN/initdb" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  fi
  # Settings are rewritten on every start so a changed port or preload list takes effect.
  as_pg tee "$DATA/postgresql.auto.conf" >/dev/null <<CONF
port = $PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$RUN'
shared_preload_libraries = '$(preload)'
max_worker_processes = 16
max_parallel_workers = 8
timezone = 'UTC'
log_timezone = 'UTC'
fsync = ${TAPEFLOW_FSYNC:-on}
tapeflow.scheduler_database = '$DB'
CONF
}

running() { as_pg "$PGBIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; }

start() {
  init
  if running; then
    # Restart when the preload list changed (e.g. TimescaleDB was installed since).
    if ! grep -q "shared_preload_libraries = '$(preload)'" "$DATA/postmaster.opts" "$DATA/postgresql.auto.conf" 2>/dev/null; then
      as_pg "$PGBIN/pg_ctl" -D "$DATA" -w restart -l "$LOG" >/dev/null
    fi
  else
    echo "==> starting PostgreSQL on port $PORT"
    as_pg "$PGBIN/pg_ctl" -D "$DATA" -w -t 60 start -l "$LOG" >/dev/null
  fi
  if ! as_pg "$PGBIN/psql" -h "$RUN" -p "$PORT" -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1; then
    as_pg "$PGBIN/createdb" -h "$RUN" -p "$PORT" -U postgres "$DB"
  fi
}

stop() {
  if [ -f "$DATA/PG_VERSION" ] && running; then
    echo "==> stopping PostgreSQL"
    as_pg "$PGBIN/pg_ctl" -D "$DATA" -w -m fast stop >/dev/null
  fi
}

has_timescaledb() {
  [ "$("$PGBIN/psql" "postgresql://postgres@127.0.0.1:$PORT/postgres" -XtAc "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')
      AND 'timescaledb' = ANY (string_to_array(replace(current_setting('shared_preload_libraries'), ' ', ''), ','))" 2>/dev/null)" = t ]
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  url) url ;;
  status) running ;;
  restart) stop; start ;;
  timescaledb) has_timescaledb ;;
  *) echo "usage: $0 start|stop|restart|url|status|timescaledb" >&2; exit 2 ;;
esac
