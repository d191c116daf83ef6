#!/usr/bin/env bash
# The whole test suite, installing what it needs. Usage: scripts/test.sh [extra nextest args]
set -euo pipefail
cd "$(dirname "$0")/.."

# Third-party clients for the interoperability tests (tests/it/{http,mqtt}_interop.rs,
# query_http.rs, mqtt5.rs). Without them those tests print SKIPPED and pass, except under
# CI=true, where a missing client fails its test: so under CI=true this script must get them or
# stop here, naming what is missing (docs/testing.md).
ci=false
case "${CI:-}" in true | 1) ci=true ;; esac
need() { # need <what> <how to install>: fail under CI=true, warn otherwise
  if $ci; then
    echo "error: missing $1, which CI=true requires; install: $2" >&2
    exit 1
  fi
  echo "warning: missing $1 ($2); the interop tests that need it will be SKIPPED" >&2
}

# Python clients (influxdb, influxdb-client, paho-mqtt), pinned in tests/python-requirements.txt,
# in a project-local virtualenv so the system Python stays untouched.
pyreq="python3 -m venv .venv && .venv/bin/pip install -r tests/python-requirements.txt"
if command -v python3 >/dev/null 2>&1; then
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv || need "a Python virtualenv (.venv)" "apt-get install python3-venv"
  fi
  if [ -x .venv/bin/python ] && ! .venv/bin/python -c 'import influxdb, influxdb_client, paho.mqtt' 2>/dev/null; then
    .venv/bin/pip install --quiet --disable-pip-version-check -r tests/python-requirements.txt ||
      need "the Python clients of tests/python-requirements.txt" "$pyreq"
  fi
  if [ -x .venv/bin/python ] && .venv/bin/python -c 'import influxdb, influxdb_client, paho.mqtt' 2>/dev/null; then
    export STRATA_TEST_PYTHON="$PWD/.venv/bin/python"
  fi
else
  need "python3" "apt-get install python3 python3-venv, then $pyreq"
fi

# Mosquitto, the broker (bridge tests) and mosquitto_pub (a third-party publisher).
have_mosquitto() {
  command -v mosquitto_pub >/dev/null 2>&1 && { [ -x /usr/sbin/mosquitto ] || [ -x /usr/bin/mosquitto ]; }
}
# Chromium (headless) drives the web console's browser tests (tests/it/console.rs).
have_chromium() { command -v chromium >/dev/null 2>&1; }
# InfluxDB 1.x, the reference of the differential InfluxQL test (tests/it/influx_compat.rs).
have_influxd() { [ -x /usr/bin/influxd ]; }
if { ! have_mosquitto || ! have_chromium || ! have_influxd; } && command -v apt-get >/dev/null 2>&1; then
  sudo=""
  if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then sudo="sudo -n"; fi
  # The package lists may be missing (fresh container) or stale (404 on a superseded version).
  $sudo apt-get install -y -q mosquitto mosquitto-clients chromium influxdb >/dev/null 2>&1 ||
    { $sudo apt-get update -q >/dev/null 2>&1 && $sudo apt-get install -y -q mosquitto mosquitto-clients chromium influxdb >/dev/null 2>&1; } ||
    true
fi
have_mosquitto || need "mosquitto and mosquitto_pub" "apt-get install mosquitto mosquitto-clients"
have_chromium || need "chromium" "apt-get install chromium"
have_influxd || need "influxd" "apt-get install influxdb"

# Build the binaries and every test binary in one go; end-to-end tests start the real `strata`
# binary. Building bins together with tests gives them the same feature set as the test build
# (dev-dependencies switch features on), so nextest reuses every artifact: a bare
# `cargo build --bins` compiled a second copy of half the dependency tree and doubled the disk
# CI needs (docs/testing.md).
cargo build --workspace --bins --tests --examples

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --profile ci "$@"
else
  cargo test --workspace "$@"
fi
# Doc tests (nextest does not run them).
cargo test --workspace --doc --quiet
