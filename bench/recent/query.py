#!/usr/bin/env python3
"""Times the queries of bench/recent.sh against Strata (InfluxQL) or VictoriaMetrics (PromQL).

    query.py URL FLAVOR SET START_S END_S RUNS WARMUP > result.json

FLAVOR is influxql or promql; SET is "trucks" (issue 16's five questions over the iot data
set, database/label db=bench) or "many" (the last value of every sensor, db=many). One
keep-alive connection; the time is the full round trip including reading the whole answer.
Prints one JSON object: per query its median and p90 in ms, the number of values in the
answer and a hash of it (fresh and settled answers must agree).
"""
import hashlib
import http.client
import json
import statistics
import sys
import time
import urllib.parse

url, flavor, qset, start_s, end_s, runs, warmup = sys.argv[1:8]
start_s, end_s, runs, warmup = int(start_s), int(end_s), int(runs), int(warmup)
u = urllib.parse.urlparse(url)
HOUR = 3600


def influx(q, db):
    return "/query?" + urllib.parse.urlencode({"db": db, "q": q, "epoch": "ns"})


def prom(q, db, start, end, step):
    return "/api/v1/query_range?" + urllib.parse.urlencode(
        {"query": q, "start": start, "end": end, "step": f"{step}s", "nocache": "1", "extra_label": f"db={db}"})


def ms(s):
    return s * 1000


if qset == "trucks":
    s, e = ms(start_s), ms(end_s)
    queries = [
        ("max-velocity-1h", "one truck, max velocity per minute over 1 h",
         influx(f"SELECT max(velocity) FROM readings WHERE \"name\" = 'truck_7' AND time >= {s}ms AND time < {s + ms(HOUR)}ms GROUP BY time(1m)", "bench"),
         prom('max_over_time(readings_velocity{name="truck_7"}[1m])', "bench", start_s + 60, start_s + HOUR, 60)),
        ("fleet-fuel-10m", "one fleet, mean fuel per 10 min over 4 h",
         influx(f"SELECT mean(fuel_consumption) FROM readings WHERE fleet = 'East' AND time >= {s}ms AND time < {e}ms GROUP BY time(10m)", "bench"),
         prom('sum(sum_over_time(readings_fuel_consumption{fleet="East"}[10m])) / sum(count_over_time(readings_fuel_consumption{fleet="East"}[10m]))',
              "bench", start_s + 600, end_s, 600)),
        ("last-position-1h", "last position of every truck over the last hour, GROUP BY \"name\"",
         influx(f"SELECT last(latitude), last(longitude) FROM readings WHERE time >= {e - ms(HOUR)}ms AND time < {e}ms GROUP BY \"name\"", "bench"),
         prom('last_over_time({__name__=~"readings_(latitude|longitude)"}[1h])', "bench", end_s, end_s, 60)),
        ("last-position-all", "last position of every truck, no time range",
         influx("SELECT last(latitude), last(longitude) FROM readings GROUP BY \"name\"", "bench"),
         prom('last_over_time({__name__=~"readings_(latitude|longitude)"}[%ds])' % (end_s - start_s), "bench", end_s, end_s, 60)),
        ("count-all", "count of all readings",
         influx(f"SELECT count(velocity) FROM readings WHERE time >= {s}ms AND time < {e}ms", "bench"),
         prom('sum(count_over_time(readings_velocity[%ds]))' % (end_s - start_s), "bench", end_s, end_s, 60)),
    ]
else:
    queries = [
        ("many-last", "last value of every sensor (--many of them), GROUP BY device",
         influx("SELECT last(*) FROM sensors GROUP BY device", "many"),
         prom('last_over_time({__name__=~"sensors_.*"}[%ds])' % (end_s - start_s), "many", end_s, end_s, 60)),
        # The same reads without the answer of one series per sensor (InfluxQL only).
        ("many-last-one", "newest temperature over every sensor, one row",
         influx("SELECT last(temperature) FROM sensors", "many"), None),
    ]


def values(body):
    d = json.loads(body)
    n = 0
    if flavor == "influxql":
        for r in d.get("results", []):
            if "error" in r:
                raise RuntimeError(r["error"])
            for s in r.get("series", []):
                for row in s.get("values", []):
                    n += len(row) - 1
    else:
        if d.get("status") != "success":
            raise RuntimeError(str(d)[:300])
        for s in d["data"]["result"]:
            n += len(s.get("values", []))
    return n


conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
out = {}
for name, desc, iq, pq in queries:
    path = iq if flavor == "influxql" else pq
    if path is None:
        continue
    times, body = [], b""
    try:
        for i in range(warmup + runs):
            t = time.perf_counter()
            conn.request("GET", path)
            r = conn.getresponse()
            body = r.read()
            took = time.perf_counter() - t
            if r.status != 200:
                raise RuntimeError(f"HTTP {r.status}: {body[:300]!r}")
            if i >= warmup:
                times.append(took * 1000)
        times.sort()
        out[name] = {
            "description": desc,
            "median_ms": statistics.median(times),
            "p90_ms": times[int(len(times) * 0.9) - 1] if len(times) >= 10 else times[-1],
            "values": values(body),
            "answer_sha": hashlib.sha256(body).hexdigest()[:16],
        }
    except Exception as ex:  # report and go on with the next query
        out[name] = {"description": desc, "error": str(ex)}
        conn.close()
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
json.dump(out, sys.stdout, indent=1)
print()
