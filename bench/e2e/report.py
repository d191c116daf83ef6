#!/usr/bin/env python3
"""Renders the results of bench/e2e.sh as a markdown table with Strata/peer ratios.

Usage: report.py RESULTS_DIR MODE DEVICES HTTP_POINTS MQTT_DEVICES

RESULTS_DIR holds `<target>-<scenario>.json` (strata-loadgen --json reports) and
`<target>-meta.json` (disk bytes, peak RSS). A missing or failed run shows as `-`.
"""
import json
import os
import sys

res, mode, devices, http_points, mqtt_devices = sys.argv[1:6]
TARGETS = [("strata", "Strata"), ("vm", "VictoriaMetrics"), ("influxdb", "InfluxDB 1.6"), ("mosquitto", "Mosquitto")]
PEERS = [t for t, _ in TARGETS[1:]]


def load(name):
    p = os.path.join(res, name + ".json")
    try:
        with open(p) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def ingest(target, scenario, key="lines_per_s"):
    r = load(f"{target}-{scenario}")
    if not r or r.get("acked_lines", 0) == 0:
        return None
    return r.get(key)


def http_values(target):
    return sum((load(f"{target}-http-c{c}") or {}).get("acked_values", 0) for c in (1, 4, 16))


def disk_per_value(target):
    m = load(f"{target}-meta") or {}
    v = http_values(target)
    return m["disk_bytes"] / v if "disk_bytes" in m and v else None


def hwm_mib(target, key):
    m = load(f"{target}-meta") or {}
    return m[key] / 1024 if m.get(key) else None


def query(target, name):
    r = load(f"{target}-query")
    for q in (r or {}).get("queries", []):
        if q["name"] == name and not q.get("error"):
            return q["median_ms"]
    return None


def fmt(v, unit=""):
    if v is None:
        return "-"
    if unit == "rate":
        return f"{v / 1e6:.2f} M" if v >= 1e6 else f"{v / 1e3:.0f} K"
    if v >= 100:
        return f"{v:.0f}"
    return f"{v:.2f}" if v >= 1 else f"{v:.3f}"


rows = []  # (label, {target: value}, unit, higher_is_better)
for c in (1, 4, 16):
    rows.append((f"HTTP ingest, concurrency {c} (lines/s)", {t: ingest(t, f"http-c{c}") for t, _ in TARGETS[:3]}, "rate", True))
rows.append(("HTTP ingest, concurrency 16 (field values/s)", {t: ingest(t, "http-c16", "values_per_s") for t, _ in TARGETS[:3]}, "rate", True))
rows.append(("HTTP p99 latency per 5,000-line batch, concurrency 4 (ms)",
             {t: ((load(f"{t}-http-c4") or {}).get("latency_ms") or {}).get("p99") if ingest(t, "http-c4") else None
              for t, _ in TARGETS[:3]}, "", False))
rows.append(("on-disk bytes per field value, after flush", {t: disk_per_value(t) for t, _ in TARGETS[:3]}, "", False))
rows.append(("peak RSS during HTTP ingest (MiB)", {t: hwm_mib(t, "ingest_hwm_kib") for t, _ in TARGETS[:3]}, "", False))
for name in ("max-velocity-1h", "fleet-fuel-10m", "last-position", "count-all"):
    rows.append((f"query {name}, median (ms)", {t: query(t, name) for t, _ in TARGETS[:3]}, "", False))
for qos in (0, 1):
    for lpm in (1, 100):
        what = "messages/s" if lpm == 1 else "lines/s"
        key = "units_per_s" if lpm == 1 else "lines_per_s"
        rows.append((f"MQTT QoS {qos}, {lpm} line(s) per message ({what})",
                     {t: ingest(t, f"mqtt-q{qos}-l{lpm}", key) for t in ("strata", "mosquitto")}, "rate", True))

print(f"Data: TSBS-iot-like trucks, {devices} trucks, {http_points} lines per HTTP run (5,000-line batches, "
      f"each run into its own database); MQTT: {mqtt_devices} devices. Mode: {mode}.")
print()
print("| metric | " + " | ".join(n for _, n in TARGETS) + " | Strata / best peer |")
print("|---" * (len(TARGETS) + 2) + "|")
for label, vals, unit, higher in rows:
    peers = [vals.get(p) for p in PEERS if vals.get(p) is not None]
    s = vals.get("strata")
    ratio = "-"
    if s is not None and peers:
        best = max(peers) if higher else min(peers)
        if best:
            ratio = f"{s / best:.2f}x"
    print(f"| {label} | " + " | ".join(fmt(vals.get(t), unit) for t, _ in TARGETS) + f" | {ratio} |")
print()
sink = load("sink-http-c4")
if sink:
    print(f"Load generator ceiling in the same run (built-in null HTTP sink, concurrency 4, pregenerated as in the scenarios): "
          f"{fmt(sink['lines_per_s'], 'rate')} lines/s.")
errors = []
for name in sorted(os.listdir(res)):
    r = load(name[:-5]) if name.endswith(".json") and not name.endswith("-meta.json") else None
    if r and r.get("errors"):
        errors.append(f"{name[:-5]}: " + ", ".join(f"{k} {v}" for k, v in r["errors"].items()))
    if r and r.get("verify") and not r["verify"].get("ok"):
        errors.append(f"{name[:-5]}: --verify FAILED: " + "; ".join(r["verify"].get("problems", []))[:300])
    if r and r.get("queries"):
        for q in r["queries"]:
            if q.get("error"):
                errors.append(f"{name[:-5]} {q['name']}: {q['error'][:160]}")
if errors:
    print()
    print("Errors reported by the load generator:")
    for e in errors:
        print(f"- {e}")
verified = sorted(n[:-5] for n in os.listdir(res) if n.endswith(".json") and (load(n[:-5]) or {}).get("verify", {}) and load(n[:-5])["verify"].get("ok"))
if verified:
    print()
    print("Verified with `--verify` (every acknowledged line counted back, values spot-checked): " + ", ".join(verified) + ".")
print()
print("Ratios: for rates, Strata divided by the fastest peer (above 1 is better); for bytes, memory and "
      "latency, Strata divided by the smallest (below 1 is better). MQTT peers: Mosquitto only accepts "
      "(stores nothing), so it is the broker ceiling, not a like-for-like database.")
