#!/usr/bin/env bash
# The crash soak: kill -9 the real server at random moments, and in the middle of flushes and
# compactions, under mixed HTTP and MQTT QoS 1 load, and check every acknowledged point after
# each restart (tests/src/bin/crash-soak.rs says how).
#
#   bench/crash-soak.sh [--dev] [--no-build] [--rounds N] [--max-seconds S] [-- SOAK ARGS...]
#
# Builds `strata` and `crash-soak` (release by default, --dev for the dev profile the tests
# use), then runs 1,000 rounds (at most an hour) on a fresh data directory under $TMPDIR. Prints
# one line per round and a summary; exits 1 at the first lost or invented point, keeping the
# data directory and the server's logs. Other soak arguments (--seed, --http-writers,
# --mqtt-writers, --full-every, --data-dir, --keep) go after `--`.
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE=release BUILD=1 ROUNDS=1000 MAX_SECONDS=3600 EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dev) PROFILE=dev ;;
    --no-build) BUILD=0 ;;
    --rounds) ROUNDS="$2"; shift ;;
    --max-seconds) MAX_SECONDS="$2"; shift ;;
    --) shift; EXTRA=("$@"); break ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

if [ "$PROFILE" = release ]; then DIR=target/release; FLAG=--release; else DIR=target/debug; FLAG=; fi
if [ "$BUILD" = 1 ]; then
  cargo build $FLAG --bin strata -p strata-cli
  cargo build $FLAG --bin crash-soak -p strata-e2e
fi

echo "crash-soak: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, $(uname -srm), profile $PROFILE"
exec "$DIR/crash-soak" --strata "$DIR/strata" --rounds "$ROUNDS" --max-seconds "$MAX_SECONDS" "${EXTRA[@]}"
