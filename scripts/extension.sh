#!/usr/bin/env bash
# Installs the tapeflow extension into the system's PostgreSQL 15, keeping a copy of the
# installed files so they can be put back after `cargo pgrx test` (which installs its own
# test build into the same directories).
#   extension.sh install   build (release) and install; stops the cluster first, because it
#                          preloads the library and replacing it under a running server crashes it
#   extension.sh restore   put the release build back (after cargo pgrx test)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
HOME_DIR="${TAPEFLOW_HOME:-$ROOT/.tapeflow}"
PG_CONFIG="${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}"
STASH="$HOME_DIR/extension-release"
LIBDIR="$("$PG_CONFIG" --pkglibdir)"
EXTDIR="$("$PG_CONFIG" --sharedir)/extension"
SUDO=""; PGRX_SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; PGRX_SUDO="--sudo"; fi

stop_all() {
  bash "$ROOT/scripts/demo.sh" stop >/dev/null 2>&1 || true
  bash "$ROOT/scripts/cluster.sh" stop
}

case "${1:-}" in
  install)
    stop_all
    (cd "$ROOT/pg_extension" && cargo pgrx install --release --pg-config "$PG_CONFIG" $PGRX_SUDO)
    rm -rf "$STASH"; mkdir -p "$STASH"
    cp "$LIBDIR/tapeflow.so" "$EXTDIR"/tapeflow.control "$EXTDIR"/tapeflow--*.sql "$STASH/"
    ;;
  restore)
    [ -f "$STASH/tapeflow.so" ] || { echo "no stashed extension build; run make extension" >&2; exit 1; }
    stop_all
    # Copy then rename, so a process mapping the old file never sees a half-written one.
    $SUDO cp "$STASH/tapeflow.so" "$LIBDIR/tapeflow.so.new" && $SUDO mv "$LIBDIR/tapeflow.so.new" "$LIBDIR/tapeflow.so"
    $SUDO cp "$STASH"/tapeflow.control "$STASH"/tapeflow--*.sql "$EXTDIR/"
    ;;
  *) echo "usage: $0 install|restore" >&2; exit 2 ;;
esac
