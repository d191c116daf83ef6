#!/usr/bin/env bash
# Builds the Debian package of Strata from an already built `strata` binary.
#
#   packaging/build-deb.sh [BINARY] [OUT_DIR]
#
# BINARY defaults to target/release/strata (build it with `cargo build --release --bin strata`);
# OUT_DIR defaults to target/debian. Prints the path of the .deb it wrote. Needs only dpkg-deb,
# so the test suite can package the binary it already built instead of compiling a release
# build (or installing cargo-deb) for it. docs/packaging.md says what the package contains.
# STRATA_DEB_COMPRESSION picks dpkg-deb's compressor (default xz; the tests use none, since
# xz takes minutes over an unstripped debug binary on two busy cores).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${1:-$root/target/release/strata}"
out="${2:-$root/target/debian}"
[ -x "$bin" ] || { echo "error: $bin is not an executable: build it first (cargo build --release --bin strata)" >&2; exit 1; }
command -v dpkg-deb >/dev/null || { echo "error: dpkg-deb not found (apt-get install dpkg)" >&2; exit 1; }

version="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' "$root/Cargo.toml")"
[ -n "$version" ] || { echo "error: no version in [workspace.package] of Cargo.toml" >&2; exit 1; }
arch="$(dpkg --print-architecture)"

stage="$(mktemp -d)"
chmod 0755 "$stage"
trap 'rm -rf "$stage"' EXIT
install -D -m 0755 "$bin" "$stage/usr/bin/strata"
install -D -m 0644 "$root/packaging/strata.service" "$stage/lib/systemd/system/strata.service"
install -D -m 0640 "$root/packaging/strata.toml" "$stage/etc/strata/strata.toml"
install -D -m 0644 "$root/strata.example.toml" "$stage/usr/share/doc/strata/strata.example.toml"
install -D -m 0644 "$root/README.md" "$stage/usr/share/doc/strata/README.md"
install -d -m 0755 "$stage/DEBIAN"
for s in postinst prerm postrm; do install -m 0755 "$root/packaging/debian/$s" "$stage/DEBIAN/$s"; done
echo /etc/strata/strata.toml > "$stage/DEBIAN/conffiles"
size_kib="$(du -sk "$stage" | cut -f1)"
cat > "$stage/DEBIAN/control" <<CONTROL
Package: strata
Version: $version
Architecture: $arch
Maintainer: Strata developers <strata@localhost>
Installed-Size: $size_kib
Depends: libc6, adduser
Section: database
Priority: optional
Homepage: https://github.com/strata-db/strata
Description: time-series database for IoT telemetry
 Strata takes readings from devices over MQTT (3.1.1 and 5.0) and HTTP (InfluxDB line
 protocol, JSON), stores them durably in a columnar engine with a write-ahead log, and
 answers InfluxQL queries over HTTP. Runs as the systemd service strata.service.
CONTROL
mkdir -p "$out"
deb="$out/strata_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Z"${STRATA_DEB_COMPRESSION:-xz}" --build "$stage" "$deb" >/dev/null
echo "$deb"
