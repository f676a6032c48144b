#!/usr/bin/env bash
# README command (2): installs what is needed, builds, and runs the whole test suite: the normal
# build with warnings as errors, then the release build (every build the README names), then the
# same tests under AddressSanitizer + UBSan.
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

# Line tables only (-g1): enough for sanitizer stack traces, and much faster to build.
FLAGS=(-G Ninja -DJR_PLUGINS=ALL -DCMAKE_C_FLAGS_DEBUG=-g1 -DCMAKE_CXX_FLAGS_DEBUG=-g1)
start=$(date +%s)

echo "== build (dev preset: Debug, -Werror)"
cmake --preset dev "${FLAGS[@]}" >/dev/null
cmake --build --preset dev -j "$JOBS"
echo "   built in $(( $(date +%s) - start )) s"

echo "== tests (dev)"
ctest --preset dev -j 2 --timeout 900
echo "   tests done at $(( $(date +%s) - start )) s"

# The release preset (the README's quick start and the demo build it) with -Werror at -O2: GCC
# warns there about things -O0 does not see (array bounds, maybe-uninitialized). Built whole,
# after the dev tests and alone (2 cores: in parallel with the tests it would slow both).
echo "== build (release preset: RelWithDebInfo -O2, -Werror)"
rel_start=$(date +%s)
cmake --preset release -G Ninja -DJR_PLUGINS=ALL >/dev/null
cmake --build --preset release -j "$JOBS"
echo "   built in $(( $(date +%s) - rel_start )) s (at $(( $(date +%s) - start )) s)"

# The Debian packages of the release build, installed into a scratch root (postinst makes the
# users there), and a job run from the installed files (issue 20).
echo "== Debian package (build, install into a scratch root, run a job)"
bash scripts/deb-test.sh $(bash scripts/build-deb.sh build/release build/release/deb)

# The sanitizer run repeats every test but the sandbox ones: ASan installs its own SIGSEGV
# handler and maps terabytes of shadow memory, so a crash signal or an address-space limit
# cannot be observed the way the sandbox classifies them, and LeakSanitizer's exit-time tracer
# is exactly what the seccomp filter forbids. They run in the build above (test_sandbox,
# test_sandbox_e2e, and every *_sandboxed plugin suite); here runners and plugins run
# in-process, so ASan sees the plugins' code. test_remote_db checks the network guard of
# sandboxed workers (in-process plugins have none).
ASAN_SKIP='^test_sandbox(_e2e)?$|_sandboxed$|^test_remote_db$'
echo "== build (asan preset: ASan + UBSan, -Werror)"
cmake --preset asan "${FLAGS[@]}" >/dev/null
cmake --build --preset asan -j "$JOBS"
echo "   built at $(( $(date +%s) - start )) s"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/lsan.supp:print_suppressions=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export RUNNER_ISOLATION=none

echo "== tests (asan)"
ctest --preset asan -j 2 --timeout 1200 -E "$ASAN_SKIP"
