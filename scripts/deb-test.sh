#!/usr/bin/env bash
# Installs the Debian packages (scripts/build-deb.sh) into a scratch root and runs a job from the
# installed files: `dpkg --root SCRATCH --force-script-chrootless` runs the postinst outside a
# chroot with DPKG_ROOT=SCRATCH, so it creates the users in SCRATCH/etc/passwd (the host's own
# user database is not touched). Then the installed runner (SCRATCH/usr/bin/runner, its
# jr-worker beside it, the installed plugins) runs an echo job, sandboxed, on a throwaway managed
# PostgreSQL cluster. As root, on Debian 12.
# Usage: bash scripts/deb-test.sh jobrunner_*.deb jobrunner-dev_*.deb
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 PACKAGE.deb..." >&2; exit 2; }
ROOT=$(mktemp -d /tmp/jr-debroot-XXXXXX)
DATA=$(mktemp -d /tmp/jr-debdata-XXXXXX)
chmod 0755 "$DATA"  # the managed cluster runs as an unprivileged user
RUNNER_PID=
cleanup() {
  [ -n "$RUNNER_PID" ] && kill "$RUNNER_PID" 2>/dev/null && wait "$RUNNER_PID" 2>/dev/null
  RUNNER_DATA_DIR="$DATA" "$ROOT/usr/bin/runner" db stop >/dev/null 2>&1 || true
  rm -rf "$ROOT" "$DATA"
}
trap cleanup EXIT
fail() { echo "deb-test: $*" >&2; exit 1; }

# A scratch root with the base user database and an empty dpkg database.
mkdir -p "$ROOT/etc" "$ROOT/var/lib/dpkg/info" "$ROOT/var/lib/dpkg/updates"
touch "$ROOT/var/lib/dpkg/status" "$ROOT/var/lib/dpkg/available"
for f in passwd group shadow gshadow; do
  grep -E '^(root|daemon|nogroup|nobody):' "/etc/$f" >"$ROOT/etc/$f" || true
done
chmod 0640 "$ROOT/etc/shadow" "$ROOT/etc/gshadow"

# Dependencies are the host's (the scratch root has no packages): --force-depends.
# (The scratch root has no /usr/sbin/nologin: useradd warns about the users' shell.)
dpkg --root="$ROOT" --force-script-chrootless --force-depends --force-not-root \
  --log=/dev/null -i "$@" >"$DATA/dpkg.log" 2>&1 || { cat "$DATA/dpkg.log"; fail "dpkg -i failed"; }

echo "== installed files"
for f in usr/bin/runner usr/bin/jr-worker lib/systemd/system/jobrunner@.service \
  etc/jobrunner/common.env etc/jobrunner/runner.toml usr/lib/jobrunner/plugins/libjr_echo.so \
  usr/include/jobrunner/abi.h usr/lib/cmake/JobRunnerSDK/JobRunnerSDKConfig.cmake; do
  [ -e "$ROOT/$f" ] || fail "missing /$f"
done
[ "$(stat -c %a "$ROOT/etc/jobrunner/common.env")" = 600 ] || fail "common.env is not mode 0600"

echo "== users made by postinst"
users="jobrunner"
for so in "$ROOT"/usr/lib/jobrunner/plugins/libjr_*.so; do
  p=$(basename "$so" .so)
  users="$users jr-${p#libjr_}"
done
for u in $users; do
  grep -q "^$u:" "$ROOT/etc/passwd" || fail "postinst did not create user $u"
  grep -q "^$u:" "$ROOT/etc/group" || fail "postinst did not create group $u"
  echo "   $(grep "^$u:" "$ROOT/etc/passwd")"
done
# The host's user database is untouched.
! grep -q '^jr-echo:' /etc/passwd || echo "   (note: the host has its own jr-echo user)"

echo "== a job from the installed files"
export RUNNER_DATA_DIR="$DATA"
R="$ROOT/usr/bin/runner"
"$R" migrate >/dev/null
"$R" plugins check "$ROOT/usr/lib/jobrunner/plugins/libjr_echo.so" |
  grep -q '^approval   built-in' || fail "the installed echo plugin lost its built-in approval"
"$R" --plugins "$ROOT/usr/lib/jobrunner/plugins" --kinds echo \
  --concurrency 2 >"$DATA/runner.log" 2>&1 &
RUNNER_PID=$!
id=$("$R" enqueue echo --payload '{"hello":"deb"}')
state=
for _ in $(seq 1 300); do
  state=$("$R" status "$id" --json | grep -o '"state": *"[a-z_]*"' | head -1 | sed 's/.*"\([a-z_]*\)"$/\1/')
  [ "$state" = completed ] && break
  sleep 0.1
done
[ "$state" = completed ] || { cat "$DATA/runner.log"; fail "job $id is '$state', not completed"; }
grep '"plugin loaded in the sandbox"' "$DATA/runner.log" | grep -q '"plugin":"echo"' ||
  { cat "$DATA/runner.log"; fail "echo did not run sandboxed"; }
kill -TERM "$RUNNER_PID"
wait "$RUNNER_PID" || fail "the installed runner did not exit 0 on SIGTERM"
RUNNER_PID=
echo "   job $id completed by $R (sandboxed, jr-worker from $ROOT/usr/bin)"
echo "deb-test: ok"
