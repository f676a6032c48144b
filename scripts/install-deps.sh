#!/usr/bin/env bash
# Installs every Debian package jobrunner needs to build, test and run.
# Idempotent: packages already present are left alone; safe to run twice.
# Usage: scripts/install-deps.sh            (as root, or with sudo available)
set -euo pipefail

PKGS=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  clang clang-format clang-tidy libclang-rt-dev llvm
  libboost-dev libboost-filesystem-dev
  libpqxx-dev libpq-dev
  nlohmann-json3-dev libspdlog-dev libfmt-dev libtomlplusplus-dev
  libgtest-dev libgmock-dev
  libcli11-dev libcpp-httplib-dev
  libcurl4-openssl-dev libc-ares-dev libgumbo-dev libseccomp-dev libssl-dev
  postgresql postgresql-contrib postgresql-client
  python3-psycopg2
  pgbouncer
  dnsmasq-base
  procps psmisc curl
  systemd
  chromium
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# The dashboard's browser test (tests/ui) runs under Node.js and installs its driver with npm.
# Debian's nodejs and npm only when the commands are missing: a Node.js of another origin (one
# that bundles npm) stays, since Debian's npm package would conflict with it.
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)

# The dashboard's browser test drives chromium through puppeteer-core from npm (tests/ui).
install_ui_test_deps() { bash "$(dirname "$0")/install-ui-test-deps.sh"; }
# The Node producer example (examples/producers/node, tests/host/producers_test.cpp) uses pg.
install_producer_deps() { bash "$(dirname "$0")/install-producer-deps.sh"; }

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PKGS[@]} packages already installed"
  install_ui_test_deps
  install_producer_deps
  exit 0
fi

echo "install-deps: installing ${#missing[@]} packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# Installing the postgresql package must not leave a system cluster running that we do not use;
# policy-rc.d keeps the package scripts from starting services.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
install_ui_test_deps
install_producer_deps
echo "install-deps: done"
