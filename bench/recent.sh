#!/usr/bin/env bash
# Recent data against settled data (issue 16): the same queries right after ingest (the data
# in memtables) and after a restart that flushed it (segments), beside VictoriaMetrics right
# after its own ingest, same data, same run.
#
#   bench/recent.sh [--no-build] [--no-peers] [--strata BIN] [--loadgen BIN] [--runs N]
#                   [--many N] [--keep] [--out FILE]
#
# Data: the iot set of bench/e2e.sh (500 trucks x 4 h, 1.44 M lines over HTTP in 5,000-line
# batches at concurrency 4) into database `bench`, then the "many devices" set (--many
# sensors, default 100,000, 3 points each) into `many`. Queries (bench/recent/query.py, one
# keep-alive connection, --runs timed runs after 10 warm-up runs, medians): issue 16's five
# questions, and the last value of every sensor (10 runs after 3 warm-up runs); each set is
# queried right after its own ingest, then both after a restart. Also the ingest rate of the iot
# set and the peak RSS (VmHWM) after it. --strata runs another binary (e.g. an older build, for
# before/after figures). Every process it starts is stopped by PID, also on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=1 PEERS=1 KEEP=0 OUT="" RUNS=30 WARMUP=10 MANY=100000 MANY_RUNS=10
TARGET_DIR=${CARGO_TARGET_DIR:-target}
STRATA="$TARGET_DIR/release/strata"
LOADGEN="$TARGET_DIR/release/strata-loadgen"
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) BUILD=0 ;;
    --no-peers) PEERS=0 ;;
    --strata) STRATA="$2"; BUILD=0; shift ;;
    --loadgen) LOADGEN="$2"; shift ;;
    --runs) RUNS="$2"; shift ;;
    --many) MANY="$2"; shift ;;
    --keep) KEEP=1 ;;
    --out) OUT="$2"; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

DEVICES=500 LINES=${LINES:-1440000} BATCH=5000   # LINES: smaller for a smoke run
START=2026-11-20T00:00:00Z
START_S=$(date -u -d "$START" +%s)
END_S=$((START_S + 4 * 3600))
MANY_LINES=$((MANY * 3))
MANY_END_S=$((START_S + 3 * 10))

if [ "$BUILD" = 1 ]; then
  echo "building release binaries..." >&2
  cargo build --release -p strata-cli -p strata-loadgen >&2
fi
for b in "$STRATA" "$LOADGEN"; do
  [ -x "$b" ] || { echo "$b not built (drop --no-build)" >&2; exit 2; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/strata-recent.XXXXXX")
RES="$WORK/results"
mkdir -p "$RES"
PIDS=()

. bench/lib.sh
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT TERM

ingest() { # TARGET URL SET
  if [ "$3" = trucks ]; then
    echo "  $1: ingest $LINES iot lines" >&2
    "$LOADGEN" http --url "$2" --db bench --devices "$DEVICES" --points "$LINES" --batch "$BATCH" \
      --concurrency 4 --start "$START" --pregenerate --json -q > "$RES/$1-ingest.json" 2> "$RES/$1-ingest.log"
  else
    echo "  $1: ingest $MANY_LINES lines of $MANY sensors" >&2
    "$LOADGEN" http --url "$2" --db many --schema sensors --devices "$MANY" --points "$MANY_LINES" --batch "$BATCH" \
      --concurrency 4 --start "$START" --pregenerate --json -q > "$RES/$1-ingest-many.json" 2> "$RES/$1-ingest-many.log"
  fi
}
queries() { # TARGET URL FLAVOR STATE SET
  echo "  $1: $5 queries, $4" >&2
  if [ "$5" = trucks ]; then
    python3 bench/recent/query.py "$2" "$3" trucks "$START_S" "$END_S" "$RUNS" "$WARMUP" > "$RES/$1-$4-trucks.json"
  else
    # Its answer is one series per sensor (~17 MB of JSON at 100,000): fewer runs.
    python3 bench/recent/query.py "$2" "$3" many "$START_S" "$MANY_END_S" "$MANY_RUNS" 3 > "$RES/$1-$4-many.json"
  fi
}

ulimit -n 65536 2>/dev/null || true

# --- Strata ------------------------------------------------------------------------------------
echo "Strata ($STRATA)" >&2
SDATA="$WORK/strata-data"
start_strata() {
  rm -f "$WORK/strata.ready"
  "$STRATA" serve --data-dir "$SDATA" --http-addr 127.0.0.1:0 --mqtt-addr 127.0.0.1:0 \
    --ready-file "$WORK/strata.ready" --log-level warn >> "$WORK/strata.log" 2>&1 &
  STRATA_PID=$!; PIDS+=($STRATA_PID)
  for _ in $(seq 300); do [ -s "$WORK/strata.ready" ] && break; sleep 0.1; done
  [ -s "$WORK/strata.ready" ] || { echo "strata did not start:"; tail -20 "$WORK/strata.log"; exit 1; } >&2
  STRATA_URL="http://$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["http"])' "$WORK/strata.ready")"
}
# Each set is queried right after its own ingest, while the memtables still hold it (the
# sensors written after the trucks would push the trucks into segments).
start_strata
ingest strata "$STRATA_URL" trucks
echo "{\"ingest_hwm_kib\": $(hwm_kib "$STRATA_PID")}" > "$RES/strata-meta.json"
wait_idle "$STRATA_PID"
queries strata "$STRATA_URL" influxql fresh trucks
ingest strata "$STRATA_URL" many
wait_idle "$STRATA_PID"
queries strata "$STRATA_URL" influxql fresh many
stop_pid "$STRATA_PID"; forget_pid "$STRATA_PID"     # graceful: flushes every memtable
start_strata
wait_idle "$STRATA_PID"
queries strata "$STRATA_URL" influxql settled trucks
queries strata "$STRATA_URL" influxql settled many
stop_pid "$STRATA_PID"; forget_pid "$STRATA_PID"

# --- VictoriaMetrics ---------------------------------------------------------------------------
if [ "$PEERS" = 1 ] && command -v victoria-metrics >/dev/null; then
  echo "VictoriaMetrics" >&2
  port=$(free_port)
  victoria-metrics -storageDataPath="$WORK/vm-data" -httpListenAddr="127.0.0.1:$port" -retentionPeriod=100y \
    -loggerLevel=ERROR >> "$WORK/vm.log" 2>&1 &
  VM_PID=$!; PIDS+=($VM_PID)
  wait_http "http://127.0.0.1:$port/health" 20
  for set in trucks many; do
    ingest vm "http://127.0.0.1:$port" $set
    [ $set = trucks ] && echo "{\"ingest_hwm_kib\": $(hwm_kib "$VM_PID")}" > "$RES/vm-meta.json"
    # Recent samples become searchable after up to a second in VictoriaMetrics' buffers.
    curl -s "http://127.0.0.1:$port/internal/force_flush" > /dev/null || true
    wait_idle "$VM_PID"
    queries vm "http://127.0.0.1:$port" promql fresh $set
  done
  stop_pid "$VM_PID"; forget_pid "$VM_PID"
fi

# --- report ------------------------------------------------------------------------------------
{
  echo "### Recent vs settled, $(date -u +%Y-%m-%d), $(nproc) cores: \`bench/recent.sh --runs $RUNS --many $MANY\`"
  echo
  python3 - "$RES" <<'EOF'
import json, os, sys
res = sys.argv[1]
def load(name):
    p = os.path.join(res, name)
    return json.load(open(p)) if os.path.exists(p) else {}
rows = {}
for target, state in [("strata", "fresh"), ("strata", "settled"), ("vm", "fresh")]:
    for s in ("trucks", "many"):
        for name, r in load(f"{target}-{state}-{s}.json").items():
            rows.setdefault(name, {"description": r["description"]})[(target, state)] = r
def cell(r):
    if r is None:
        return "-"
    if "error" in r:
        return "error"
    return f"{r['median_ms']:.2f} ms"
print("| query | Strata right after ingest | Strata after the flush | fresh / settled | VictoriaMetrics after its ingest | Strata fresh / VM |")
print("|---|---|---|---|---|---|")
for name, r in rows.items():
    f, s, v = r.get(("strata", "fresh")), r.get(("strata", "settled")), r.get(("vm", "fresh"))
    ok = lambda x: x is not None and "error" not in x
    fs = f"{f['median_ms'] / s['median_ms']:.2f}x" if ok(f) and ok(s) else "-"
    fv = f"{f['median_ms'] / v['median_ms']:.2f}x" if ok(f) and ok(v) else "-"
    same = "" if not (ok(f) and ok(s)) or f["answer_sha"] == s["answer_sha"] else " (answers differ!)"
    print(f"| {r['description']} | {cell(f)} | {cell(s)}{same} | {fs} | {cell(v)} | {fv} |")
print()
for target in ("strata", "vm"):
    ing, meta = load(f"{target}-ingest.json"), load(f"{target}-meta.json")
    if ing:
        print(f"- {target}: iot ingest {ing.get('lines_per_s', 0) / 1000:.0f} K lines/s "
              f"({ing.get('acked_lines', 0)} acknowledged), "
              f"peak RSS after it {meta.get('ingest_hwm_kib', 0) / 1024:.0f} MiB")
EOF
} | tee "${OUT:-/dev/null}"
