#!/usr/bin/env bash
# Installs the Node producer example's driver (examples/producers/node): pg (node-postgres) at the
# version pinned in its package.json and package-lock.json, into examples/producers/node/
# node_modules (gitignored). The only step that needs the network (the npm registry); the test
# that runs the example (tests/host/producers_test.cpp) runs offline. The Python and psql
# examples use Debian's python3-psycopg2 and postgresql-client (scripts/install-deps.sh).
# Idempotent.
set -euo pipefail
cd "$(dirname "$0")/../examples/producers/node"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "install-producer-deps: node and npm are needed (Node 18 or later: apt-get install nodejs npm)" >&2
  exit 1
fi
want=$(node -p "require('./package.json').dependencies.pg")
have=$(node -p "try { require('./node_modules/pg/package.json').version } catch (e) { '' }")
if [ "$have" = "$want" ]; then
  echo "install-producer-deps: pg $have already installed"
  exit 0
fi
echo "install-producer-deps: installing pg $want into examples/producers/node/node_modules"
npm ci --no-audit --no-fund --loglevel=error
