#!/usr/bin/env python3
"""Write to a running Strata server with the real InfluxDB client libraries.

Usage: influx_clients.py --url http://127.0.0.1:PORT --token TOKEN --db1 NAME --db2 NAME

- `influxdb` (the 1.x client): write_points() to /write, token as the 1.x password (u/p).
- `influxdb_client` (the 2.x client): write_api(SYNCHRONOUS).write() to /api/v2/write with
  `Authorization: Token`, once plain and once with gzip; a bad line must raise a 400 error.

Prints one JSON object on stdout: the points written (so the Rust test can compare what the
server stored) and what the clients reported. Exits non-zero on any unexpected behaviour.
"""

import argparse
import json
import sys
from urllib.parse import urlparse

from influxdb import InfluxDBClient as V1Client
from influxdb_client import InfluxDBClient as V2Client, Point, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--db1", required=True)
    ap.add_argument("--db2", required=True)
    args = ap.parse_args()
    u = urlparse(args.url)
    expected = []
    report = {}

    # 1.x client: JSON points converted to line protocol by the client, seconds precision.
    v1 = V1Client(host=u.hostname, port=u.port, username="anyone", password=args.token, database=args.db1, timeout=10)
    report["v1_ping"] = v1.ping()
    points = []
    for i in range(50):
        ts = 1_700_000_000 + i
        points.append({
            "measurement": "weather",
            "tags": {"station": "s%d" % (i % 3), "site": "north field"},
            "time": ts,
            "fields": {"temp": 20.0 + i / 4, "count": i, "ok": i % 2 == 0, "note": "reading %d" % i},
        })
        station = "s%d" % (i % 3)
        series = "weather,site=north\\ field,station=%s" % station
        ns = ts * 1_000_000_000
        expected += [
            [args.db1, "weather", series, "temp", ns, repr_float(20.0 + i / 4)],
            # The 1.x client writes Python ints as line-protocol integers (`42i`).
            [args.db1, "weather", series, "count", ns, "%di" % i],
            [args.db1, "weather", series, "ok", ns, "true" if i % 2 == 0 else "false"],
            [args.db1, "weather", series, "note", ns, json.dumps("reading %d" % i)],
        ]
    if not v1.write_points(points, time_precision="s", batch_size=20):
        sys.exit("1.x write_points returned False")
    v1.close()

    # 2.x client: Point objects, milliseconds; then the same with gzip.
    for gzip, device in [(False, "plain"), (True, "gzip")]:
        with V2Client(url=args.url, token=args.token, org="strata", enable_gzip=gzip, timeout=10_000) as c:
            report["v2_ping_" + device] = c.ping()
            api = c.write_api(write_options=SYNCHRONOUS)
            recs = []
            for i in range(40):
                ms = 1_700_000_000_000 + i * 250
                recs.append(Point("power").tag("device", device).field("watts", 100.5 + i).field("phase", i % 3).time(ms, WritePrecision.MS))
                series = "power,device=%s" % device
                ns = ms * 1_000_000
                expected += [
                    [args.db2, "power", series, "watts", ns, repr_float(100.5 + i)],
                    [args.db2, "power", series, "phase", ns, "%di" % (i % 3)],
                ]
            api.write(bucket=args.db2, record=recs, write_precision=WritePrecision.MS)
            # A bad line: the client must see a 400 naming it.
            try:
                api.write(bucket=args.db2, record="power,device=bad watts=", write_precision=WritePrecision.MS)
                sys.exit("a bad line was accepted")
            except ApiException as e:
                if e.status != 400:
                    sys.exit("bad line: expected 400, got %s" % e.status)
                report["v2_bad_line_message_" + device] = json.loads(e.body)["message"]

    print(json.dumps({"expected": expected, "report": report}))


def repr_float(x):
    """Rust's `{}` formatting of an f64 (what the test's reader prints)."""
    return str(int(x)) if float(x).is_integer() else repr(float(x))


if __name__ == "__main__":
    main()
