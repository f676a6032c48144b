#!/usr/bin/env bash
# clang-tidy (the checks in .clang-tidy) over the host's sources in the layers DIRS, with a
# build's compile commands (default build/release; configure it first). clang cannot read GCC's
# precompiled headers (the layers' PCH, host/CMakeLists.txt), so it gets the commands without
# them, and each file is also checked to include what it uses.
# Usage: bash scripts/clang-tidy.sh [DIRS]     DIRS e.g. 'engine|sandbox' (default: every layer)
set -euo pipefail
cd "$(dirname "$0")/.."
DIRS=${1:-core|plugin|store|engine|sandbox|ops|cli}
BUILD=${BUILD:-build/release}
[ -f "$BUILD/compile_commands.json" ] || { echo "no $BUILD/compile_commands.json: configure $BUILD first" >&2; exit 2; }
command -v run-clang-tidy >/dev/null || { echo "run-clang-tidy not found (Debian package clang-tidy)" >&2; exit 2; }
mkdir -p build/tidy
python3 - "$BUILD/compile_commands.json" build/tidy/compile_commands.json <<'PY'
import json, re, sys
commands = json.load(open(sys.argv[1]))
for c in commands:
    c["command"] = re.sub(r" -Winvalid-pch| -include \S*cmake_pch\.hxx", "", c["command"])
json.dump(commands, open(sys.argv[2], "w"))
PY
exec run-clang-tidy -p build/tidy -j "${JOBS:-$(nproc)}" -quiet \
  -header-filter="^$PWD/host/($DIRS)/" "^$PWD/host/($DIRS)/.*\.cpp\$"
