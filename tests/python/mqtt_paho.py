#!/usr/bin/env python3
"""Publish telemetry to a running Strata MQTT listener with the paho-mqtt client.

Usage: mqtt_paho.py --host 127.0.0.1 --port PORT --device ID

Connects (MQTT 3.1.1, clean session), publishes line protocol and JSON at QoS 1 and waits
for each PUBACK, subscribes to its command topic, then disconnects. Prints one JSON object:
the values written, so the Rust test can compare what the server stored. Exits non-zero on
any failure (connect refused, missing PUBACK, refused subscription).
"""

import argparse
import json
import sys

import paho.mqtt.client as mqtt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--device", required=True)
    a = ap.parse_args()

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=a.device, protocol=mqtt.MQTTv311)
    granted = []
    c.on_subscribe = lambda client, userdata, mid, reason_codes, props: granted.extend(reason_codes)
    c.connect(a.host, a.port, keepalive=30)
    c.loop_start()
    expected = []
    for i in range(10):
        line = f"paho,n=x v={i}i {1000 + i}"
        info = c.publish(f"telemetry/{a.device}/ignored", line, qos=1)
        info.wait_for_publish(timeout=10)
        if not info.is_published():
            sys.exit(f"no PUBACK for line message {i}")
        expected.append([f"paho,device={a.device},n=x", "v", (1000 + i), f"{i}i"])
    doc = json.dumps([{"ts": 5000 + i, "temp": i + 0.5} for i in range(5)])
    info = c.publish(f"telemetry/{a.device}/pahojson", doc, qos=1)
    info.wait_for_publish(timeout=10)
    if not info.is_published():
        sys.exit("no PUBACK for the JSON message")
    for i in range(5):
        expected.append([f"pahojson,device={a.device}", "temp", (5000 + i) * 1_000_000, f"{i + 0.5}"])
    _, mid = c.subscribe(f"commands/{a.device}/#", qos=1)
    for _ in range(100):
        if granted:
            break
        import time
        time.sleep(0.05)
    if not granted or granted[0].is_failure:
        sys.exit(f"subscription refused: {granted}")
    c.disconnect()
    c.loop_stop()
    print(json.dumps({"expected": expected}))


if __name__ == "__main__":
    main()
