#!/usr/bin/env bash
# CI check of the plugin SDK, end to end, the way a plugin author uses it:
#   1. installs an existing build (default build/dev) to a temporary prefix (cmake --install);
#   2. scaffolds a plugin with `runner new-plugin` (and checks that bad input is refused);
#   3. builds it out of tree against the installed JobRunnerSDK package and runs its own test;
#   4. checks the built file exports only jr_plugin_entry_v1 and is bound at load time (-z now);
#   5. deploys it into a plugins directory of its own, starts a throwaway PostgreSQL with
#      `runner db start --data-dir TMP`, enqueues jobs, serves them with the installed runner in
#      the background and polls `runner status ID --json` until each job is finished.
# Everything it started is stopped and the temporary directory removed on exit (KEEP=1 keeps it).
# Exits non-zero on any failure. (No `cmd | grep -q` under pipefail: grep's early exit would
# make cmd die of SIGPIPE and fail the pipeline; output is captured first.)
#
# Usage: scripts/sdk-check.sh [BUILD_DIR]   (default: build/dev of this checkout; the build must
#        be complete: runner, jr-worker, plugins)
# Env:   CMAKE, CTEST (tools to use), KEEP=1, JR_SDK_CHECK_TIMEOUT (seconds per job, default 90)
set -euo pipefail

BUILD=${1:-$(dirname "$0")/../build/dev}
CMAKE=${CMAKE:-cmake}
CTEST=${CTEST:-ctest}
TIMEOUT=${JR_SDK_CHECK_TIMEOUT:-90}
NAME=sdkcheck_hello

die() { echo "sdk-check: FAIL: $*" >&2; exit 1; }
step() { echo "== sdk-check: $*"; }

[ -d "$BUILD" ] || die "build directory $BUILD does not exist (configure and build it first)"
BUILD=$(cd "$BUILD" && pwd)
[ -x "$BUILD/runner" ] || die "$BUILD/runner is missing: build the project first"

# As root the managed cluster runs as the `postgres` user: every directory on the way to its
# data dir must be traversable by it, hence mode 755 (mktemp would create 700).
BASE=$(cd "${TMPDIR:-/tmp}" && pwd)
if [ "$(id -u)" = 0 ]; then
  d=$BASE
  while [ "$d" != / ]; do
    [ $(($(stat -c %a "$d") % 2)) = 1 ] ||
      die "$d is not traversable by other users, which the managed PostgreSQL (user postgres) needs: set TMPDIR=/tmp"
    d=$(dirname "$d")
  done
fi
WORK=$(mktemp -d "$BASE/jr-sdk-check.XXXXXX")
chmod 755 "$WORK"
PREFIX="$WORK/prefix"
RUNNER="$PREFIX/bin/runner"
DATA="$WORK/db"
RUNNER_PID=""
DB_STARTED=0

cleanup() {
  local rc=$?
  if [ -n "$RUNNER_PID" ] && kill -0 "$RUNNER_PID" 2>/dev/null; then
    kill -TERM "$RUNNER_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$RUNNER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$RUNNER_PID" 2>/dev/null || true
    wait "$RUNNER_PID" 2>/dev/null || true
  fi
  if [ "$DB_STARTED" = 1 ]; then "$RUNNER" db stop --data-dir "$DATA" >/dev/null 2>&1 || true; fi
  if [ $rc -ne 0 ] && [ -f "$WORK/runner.log" ]; then
    echo "---- runner log (last 40 lines)" >&2
    tail -n 40 "$WORK/runner.log" >&2 || true
  fi
  if [ "${KEEP:-0}" = 1 ]; then echo "sdk-check: kept $WORK"; else rm -rf "$WORK"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "install $BUILD to $PREFIX"
"$CMAKE" --install "$BUILD" --prefix "$PREFIX" >"$WORK/install.log" ||
  { cat "$WORK/install.log" >&2; die "cmake --install failed"; }
for f in bin/runner include/jobrunner/abi.h include/jobrunner/plugin.hpp \
  include/jobrunner/testing.hpp lib/cmake/JobRunnerSDK/JobRunnerSDKConfig.cmake \
  lib/cmake/JobRunnerSDK/JobRunnerSDKConfigVersion.cmake lib/cmake/JobRunnerSDK/exports.map; do
  [ -e "$PREFIX/$f" ] || die "the install lacks $f"
done
ls "$PREFIX"/lib/jobrunner/plugins/*.so >/dev/null 2>&1 || die "the install has no plugins"

step "scaffold with runner new-plugin"
set +e
"$RUNNER" new-plugin "Not-Valid" "$WORK/bad" >/dev/null 2>"$WORK/err"; rc=$?
set -e
[ $rc -eq 2 ] || die "an invalid name exited $rc, expected 2"
grep -q "invalid plugin name" "$WORK/err" || die "no clear message for an invalid name"
mkdir -p "$WORK/nonempty" && touch "$WORK/nonempty/keep"
set +e
"$RUNNER" new-plugin "$NAME" "$WORK/nonempty" >/dev/null 2>"$WORK/err"; rc=$?
set -e
[ $rc -eq 2 ] || die "a non-empty DIR exited $rc, expected 2"
grep -q "not empty" "$WORK/err" || die "no clear message for a non-empty DIR"
"$RUNNER" new-plugin "$NAME" "$WORK/src"

step "build out of tree against the installed package"
GEN=()
if command -v ninja >/dev/null; then GEN=(-G Ninja); fi
"$CMAKE" -S "$WORK/src" -B "$WORK/src/build" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$PREFIX" -DCMAKE_COMPILE_WARNING_AS_ERROR=ON >"$WORK/configure.log" ||
  { cat "$WORK/configure.log" >&2; die "configuring the scaffolded plugin failed"; }
"$CMAKE" --build "$WORK/src/build" || die "building the scaffolded plugin failed"
SO="$WORK/src/build/libjr_$NAME.so"
[ -f "$SO" ] || die "$SO was not built"
[ -x "$WORK/src/build/${NAME}_test" ] || die "the plugin's test was not built (GoogleTest?)"

step "run the plugin's own test"
"$CTEST" --test-dir "$WORK/src/build" --output-on-failure || die "the plugin's test failed"

step "check the exported symbols and load-time binding"
exported=$(nm -D --defined-only "$SO" | awk '{print $3}' | sort | tr '\n' ' ')
[ "$exported" = "jr_plugin_entry_v1 " ] || die "exports '$exported', expected only jr_plugin_entry_v1"
dynamic=$(readelf -d "$SO")
grep -q "BIND_NOW\|Flags: NOW" <<<"$dynamic" || die "not linked with -z now"

step "deploy and run through the real runner on PostgreSQL"
mkdir -m 755 "$WORK/plugins"
install -m 644 "$SO" "$WORK/plugins/"
listing=$("$RUNNER" plugins ls "$WORK/plugins") || die "runner plugins ls failed"
grep -q "$NAME" <<<"$listing" || die "runner plugins ls does not list it"
mkdir -m 755 "$DATA"
DB_STARTED=1
"$RUNNER" db start --data-dir "$DATA" >/dev/null || die "runner db start failed"
DATABASE_URL=$("$RUNNER" db url --data-dir "$DATA")
export DATABASE_URL

# Polls `runner status ID --json` until the job reaches a final state; prints the JSON.
wait_final() {
  local id=$1 deadline=$((SECONDS + TIMEOUT)) doc state
  while :; do
    doc=$("$RUNNER" status "$id" --json) || die "runner status $id failed"
    state=$(printf '%s\n' "$doc" | sed -n 's/^  "state": "\([a-z]*\)".*/\1/p')
    case "$state" in
      completed | discarded | cancelled) printf '%s\n' "$doc"; return 0 ;;
    esac
    kill -0 "$RUNNER_PID" 2>/dev/null || die "the runner exited while job $id was $state"
    [ $SECONDS -lt $deadline ] || die "job $id still '$state' after ${TIMEOUT}s"
    sleep 0.2
  done
}

# Serves the plugin with `--isolation MODE`, runs a good and a bad job, stops the runner.
serve_and_check() {
  local mode=$1 loaded=$2 ok_id bad_id doc rc
  step "serve with --isolation $mode"
  : >"$WORK/runner.log"
  # Start serving first: a runner registers its kinds' defaults (default queue, timeout) in the
  # database when it starts, and `runner enqueue` applies them from there.
  "$RUNNER" --plugins "$WORK/plugins" --queues "$NAME" --concurrency 2 --isolation "$mode" \
    >"$WORK/runner.log" 2>&1 &
  RUNNER_PID=$!
  local deadline=$((SECONDS + 60))
  until grep -q '"msg":"runner started"' "$WORK/runner.log"; do
    kill -0 "$RUNNER_PID" 2>/dev/null || die "the runner exited at start-up"
    [ $SECONDS -lt $deadline ] || die "the runner did not start within 60s"
    sleep 0.1
  done
  grep -q "\"msg\":\"$loaded\"" "$WORK/runner.log" || die "no '$loaded' line in the runner log"

  ok_id=$("$RUNNER" enqueue "$NAME" --payload '{"name": "Ada"}')
  bad_id=$("$RUNNER" enqueue "$NAME" --payload '{"nom": "Ada"}')
  [[ "$ok_id" =~ ^[0-9]+$ && "$bad_id" =~ ^[0-9]+$ ]] || die "enqueue printed '$ok_id' '$bad_id'"

  doc=$(wait_final "$ok_id")
  grep -q '^  "state": "completed"' <<<"$doc" || die "job $ok_id did not complete: $doc"
  grep -q '"greeting": "hello, Ada"' <<<"$doc" || die "job $ok_id has no greeting: $doc"
  grep -q "^  \"queue\": \"$NAME\"" <<<"$doc" ||
    die "job $ok_id did not land in the plugin's default queue: $doc"
  doc=$(wait_final "$bad_id")
  grep -q '^  "state": "discarded"' <<<"$doc" ||
    die "job $bad_id (bad payload) was not dead-lettered: $doc"
  grep -q 'payload needs a string field' <<<"$doc" ||
    die "job $bad_id lacks the plugin's error message: $doc"

  kill -TERM "$RUNNER_PID"
  set +e
  wait "$RUNNER_PID"; rc=$?
  set -e
  RUNNER_PID=""
  [ $rc -eq 0 ] || die "the runner exited $rc on SIGTERM, expected 0"
}

# In sandboxed jr-worker processes (the plugin's manifest policy), then in-process (trusted).
serve_and_check sandbox "plugin loaded in the sandbox"
serve_and_check none "plugin loaded in-process"

step "OK: installed, scaffolded, built out of tree, tested, deployed and run"
