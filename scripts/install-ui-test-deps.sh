#!/usr/bin/env bash
# Installs the browser test's driver (tests/ui): puppeteer-core at the version pinned in
# tests/ui/package.json and package-lock.json, into tests/ui/node_modules (gitignored). It drives
# Debian's chromium (scripts/install-deps.sh installs it) and downloads no browser. The only step
# that needs the network (the npm registry); the test itself runs offline. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/../tests/ui"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "install-ui-test-deps: node and npm are needed (Node 18 or later: apt-get install nodejs npm)" >&2
  exit 1
fi
want=$(node -p "require('./package.json').dependencies['puppeteer-core']")
have=$(node -p "try { require('./node_modules/puppeteer-core/package.json').version } catch (e) { '' }")
if [ "$have" = "$want" ]; then
  echo "install-ui-test-deps: puppeteer-core $have already installed"
  exit 0
fi
echo "install-ui-test-deps: installing puppeteer-core $want into tests/ui/node_modules"
PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
