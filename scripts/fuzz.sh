#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time each, one after the other (long runs outside
# CI; CI runs the same target bodies as property tests, docs/testing.md).
#
#   scripts/fuzz.sh [seconds per target, default 60] [target ...]
#
# Seeds the corpora of the on-disk targets with real files written by the engine and the server
# (`write_fuzz_seeds` tests), so the fuzzers start from valid files. Crashes land in
# fuzz/artifacts/<target>/, each run's log in fuzz/artifacts/<target>.log; the script exits
# non-zero if any target failed, after running the others.
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-60}"
[ $# -gt 0 ] && shift
case "$secs" in '' | *[!0-9]*) echo "usage: scripts/fuzz.sh [seconds] [target ...]" >&2; exit 2 ;; esac

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz
fi

# Real files to start from: fuzz/corpus/<target>/seed-*.
export STRATA_FUZZ_SEEDS="$PWD/fuzz/corpus"
cargo test -q -p strata-engine --lib fuzzing::tests::write_fuzz_seeds -- --ignored >/dev/null
cargo test -q -p strata-mqtt --lib fuzzing::tests::write_fuzz_seeds -- --ignored >/dev/null

cd fuzz
# On a stable toolchain RUSTC_BOOTSTRAP=1 unlocks the -Z flags cargo-fuzz passes.
export RUSTC_BOOTSTRAP=1
if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

mkdir -p artifacts
failed=()
for t in "${targets[@]}"; do
  args=(-max_total_time="$secs" -print_final_stats=1)
  [ "$t" = lineproto ] && args+=(-dict=lineproto.dict)
  echo "== $t: ${secs}s"
  if cargo fuzz run "$t" -- "${args[@]}" >"artifacts/$t.log" 2>&1; then
    grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)|cov: ' "artifacts/$t.log" | tail -4
  else
    failed+=("$t")
    tail -30 "artifacts/$t.log"
    echo "!! $t failed: fuzz/artifacts/$t/ holds the input, fuzz/artifacts/$t.log the log" >&2
  fi
done
# The targets' scratch directories (strata_engine::fuzzing): libFuzzer exits without running
# thread-local destructors, so each run leaves one; remove those whose process is gone.
for d in /dev/shm/strata-fuzz-* "${TMPDIR:-/tmp}"/strata-fuzz-*; do
  [ -d "$d" ] || continue
  pid="${d##*/strata-fuzz-}"
  pid="${pid%%-*}"
  kill -0 "$pid" 2>/dev/null || rm -rf "$d"
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "failed: ${failed[*]}" >&2
  exit 1
fi
