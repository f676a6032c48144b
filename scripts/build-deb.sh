#!/usr/bin/env bash
# Builds the Debian packages of jobrunner from a configured and built CMake tree (dpkg-deb; no
# debhelper needed):
#   jobrunner_<version>_<arch>.deb      runner, jr-worker, the shipped plugins in
#                                       /usr/lib/jobrunner/plugins, the exec plugin's Python
#                                       SDK in /usr/lib/jobrunner/python, the systemd template
#                                       jobrunner@.service, /etc/jobrunner/{common.env,runner.toml}
#                                       and a postinst that creates the system user `jobrunner`
#                                       and one user per shipped plugin (jr-<plugin>)
#   jobrunner-dev_<version>_<arch>.deb  the plugin SDK: headers and the CMake package
#                                       (find_package(JobRunnerSDK))
# Usage: bash scripts/build-deb.sh [BUILD_DIR (default build/release)] [OUT_DIR (default BUILD_DIR/deb)]
# Prints the paths of the two packages.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$PWD
BUILD=${1:-build/release}
OUT=${2:-$BUILD/deb}
[ -x "$BUILD/runner" ] || { echo "build-deb: $BUILD/runner not found: build first" >&2; exit 1; }
VERSION=$(sed -n 's/^project(jobrunner VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
ARCH=$(dpkg --print-architecture)
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$OUT"

# Everything `cmake --install` lays out, under /usr.
DESTDIR="$STAGE/all" cmake --install "$BUILD" --prefix /usr >/dev/null

# ---- jobrunner ----
P="$STAGE/jobrunner"
mkdir -p "$P/DEBIAN" "$P/usr/bin" "$P/usr/lib/jobrunner" "$P/lib/systemd/system" \
  "$P/etc/jobrunner" "$P/usr/share/doc/jobrunner/examples"
cp -a "$STAGE/all/usr/bin/runner" "$STAGE/all/usr/bin/jr-worker" "$P/usr/bin/"
cp -a "$STAGE/all/usr/lib/jobrunner/plugins" "$P/usr/lib/jobrunner/"
# The Python handler SDK of the exec plugin (docs/exec.md), when that plugin was built.
[ -d "$STAGE/all/usr/lib/jobrunner/python" ] && cp -a "$STAGE/all/usr/lib/jobrunner/python" "$P/usr/lib/jobrunner/"
install -m 0644 deploy/systemd/jobrunner@.service "$P/lib/systemd/system/"
install -m 0600 deploy/systemd/common.env "$P/etc/jobrunner/common.env"
install -m 0644 deploy/systemd/env/*.env deploy/systemd/config/*.toml "$P/usr/share/doc/jobrunner/examples/"
if [ -d sdk/python/examples ]; then
  mkdir -p "$P/usr/share/doc/jobrunner/examples/python"
  install -m 0644 sdk/python/examples/* "$P/usr/share/doc/jobrunner/examples/python/"
fi
PLUGINS=$(for f in "$P"/usr/lib/jobrunner/plugins/libjr_*.so; do
  basename "$f" .so | sed 's/^libjr_//'; done | sort | tr '\n' ' ')
{
  echo "# /etc/jobrunner/runner.toml: read by every jobrunner@ instance (RUNNER_CONFIG in"
  echo "# common.env). Each shipped plugin's workers run as its own system user (made by the"
  echo "# package's postinst) when the runner runs as root; see docs/sandbox.md, \"Users\"."
  for p in $PLUGINS; do
    printf '\n[plugins.%s.sandbox]\nuser = "jr-%s"\n' "$p" "$p"
  done
} >"$P/etc/jobrunner/runner.toml"
chmod 0644 "$P/etc/jobrunner/runner.toml"
grep -q '^RUNNER_CONFIG=' "$P/etc/jobrunner/common.env" ||
  echo "RUNNER_CONFIG=/etc/jobrunner/runner.toml" >>"$P/etc/jobrunner/common.env"
[ -f docs/sandbox.md ] && install -m 0644 docs/sandbox.md "$P/usr/share/doc/jobrunner/"
printf '/etc/jobrunner/common.env\n/etc/jobrunner/runner.toml\n' >"$P/DEBIAN/conffiles"

# Shared-library dependencies of the binaries and plugins (dpkg-shlibdeps wants a debian/control).
SHL=$(mktemp -d)
mkdir -p "$SHL/debian"
printf 'Source: jobrunner\n\nPackage: jobrunner\nArchitecture: any\n' >"$SHL/debian/control"
DEPS=$(cd "$SHL" && dpkg-shlibdeps -O "$P/usr/bin/runner" "$P/usr/bin/jr-worker" \
  "$P"/usr/lib/jobrunner/plugins/*.so 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
rm -rf "$SHL"
SIZE=$(du -sk "$P" | cut -f1)
cat >"$P/DEBIAN/control" <<EOF
Package: jobrunner
Version: $VERSION
Architecture: $ARCH
Maintainer: jobrunner maintainers <jobrunner@localhost>
Installed-Size: $SIZE
Depends: ${DEPS:+$DEPS, }passwd
Recommends: postgresql
Section: admin
Priority: optional
Description: background-job runner on PostgreSQL with sandboxed plugins
 One runner process per job type claims jobs from PostgreSQL queues and runs them
 through handler plugins in confined worker processes. Includes the shipped plugins
 (/usr/lib/jobrunner/plugins) and the systemd template jobrunner@.service.
EOF
install -m 0755 deploy/debian/postinst "$P/DEBIAN/postinst"
sed -i "s/^PLUGINS=.*/PLUGINS=\"$PLUGINS\"/" "$P/DEBIAN/postinst"

# ---- jobrunner-dev ----
D="$STAGE/jobrunner-dev"
mkdir -p "$D/DEBIAN" "$D/usr/lib" "$D/usr/share/doc/jobrunner-dev"
cp -a "$STAGE/all/usr/include" "$D/usr/"
cp -a "$STAGE/all/usr/lib/cmake" "$D/usr/lib/"
[ -f "$STAGE/all/usr/share/doc/jobrunner/writing-a-plugin.md" ] &&
  cp "$STAGE/all/usr/share/doc/jobrunner/writing-a-plugin.md" "$D/usr/share/doc/jobrunner-dev/"
cat >"$D/DEBIAN/control" <<EOF
Package: jobrunner-dev
Version: $VERSION
Architecture: $ARCH
Maintainer: jobrunner maintainers <jobrunner@localhost>
Installed-Size: $(du -sk "$D" | cut -f1)
Depends: nlohmann-json3-dev, cmake
Recommends: jobrunner (= $VERSION)
Section: libdevel
Priority: optional
Description: jobrunner plugin SDK
 Headers (jobrunner/abi.h, jobrunner/plugin.hpp) and the CMake package JobRunnerSDK to
 build jobrunner handler plugins out of tree.
EOF

dpkg-deb --root-owner-group --build "$P" "$OUT/jobrunner_${VERSION}_${ARCH}.deb" >/dev/null
dpkg-deb --root-owner-group --build "$D" "$OUT/jobrunner-dev_${VERSION}_${ARCH}.deb" >/dev/null
echo "$OUT/jobrunner_${VERSION}_${ARCH}.deb"
echo "$OUT/jobrunner-dev_${VERSION}_${ARCH}.deb"
