#!/usr/bin/env bash
# Installs what building, running and testing Tapeflow needs on Debian bookworm:
# PostgreSQL 15 with server headers, libclang for pgrx, chromium for browser tests,
# cargo-pgrx 0.18.0, and the web app's npm packages. Idempotent: each step is skipped
# when its result is already present.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi

APT_PACKAGES=(postgresql-15 postgresql-server-dev-15 libclang-dev clang pkg-config libssl-dev
  sudo chromium make curl)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "==> installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! command -v npm >/dev/null; then
  echo "==> installing Debian packages: nodejs npm"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nodejs npm
fi

PGRX_VERSION=0.18.0
if ! cargo pgrx --version 2>/dev/null | grep -q "$PGRX_VERSION"; then
  echo "==> installing cargo-pgrx $PGRX_VERSION"
  cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
fi

PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
if ! grep -qs "pg15" "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
  echo "==> cargo pgrx init (system PostgreSQL 15)"
  cargo pgrx init --pg15 "$PG_CONFIG"
fi

if [ -f web/package.json ] && [ ! -d web/node_modules/lightweight-charts ]; then
  echo "==> installing npm packages"
  (cd web && npm ci --no-audit --no-fund)
fi
