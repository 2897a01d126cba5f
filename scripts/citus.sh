#!/usr/bin/env bash
# A local Citus cluster for Tapeflow: one coordinator and two workers on this machine, under
# .tapeflow/citus/ (git-ignored). Citus itself must already be installed into the server's
# directories (this repository neither builds nor downloads it; see README "Scale-out").
#   citus.sh start    create (first time) and start the three nodes, register the workers,
#                     create the tapeflow database with the citus extension on each
#   citus.sh announcer  (after migrating) start the coordinator's announcer in the background:
#                     a session running CALL tapeflow.citus_announcer(), which sends the candle
#                     announcements the tick shards queue (sql/020_citus.sql); restarted if dead
#   citus.sh stop     stop the announcer and the nodes
#   citus.sh url      the coordinator's libpq URL (what feeders, web and psql use)
#   citus.sh status   exit 0 when all three are running
#   citus.sh available  exit 0 when Citus is installed
# Ports: TAPEFLOW_CITUS_PORT (coordinator, default 5440) and the next two for the workers.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
HOME_DIR="${TAPEFLOW_HOME:-$ROOT/.tapeflow}/citus"
BASE_PORT="${TAPEFLOW_CITUS_PORT:-5440}"
DB="${TAPEFLOW_DB:-tapeflow}"
PGBIN="${TAPEFLOW_PGBIN:-/usr/lib/postgresql/15/bin}"
RUN="$HOME_DIR/run"
NODES=(coordinator worker1 worker2)

as_pg() {
  if [ "$(id -u)" = "0" ]; then sudo -u postgres -- "$@"; else "$@"; fi
}

available() { [ -f "$("$PGBIN/pg_config" --pkglibdir)/citus.so" ]; }

port_of() { echo $((BASE_PORT + $1)); }

url() { echo "postgresql://postgres@127.0.0.1:$(port_of 0)/$DB"; }

psql_node() {
  local i="$1"; shift
  as_pg "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$RUN" -p "$(port_of "$i")" -U postgres "$@"
}

init_node() {
  local i="$1" name="${NODES[$1]}" data="$HOME_DIR/${NODES[$1]}"
  if [ ! -f "$data/PG_VERSION" ]; then
    echo "==> creating Citus $name in $data (port $(port_of "$i"))"
    as_pg "$PGBIN/initdb" -D "$data" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  fi
  # Citus must be preloaded first. The tapeflow scheduler runs on the coordinator only: on a
  # worker it would evaluate strategies against shards' shells.
  local scheduler=off
  [ "$i" = 0 ] && scheduler=on
  as_pg tee "$data/postgresql.auto.conf" >/dev/null <<CONF
port = $(port_of "$i")
listen_addresses = '127.0.0.1'
unix_socket_directories = '$RUN'
shared_preload_libraries = 'citus,tapeflow'
max_worker_processes = 16
max_connections = 200
timezone = 'UTC'
log_timezone = 'UTC'
fsync = ${TAPEFLOW_FSYNC:-on}
citus.node_conninfo = 'sslmode=disable'
tapeflow.scheduler = $scheduler
tapeflow.scheduler_database = '$DB'
CONF
}

running_node() { as_pg "$PGBIN/pg_ctl" -D "$HOME_DIR/${NODES[$1]}" status >/dev/null 2>&1; }

start() {
  local created=""
  available || { echo "Citus is not installed for $("$PGBIN/pg_config" --version)" >&2; exit 1; }
  mkdir -p "$HOME_DIR/logs" "$RUN"
  if [ "$(id -u)" = "0" ]; then chown -R postgres:postgres "$HOME_DIR"; fi
  for i in 0 1 2; do
    init_node "$i"
    if ! running_node "$i"; then
      as_pg "$PGBIN/pg_ctl" -D "$HOME_DIR/${NODES[$i]}" -w -t 60 start -l "$HOME_DIR/logs/${NODES[$i]}.log" >/dev/null
    fi
    if ! psql_node "$i" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1; then
      psql_node "$i" -d postgres -c "CREATE DATABASE $DB"
      [ "$i" = 0 ] && created=1
    fi
    psql_node "$i" -d "$DB" -c "CREATE EXTENSION IF NOT EXISTS citus"
  done
  psql_node 0 -d "$DB" -c "SELECT citus_set_coordinator_host('127.0.0.1', $(port_of 0))" >/dev/null
  for i in 1 2; do
    psql_node 0 -d "$DB" -tAc "SELECT 1 FROM pg_dist_node WHERE nodeport = $(port_of "$i")" | grep -q 1 \
      || psql_node 0 -d "$DB" -c "SELECT citus_add_node('127.0.0.1', $(port_of "$i"))" >/dev/null
  done
  # The scheduler attaches to its database when the server starts: now that it exists.
  if [ -n "${created:-}" ]; then
    as_pg "$PGBIN/pg_ctl" -D "$HOME_DIR/${NODES[0]}" -w -t 60 restart -m fast -l "$HOME_DIR/logs/${NODES[0]}.log" >/dev/null
  fi
  echo "==> Citus coordinator at $(url), workers on ports $(port_of 1) and $(port_of 2)"
}

announcer_pid() { cat "$RUN/announcer.pid" 2>/dev/null || true; }

announcer() {
  local pid
  pid="$(announcer_pid)"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then return 0; fi
  psql_node 0 -d "$DB" -tAc "SELECT to_regprocedure('tapeflow.citus_announcer(interval)') IS NOT NULL" | grep -q t \
    || { echo "tapeflow.citus_announcer() is missing: migrate the coordinator first" >&2; exit 1; }
  # Its own session, detached; it logs nothing unless it fails.
  setsid "$PGBIN/psql" -X -q -h 127.0.0.1 -p "$(port_of 0)" -U postgres -d "$DB" \
    -c "SET application_name = 'tapeflow_citus_announcer'" -c "CALL tapeflow.citus_announcer()" \
    </dev/null >>"$HOME_DIR/logs/announcer.log" 2>&1 &
  echo $! >"$RUN/announcer.pid"
  echo "==> announcer running (pid $!)"
}

stop() {
  local pid
  pid="$(announcer_pid)"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill "$pid"; fi
  rm -f "$RUN/announcer.pid"
  for i in 2 1 0; do
    if [ -f "$HOME_DIR/${NODES[$i]}/PG_VERSION" ] && running_node "$i"; then
      as_pg "$PGBIN/pg_ctl" -D "$HOME_DIR/${NODES[$i]}" -w -m fast stop >/dev/null
    fi
  done
}

status() { for i in 0 1 2; do running_node "$i" || return 1; done; }

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  url) url ;;
  status) status ;;
  available) available ;;
  announcer) announcer ;;
  *) echo "usage: $0 start|stop|url|status|available|announcer" >&2; exit 2 ;;
esac
