#!/bin/sh
# Run the browser tests against the mock server (no database needed):
# start the mock on a free port, run `node --test browser-test/`, stop it.
set -eu
cd "$(dirname "$0")/.."

log=$(mktemp)
node browser-test/mock-server.mjs >"$log" 2>&1 &
mock=$!
trap 'kill "$mock" 2>/dev/null || true; rm -f "$log"' EXIT INT TERM

url=
for _ in $(seq 1 100); do
  url=$(sed -n 's/^mock listening on //p' "$log")
  [ -n "$url" ] && break
  kill -0 "$mock" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$url" ]; then
  echo "mock server did not start:" >&2
  cat "$log" >&2
  exit 1
fi

TAPEFLOW_WEB_URL="$url" node --test browser-test/
