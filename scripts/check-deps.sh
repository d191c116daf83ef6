#!/usr/bin/env bash
# Fails when a Cargo.toml of the workspace (or fuzz/) declares a dependency its crate never uses.
# Installs cargo-machete on first use. Not run by .ci/run (docs/testing.md says why).
#
#   scripts/check-deps.sh
#
# A false positive (a crate used only through a macro or a feature) goes in the crate's
# Cargo.toml: [package.metadata.cargo-machete] ignored = ["name"], with a comment saying why.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo machete --version >/dev/null 2>&1; then
  cargo install --locked cargo-machete
fi

# cargo-machete exits 1 when it finds an unused dependency and 2 on an error of its own.
cargo machete
