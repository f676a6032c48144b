#!/usr/bin/env bash
# README command (2): installs what is needed, builds, and runs the whole test suite: the release
# build (the one the README names) with warnings as errors and every test on it, then the same
# tests under AddressSanitizer + UBSan.
# Tests start their own throwaway PostgreSQL clusters and loopback servers; nothing else runs.
# Usage (as root on Debian 12): bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}

bash scripts/install-deps.sh

echo "== format check"
if command -v clang-format >/dev/null; then
  bad=$(git ls-files '*.c' '*.cpp' '*.h' '*.hpp' | xargs clang-format --dry-run -Werror 2>&1 | grep -c "error:" || true)
  if [ "$bad" != "0" ]; then
    git ls-files '*.c' '*.cpp' '*.h' '*.hpp' | xargs clang-format --dry-run -Werror 2>&1 | head -20
    echo "clang-format: $bad formatting problems"; exit 1
  fi
fi

# Line tables only (-g1) for the sanitizer build: enough for stack traces, much faster to build.
FLAGS=(-G Ninja -DJR_PLUGINS=ALL -DCMAKE_C_FLAGS_DEBUG=-g1 -DCMAKE_CXX_FLAGS_DEBUG=-g1)
# Tests mostly wait (on PostgreSQL, servers, deadlines): a few at a time keep 2 cores busy.
CTEST_JOBS=${CTEST_JOBS:-4}
start=$(date +%s)

# 1. The release preset, the build the README's quick start and the demo use, built whole with
# -Werror at -O2 (GCC warns there about things -O0 does not see: array bounds,
# maybe-uninitialized). The whole suite runs on it, sandbox included.
echo "== build (release preset: RelWithDebInfo -O2, -Werror)"
cmake --preset release -G Ninja -DJR_PLUGINS=ALL >/dev/null
cmake --build --preset release -j "$JOBS"
echo "   built in $(( $(date +%s) - start )) s"

# 2. The sanitizer build compiles at the lowest priority while the release tests run (they
# spend most of their time waiting, so the cores would idle otherwise).
mkdir -p build
asan_log=build/asan-build.log
# In a session of its own (setsid), so a failure below stops the whole build (cmake, ninja and
# every compiler) by its process group; killing the subshell alone left ninja compiling.
FLAGS_TEXT="${FLAGS[*]}" JOBS="$JOBS" ASAN_LOG="$asan_log" setsid bash -c '
  nice -n 19 cmake --preset asan $FLAGS_TEXT >"$ASAN_LOG" 2>&1 &&
    nice -n 19 cmake --build --preset asan -j "$JOBS" >>"$ASAN_LOG" 2>&1
  echo $? >build/asan-build.rc' &
asan_pid=$!

echo "== tests (release; the asan build compiles meanwhile at nice 19)"
rc=0
# The browser test's screenshots (tests/ui): in CI into docs/ui, the README's pictures, kept as
# the run's artefacts; elsewhere into the build tree, so a local run leaves the checkout as it was.
# JR_UI_SCREENSHOTS set by the caller wins (a path relative to the repository).
if [ -n "${CI:-}" ]; then export JR_UI_SCREENSHOTS=${JR_UI_SCREENSHOTS:-docs/ui}; fi
# Each test runs once, in the pass its subject needs. Here: everything but the tests labelled
# "inprocess", whose runners run plugins in-process: the shipped plugins' suites' in-process runs
# (their sandboxed runs, NAME_sandboxed, are here) and the suites of host logic that does not
# depend on where plugin code runs (store, CLI contract, HTTP, job model, flow control). The
# sanitizer pass below runs those under ASan, where they find more than at -O2.
ctest --preset release -j "$CTEST_JOBS" --timeout 900 -LE '^inprocess$' || rc=$?
echo "   tests done at $(( $(date +%s) - start )) s"
if [ "$rc" != "0" ]; then
  kill -- -"$asan_pid" 2>/dev/null || true
  exit "$rc"
fi

# The Debian packages of the release build, installed into a scratch root (postinst makes the
# users there), and a job run from the installed files (issue 20).
echo "== Debian package (build, install into a scratch root, run a job)"
bash scripts/deb-test.sh $(bash scripts/build-deb.sh build/release build/release/deb)

echo "== build (asan preset: ASan + UBSan, -Werror)"
wait "$asan_pid" || true
if [ "$(cat build/asan-build.rc 2>/dev/null)" != "0" ]; then
  grep -E "error|FAILED" "$asan_log" | head -40
  echo "asan build failed (log: $asan_log)"; exit 1
fi
echo "   built at $(( $(date +%s) - start )) s"

# 3. The sanitizer run repeats every test but those whose subject is the sandbox (ctest label
# "sandbox": test_sandbox, test_sandbox_e2e, the red-team, confinement, network-guard, exec and
# remote-database suites, every *_sandboxed variant): here plugins run in-process
# (RUNNER_ISOLATION=none) so ASan sees their code, and a hostile plugin in-process is no test of
# the sandbox. ASan also installs its own SIGSEGV handler and maps terabytes of shadow memory,
# so a crash signal or an address-space limit cannot be observed the way the sandbox classifies
# them, and LeakSanitizer's exit-time tracer is what the seccomp filter forbids. They ran on the
# release build above. The browser test (label "browser") ran there too; the dashboard's server
# code runs under ASan in test_ops_ui.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/lsan.supp:print_suppressions=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export RUNNER_ISOLATION=none

echo "== tests (asan)"
ctest --preset asan -j "$CTEST_JOBS" --timeout 1200 -LE '^(sandbox|browser)$'
