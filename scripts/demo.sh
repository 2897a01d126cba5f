#!/usr/bin/env bash
# Starts (or stops) the demo processes in the background: the demo feed, the executor and
# the web app, with logs in .tapeflow/logs and pid files in .tapeflow/pids.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
HOME_DIR="${TAPEFLOW_HOME:-$ROOT/.tapeflow}"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
PIDS="$HOME_DIR/pids"
LOGS="$HOME_DIR/logs"
mkdir -p "$PIDS" "$LOGS"
export DATABASE_URL="${DATABASE_URL:-$("$ROOT/scripts/cluster.sh" url)}"
export TAPEFLOW_WEB_ROOT="${TAPEFLOW_WEB_ROOT:-$ROOT/web}"
# On its first start (no users yet) the web app creates the user admin with a generated
# password and writes it here (mode 0600), so that every run of the demo can show it.
ADMIN_PASSWORD_FILE="$HOME_DIR/admin-password"
export TAPEFLOW_WEB_ADMIN_PASSWORD_FILE="${TAPEFLOW_WEB_ADMIN_PASSWORD_FILE:-$ADMIN_PASSWORD_FILE}"

alive() { [ -f "$PIDS/$1.pid" ] && kill -0 "$(cat "$PIDS/$1.pid")" 2>/dev/null; }

launch() {
  local name="$1"; shift
  if alive "$name"; then echo "    $name already running (pid $(cat "$PIDS/$name.pid"))"; return; fi
  nohup "$@" >>"$LOGS/$name.log" 2>&1 &
  echo $! >"$PIDS/$name.pid"
  echo "    started $name (pid $!, log .tapeflow/logs/$name.log)"
}

case "${1:-}" in
  start)
    echo "==> starting the demo"
    launch feed "$BIN/tapeflow-feed" demo
    launch exec "$BIN/tapeflow-exec"
    launch web "$BIN/tapeflow-web"
    addr="${TAPEFLOW_WEB_ADDR:-127.0.0.1:8080}"
    for _ in $(seq 1 50); do
      curl -fs "http://$addr/healthz" >/dev/null 2>&1 && break
      sleep 0.2
    done
    echo "==> Tapeflow is running: open http://$addr  (make stop to stop; make psql for SQL)"
    if [ -s "$TAPEFLOW_WEB_ADMIN_PASSWORD_FILE" ]; then
      echo "    log in as admin, password $(cat "$TAPEFLOW_WEB_ADMIN_PASSWORD_FILE")  (generated on the first start, kept in ${TAPEFLOW_WEB_ADMIN_PASSWORD_FILE#"$ROOT"/})"
    else
      echo "    log in with a dashboard user; make one with: $BIN/tapeflow-web user add NAME --role admin"
    fi
    ;;
  stop)
    for name in web exec feed; do
      if alive "$name"; then
        pid="$(cat "$PIDS/$name.pid")"
        kill -TERM "$pid"
        # An executor finishing a broker retry can take several seconds; one still running
        # would keep its metrics port and make the next start's executor fail.
        for _ in $(seq 1 150); do alive "$name" || break; sleep 0.1; done
        if alive "$name"; then
          kill -KILL "$pid" && echo "==> killed $name (no exit 15 s after SIGTERM)"
          for _ in $(seq 1 20); do alive "$name" || break; sleep 0.1; done
        else
          echo "==> stopped $name"
        fi
      fi
      rm -f "$PIDS/$name.pid"
    done
    ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
