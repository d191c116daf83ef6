#!/usr/bin/env bash
# The whole test suite, installing what it needs. Usage: scripts/test.sh [extra nextest args]
set -euo pipefail
cd "$(dirname "$0")/.."

# Python clients for the interoperability tests (influxdb, influxdb-client, paho-mqtt), in a
# project-local virtualenv so the system Python stays untouched.
if command -v python3 >/dev/null 2>&1; then
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
  fi
  if ! .venv/bin/python -c 'import influxdb, influxdb_client, paho.mqtt' 2>/dev/null; then
    .venv/bin/pip install --quiet --disable-pip-version-check -r tests/python-requirements.txt
  fi
  export STRATA_TEST_PYTHON="$PWD/.venv/bin/python"
fi

# Third-party MQTT clients for the interoperability tests (tests/it/mqtt_interop.rs).
if ! command -v mosquitto_pub >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  apt-get install -y mosquitto mosquitto-clients >/dev/null 2>&1 || echo "warning: cannot install mosquitto-clients; MQTT interop tests will be skipped" >&2
fi

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
