# Shell helpers of the benchmark scripts (bench/e2e.sh, bench/recent.sh), sourced from the
# repository root after they set WORK (a temp dir), KEEP (1 keeps it) and PIDS (the
# processes they started).

# Stops one process we started: SIGTERM, up to 30 s for a clean exit, then SIGKILL.
stop_pid() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 300); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  PIDS=()
  if [ "$KEEP" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}

forget_pid() {
  local keep=() p
  for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  PIDS=("${keep[@]+"${keep[@]}"}")
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_http URL SECONDS: until URL answers at all.
wait_http() {
  local i
  for i in $(seq $(( $2 * 10 ))); do
    curl -s -o /dev/null "$1" && return 0
    sleep 0.1
  done
  echo "$1 did not come up within $2 s" >&2
  return 1
}

wait_tcp() {
  local i
  for i in $(seq $(( $2 * 10 ))); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# wait_idle PID: until the process uses under 5% of a core over a second (at most 30 s), so the
# query benchmark measures warm queries, not queries racing work a restart began (Strata's
# compactions, a peer's merges). Applied to every target alike.
wait_idle() {
  local tick a b i
  tick=$(getconf CLK_TCK)
  for i in $(seq 30); do
    a=$(awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0)
    sleep 1
    b=$(awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0)
    [ $(( (b - a) * 100 )) -lt $(( tick * 5 )) ] && return 0
  done
  echo "  process $1 still busy after 30 s; querying anyway" >&2
}

hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
