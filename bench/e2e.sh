#!/usr/bin/env bash
# The end-to-end benchmark: Strata beside its peers, same machine, same run, same data.
#
#   bench/e2e.sh [--quick] [--no-build] [--no-peers] [--keep] [--out FILE]
#
# Builds release binaries, starts Strata on a fresh data dir (loopback, ephemeral ports) and
# drives it with strata-loadgen: HTTP ingest in 5,000-line batches at concurrency 1/4/16, the
# on-disk size after a flush, peak RSS (VmHWM), the TSBS-iot query benchmark, and MQTT QoS 0/1
# with 1 and 100 lines per message. Then the same for the installed peers: VictoriaMetrics and
# InfluxDB 1.6 over HTTP, Mosquitto (the broker ceiling: it only accepts) over MQTT. Prints a
# markdown table with Strata/peer ratios. --quick is a smoke run (tens of seconds); the full
# run takes a few minutes. Every process it starts is stopped by PID, also on Ctrl-C.
#
# Peers: apt-get install -y victoria-metrics influxdb mosquitto mosquitto-clients
# (see /work/shared/peers/README.md). A peer that is not installed is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=full BUILD=1 PEERS=1 KEEP=0 OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) MODE=quick ;;
    --no-build) BUILD=0 ;;
    --no-peers) PEERS=0 ;;
    --keep) KEEP=1 ;;
    --out) OUT="$2"; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

if [ "$MODE" = quick ]; then
  DEVICES=100          # trucks in the HTTP data set
  HTTP_POINTS=100000   # lines per HTTP scenario (100 trucks x 500 rounds of 2 lines)
  QUERY_END=1h         # the data covers 1.4 h of simulated time
  QUERY_RUNS=3
  QUERY_WARMUP=2
  MQTT_DEVICES=100
  MQTT_POINTS=20000    # lines per MQTT scenario
  MQTT_POINTS_BATCHED=200000
  BOUND=15s            # wall-time bound of any one scenario
else
  DEVICES=500          # issue 4's data set: 500 trucks x 4 h = 1.44 M lines
  HTTP_POINTS=1440000
  QUERY_END=4h
  # Warm medians: the first ~100 queries after a server sat idle are slower on this VM (Strata:
  # 0.49 ms median over the first 50 max-velocity queries, 0.16 ms over the next 2,000; likely
  # idle vCPUs waking slowly), which made 20-run medians of sub-millisecond queries swing
  # 0.2-0.8 ms from run to run. Every target gets the same warm-up.
  QUERY_RUNS=200
  QUERY_WARMUP=50
  MQTT_DEVICES=1000
  MQTT_POINTS=300000
  MQTT_POINTS_BATCHED=2000000
  BOUND=30s
fi
BATCH=5000
START=2026-11-20T00:00:00Z
# MQTT connections the devices are multiplexed over (0: one per device). 4 by default: with
# 1,000 connections on 2 cores the client's per-message writes, not the server, set the pace
# (docs/benchmarks.md, load generator ceiling). Strata's ACL is turned off for it (a gateway).
MQTT_CONNECTIONS=${MQTT_CONNECTIONS:-4}

TARGET_DIR=${CARGO_TARGET_DIR:-target}
if [ "$BUILD" = 1 ]; then
  echo "building release binaries..." >&2
  cargo build --release -p strata-loadgen -p strata-cli >&2
fi
STRATA="$TARGET_DIR/release/strata"
LOADGEN="$TARGET_DIR/release/strata-loadgen"
for b in "$STRATA" "$LOADGEN"; do
  [ -x "$b" ] || { echo "$b not built (drop --no-build)" >&2; exit 2; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/strata-e2e.XXXXXX")
RES="$WORK/results"
mkdir -p "$RES"
PIDS=()

. bench/lib.sh
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT TERM


meta() { # meta TARGET KEY VALUE: one number for the report
  python3 - "$RES/$1-meta.json" "$2" "$3" <<'EOF'
import json, sys, os
path, key, value = sys.argv[1], sys.argv[2], float(sys.argv[3])
d = json.load(open(path)) if os.path.exists(path) else {}
d[key] = value
json.dump(d, open(path, "w"))
EOF
}

# http_scenarios TARGET URL [extra loadgen args]: the three HTTP ingest runs, each into its own
# database.
http_scenarios() {
  local target=$1 url=$2 c
  shift 2
  for c in 1 4 16; do
    echo "  $target: HTTP, $BATCH-line batches, concurrency $c" >&2
    "$LOADGEN" http --url "$url" --db "c$c" --devices "$DEVICES" --points "$HTTP_POINTS" --duration "$BOUND" \
      --batch "$BATCH" --concurrency "$c" --start "$START" --pregenerate --json -q "$@" \
      > "$RES/$target-http-c$c.json" 2> "$RES/$target-http-c$c.log" || true
  done
}

# mqtt_scenarios TARGET PORT [extra loadgen args]
mqtt_scenarios() {
  local target=$1 port=$2 qos lpm points
  shift 2
  for qos in 0 1; do
    for lpm in 1 100; do
      points=$MQTT_POINTS
      [ "$lpm" = 100 ] && points=$MQTT_POINTS_BATCHED
      echo "  $target: MQTT QoS $qos, $lpm lines per message" >&2
      "$LOADGEN" mqtt --port "$port" --qos "$qos" --lines-per-message "$lpm" --devices "$MQTT_DEVICES" \
        --connections "$MQTT_CONNECTIONS" --points "$points" --duration "$BOUND" --start "$START" \
        --drain-timeout 5s --json -q "$@" \
        > "$RES/$target-mqtt-q$qos-l$lpm.json" 2> "$RES/$target-mqtt-q$qos-l$lpm.log" || true
    done
  done
}

query_bench() { # TARGET URL FLAVOR [extra args]
  local target=$1 url=$2 flavor=$3
  shift 3
  echo "  $target: queries ($QUERY_RUNS runs each)" >&2
  "$LOADGEN" query --url "$url" --flavor "$flavor" --db c4 --start "$START" --end "$QUERY_END" \
    --runs "$QUERY_RUNS" --warmup "$QUERY_WARMUP" --json "$@" > "$RES/$target-query.json" 2> "$RES/$target-query.log" || true
}

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# --- the load generator's own ceiling ----------------------------------------------------------
echo "loadgen ceiling (built-in null HTTP sink)" >&2
"$LOADGEN" sink --addr 127.0.0.1:0 --ready-file "$WORK/sink.ready" --max-lifetime 5m 2> "$WORK/sink.log" &
PIDS+=($!); SINK_PID=$!
for _ in $(seq 50); do [ -s "$WORK/sink.ready" ] && break; sleep 0.1; done
SINK=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["http"])' "$WORK/sink.ready")
"$LOADGEN" http --url "http://$SINK" --devices "$DEVICES" --points "$HTTP_POINTS" --duration "$BOUND" \
  --batch "$BATCH" --concurrency 4 --start "$START" --pregenerate --json -q > "$RES/sink-http-c4.json" 2>/dev/null || true
stop_pid "$SINK_PID"; forget_pid "$SINK_PID"

# --- Strata ------------------------------------------------------------------------------------
echo "Strata" >&2
SDATA="$WORK/strata-data"
start_strata() {
  local port mport
  rm -f "$WORK/strata.ready"
  mport=$(free_port)
  "$STRATA" serve --data-dir "$SDATA" --http-addr 127.0.0.1:0 --mqtt-addr "127.0.0.1:$mport" \
    --ready-file "$WORK/strata.ready" --set mqtt.rate_limit=0 --set mqtt.acl=false --log-level warn >> "$WORK/strata.log" 2>&1 &
  STRATA_PID=$!; PIDS+=($STRATA_PID)
  for _ in $(seq 150); do [ -s "$WORK/strata.ready" ] && break; sleep 0.1; done
  [ -s "$WORK/strata.ready" ] || { echo "strata did not start:"; tail -20 "$WORK/strata.log"; exit 1; } >&2
  STRATA_URL="http://$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["http"])' "$WORK/strata.ready")"
  STRATA_MQTT=$mport
}
start_strata
http_scenarios strata "$STRATA_URL" --verify   # (verified after the clock stops)
meta strata ingest_hwm_kib "$(hwm_kib "$STRATA_PID")"
stop_pid "$STRATA_PID"; forget_pid "$STRATA_PID"     # graceful: flushes every memtable
meta strata disk_bytes "$(du -s -B1 "$SDATA" | cut -f1)"
start_strata
wait_idle "$STRATA_PID"
query_bench strata "$STRATA_URL" influxql
if wait_tcp "$STRATA_MQTT" 2; then
  mqtt_scenarios strata "$STRATA_MQTT" --http-url "$STRATA_URL"
else
  echo "  Strata's MQTT listener is not up: MQTT scenarios skipped" >&2
fi
meta strata total_hwm_kib "$(hwm_kib "$STRATA_PID")"
stop_pid "$STRATA_PID"; forget_pid "$STRATA_PID"

# --- VictoriaMetrics ---------------------------------------------------------------------------
if [ "$PEERS" = 1 ] && command -v victoria-metrics >/dev/null; then
  echo "VictoriaMetrics" >&2
  port=$(free_port)
  start_vm() {
    victoria-metrics -storageDataPath="$WORK/vm-data" -httpListenAddr="127.0.0.1:$port" -retentionPeriod=100y \
      -loggerLevel=ERROR >> "$WORK/vm.log" 2>&1 &
    VM_PID=$!; PIDS+=($VM_PID)
    wait_http "http://127.0.0.1:$port/health" 20
  }
  start_vm
  http_scenarios vm "http://127.0.0.1:$port"
  meta vm ingest_hwm_kib "$(hwm_kib "$VM_PID")"
  # Measured after a graceful stop, as Strata is: /internal/force_flush leaves recent data in
  # memory parts. The cache/ directory (rebuildable lookup caches written at shutdown) is left out.
  stop_pid "$VM_PID"; forget_pid "$VM_PID"
  meta vm disk_bytes "$(du -s -B1 "$WORK/vm-data/data" "$WORK/vm-data/indexdb" | awk '{s+=$1} END {print s}')"
  start_vm
  # VictoriaMetrics labels each sample with the db query argument; keep to the c4 copy.
  wait_idle "$VM_PID"
  query_bench vm "http://127.0.0.1:$port" promql --extra-label db=c4
  stop_pid "$VM_PID"; forget_pid "$VM_PID"
fi

# --- InfluxDB 1.6 ------------------------------------------------------------------------------
if [ "$PEERS" = 1 ] && command -v influxd >/dev/null; then
  echo "InfluxDB" >&2
  port=$(free_port); rpc=$(free_port); IDIR="$WORK/influx"
  mkdir -p "$IDIR"
  influxd config 2>/dev/null | sed \
    -e "s|^bind-address = .*|bind-address = \"127.0.0.1:$rpc\"|" \
    -e "s|/var/lib/influxdb|$IDIR|g" \
    -e "s|^  bind-address = \":8086\"|  bind-address = \"127.0.0.1:$port\"|" \
    -e "s|^  store-enabled = true|  store-enabled = false|" \
    -e "s|^  query-log-enabled = true|  query-log-enabled = false|" \
    -e "s|^  log-enabled = true|  log-enabled = false|" \
    -e "s|cache-snapshot-write-cold-duration = \"10m0s\"|cache-snapshot-write-cold-duration = \"1s\"|" \
    > "$IDIR/influxdb.conf"
  start_influx() {
    influxd run -config "$IDIR/influxdb.conf" >> "$WORK/influx.log" 2>&1 &
    INFLUX_PID=$!; PIDS+=($INFLUX_PID)
    wait_http "http://127.0.0.1:$port/ping" 20
  }
  start_influx
  for c in 1 4 16; do
    curl -s -XPOST "http://127.0.0.1:$port/query" --data-urlencode "q=CREATE DATABASE \"c$c\"" > /dev/null
  done
  http_scenarios influxdb "http://127.0.0.1:$port" --verify
  meta influxdb ingest_hwm_kib "$(hwm_kib "$INFLUX_PID")"
  sleep 3   # the cache is snapshotted to TSM files after 1 s without writes
  stop_pid "$INFLUX_PID"; forget_pid "$INFLUX_PID"
  # Allocated blocks, not apparent sizes: InfluxDB preallocates sparse 32 MiB series files.
  meta influxdb disk_bytes "$(du -s -B1 "$IDIR/data" "$IDIR/wal" | awk '{s+=$1} END {print s}')"
  start_influx
  wait_idle "$INFLUX_PID"
  query_bench influxdb "http://127.0.0.1:$port" influxql
  stop_pid "$INFLUX_PID"; forget_pid "$INFLUX_PID"
fi

# --- Mosquitto ---------------------------------------------------------------------------------
if [ "$PEERS" = 1 ] && command -v mosquitto >/dev/null; then
  echo "Mosquitto" >&2
  port=$(free_port)
  printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\nlog_type error\nmax_connections -1\n' \
    "$port" > "$WORK/mosquitto.conf"
  mosquitto -c "$WORK/mosquitto.conf" > "$WORK/mosquitto.log" 2>&1 &
  MQ_PID=$!; PIDS+=($MQ_PID)
  wait_tcp "$port" 10 || { echo "mosquitto did not start" >&2; cat "$WORK/mosquitto.log" >&2; }
  mqtt_scenarios mosquitto "$port"
  meta mosquitto total_hwm_kib "$(hwm_kib "$MQ_PID")"
  stop_pid "$MQ_PID"; forget_pid "$MQ_PID"
fi

# --- report ------------------------------------------------------------------------------------
{
  echo "## End-to-end ($MODE), $(date -u +%Y-%m-%d), $(nproc) cores, $(uname -m)"
  echo
  python3 bench/e2e/report.py "$RES" "$MODE" "$DEVICES" "$HTTP_POINTS" "$MQTT_DEVICES"
} | tee "${OUT:-/dev/null}"
