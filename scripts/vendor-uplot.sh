#!/usr/bin/env bash
# Re-vendors uPlot for the web console (docs/console.md): fetches the tarball of the version
# pinned in console/package-lock.json with `npm pack`, checks it against the lockfile's
# integrity (sha512), keeps it as console/vendor/uplot-VERSION.tgz and copies out the files the
# console serves. Only needed to change uPlot's version: edit console/package.json, run
# `npm install --package-lock-only --ignore-scripts` in console/, then this script. The test
# `http::console::tests::vendored_uplot_matches_npm_tarball` checks the result offline.
set -euo pipefail
cd "$(dirname "$0")/../console"

version=$(node -p 'require("./package-lock.json").packages["node_modules/uplot"].version')
integrity=$(node -p 'require("./package-lock.json").packages["node_modules/uplot"].integrity')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

(cd "$work" && npm pack --silent "uplot@$version" >/dev/null)
tgz="$work/uplot-$version.tgz"
got="sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)"
if [ "$got" != "$integrity" ]; then
  echo "error: uplot-$version.tgz is $got, the lockfile says $integrity" >&2
  exit 1
fi
rm -f vendor/uplot-*.tgz
cp "$tgz" vendor/
tar -xzf "$tgz" -C "$work" package/dist/uPlot.esm.js package/dist/uPlot.min.css package/LICENSE
cp "$work/package/dist/uPlot.esm.js" "$work/package/dist/uPlot.min.css" vendor/
cp "$work/package/LICENSE" vendor/uPlot.LICENSE
echo "vendored uPlot $version into console/vendor/"
