#!/usr/bin/env bash
# Renders docs/scaling.svg (bench/scale/plot.py) as docs/scaling.png with Debian's headless
# chromium (scripts/install-deps.sh installs it): the same picture for viewers without SVG.
# Usage: bash bench/scale/png.sh [in.svg] [out.png]
set -euo pipefail
cd "$(dirname "$0")/../.."
IN=${1:-docs/scaling.svg}
OUT=${2:-docs/scaling.png}
W=$(sed -n 's/^<svg[^>]* width="\([0-9]*\)".*/\1/p' "$IN" | head -1)
H=$(sed -n 's/^<svg[^>]* height="\([0-9]*\)".*/\1/p' "$IN" | head -1)
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
timeout 60 chromium --headless --no-sandbox --disable-gpu --hide-scrollbars \
  --user-data-dir="$profile" --window-size="${W:-720},${H:-420}" \
  --screenshot="$PWD/$OUT" "file://$PWD/$IN" >/dev/null 2>&1
echo "wrote $OUT"
