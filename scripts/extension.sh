#!/usr/bin/env bash
# Installs the tapeflow extension into the system's PostgreSQL 15, keeping a copy of the
# installed files so they can be put back after `cargo pgrx test` (which installs its own
# test build into the same directories).
#   extension.sh install   build (release) and install
#   extension.sh restore   put the release build back (after cargo pgrx test)
# Besides the build's own install script, the extension directory gets pg_extension/sql/: the
# upgrade scripts (tapeflow--<old>--<new>.sql, which pgrx also copies) and the install scripts
# of earlier releases (tapeflow--<old>.sql), so that a database can be created at an earlier
# version and upgraded, as the upgrade tests do.
# Files are replaced by rename, never overwritten in place: a running server maps the library,
# and overwriting a mapped file crashes it. The project cluster is restarted to load the new one.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
HOME_DIR="${TAPEFLOW_HOME:-$ROOT/.tapeflow}"
PG_CONFIG="${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}"
STASH="$HOME_DIR/extension-release"
LIBDIR="$("$PG_CONFIG" --pkglibdir)"
EXTDIR="$("$PG_CONFIG" --sharedir)/extension"
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi

put() { # put SRC DIR: atomic replace of DIR/basename(SRC)
  local name; name="$(basename "$1")"
  $SUDO cp "$1" "$2/.$name.new" && $SUDO mv -f "$2/.$name.new" "$2/$name"
}

install_stash() {
  put "$STASH/tapeflow.so" "$LIBDIR"
  for f in "$STASH"/tapeflow.control "$STASH"/tapeflow--*.sql; do put "$f" "$EXTDIR"; done
  if bash "$ROOT/scripts/cluster.sh" status; then bash "$ROOT/scripts/cluster.sh" restart >/dev/null; fi
}

case "${1:-}" in
  install)
    PKG="${CARGO_TARGET_DIR:-$ROOT/target}/release/tapeflow-pg15"
    # Fresh, so no script of an earlier build is taken for this one's.
    rm -rf "$PKG"
    (cd "$ROOT/pg_extension" && cargo pgrx package --pg-config "$PG_CONFIG")
    rm -rf "$STASH"; mkdir -p "$STASH"
    cp "$(find "$PKG" -name tapeflow.so)" "$STASH/"
    find "$PKG" \( -name 'tapeflow.control' -o -name 'tapeflow--*.sql' \) -exec cp {} "$STASH/" \;
    for f in "$ROOT"/pg_extension/sql/tapeflow--*.sql; do
      # Never replace the build's own script with a file of the same name.
      [ -e "$STASH/$(basename "$f")" ] || cp "$f" "$STASH/"
    done
    install_stash
    ;;
  restore)
    [ -f "$STASH/tapeflow.so" ] || { echo "no stashed extension build; run make extension" >&2; exit 1; }
    install_stash
    ;;
  *) echo "usage: $0 install|restore" >&2; exit 2 ;;
esac
