#!/usr/bin/env python3
"""Publish telemetry to a running Strata MQTT listener with paho-mqtt over MQTT 5.0.

Usage: mqtt_paho5.py --host 127.0.0.1 --port PORT --device ID

Connects with protocol=MQTTv5 (clean start, a session expiry interval), publishes line
protocol and JSON at QoS 1 (one message through a topic alias), a message on another device's
topic (the ACL answers PUBACK 0x87) and a bad payload (dead-lettered, PUBACK 0x00), on one
connection that must stay up throughout; subscribes to its command topic and to another
device's (SUBACK per-filter codes), then disconnects. Prints one JSON object: the values
written and the reason codes seen, so the Rust test can check both. Exits non-zero on any
failure (connect refused, missing PUBACK, connection dropped).
"""

import argparse
import json
import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--device", required=True)
    a = ap.parse_args()

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=a.device, protocol=mqtt.MQTTv5)
    lock = threading.Lock()
    acks = {}  # mid -> reason code value
    granted = []
    connack = {}
    disconnected = []

    def on_connect(client, userdata, flags, reason_code, props):
        connack["code"] = reason_code.value
        connack["topic_alias_max"] = getattr(props, "TopicAliasMaximum", None)
        connack["max_qos"] = getattr(props, "MaximumQoS", None)
        connack["receive_max"] = getattr(props, "ReceiveMaximum", None)

    def on_publish(client, userdata, mid, reason_code, props):
        with lock:
            acks[mid] = reason_code.value

    def on_disconnect(client, userdata, flags, reason_code, props):
        disconnected.append(reason_code.value)

    c.on_connect = on_connect
    c.on_publish = on_publish
    c.on_disconnect = on_disconnect
    c.on_subscribe = lambda client, userdata, mid, reason_codes, props: granted.extend(
        r.value for r in reason_codes
    )
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 60
    c.connect(a.host, a.port, keepalive=30, clean_start=True, properties=props)
    c.loop_start()
    for _ in range(200):
        if connack:
            break
        time.sleep(0.05)
    if connack.get("code") != 0:
        sys.exit(f"CONNACK {connack}")

    def publish(topic, payload, properties=None):
        info = c.publish(topic, payload, qos=1, properties=properties)
        info.wait_for_publish(timeout=10)
        if not info.is_published():
            sys.exit(f"no PUBACK for {topic} {payload!r}")
        for _ in range(200):
            with lock:
                if info.mid in acks:
                    return acks[info.mid]
            time.sleep(0.01)
        sys.exit(f"no reason code for {topic}")

    expected = []
    codes = {}
    for i in range(5):
        line = f"paho5,n=x v={i}i {1000 + i}\npaho5,n=y v={i}i {1000 + i}"
        props = None
        if i >= 3:
            # The first sets alias 1, the next publishes with an empty topic and the alias.
            props = Properties(PacketTypes.PUBLISH)
            props.TopicAlias = 1
        topic = f"telemetry/{a.device}/ignored" if i <= 3 else ""
        codes[f"line{i}"] = publish(topic, line, props)
        expected.append([f"paho5,device={a.device},n=x", "v", 1000 + i, f"{i}i"])
        expected.append([f"paho5,device={a.device},n=y", "v", 1000 + i, f"{i}i"])
    doc = json.dumps([{"ts": 5000 + i, "temp": i + 0.5} for i in range(3)])
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = ("source", "paho")
    props.ContentType = "application/json"
    codes["json"] = publish(f"telemetry/{a.device}/paho5json", doc, props)
    for i in range(3):
        expected.append([f"paho5json,device={a.device}", "temp", (5000 + i) * 1_000_000, f"{i + 0.5}"])
    codes["acl"] = publish("telemetry/someone-else/x", "x v=1 1")
    codes["bad"] = publish(f"telemetry/{a.device}/bad", "this is not line protocol")
    # Still connected after the refusal and the dead letter: one more message goes through.
    codes["after"] = publish(f"telemetry/{a.device}/ignored", "paho5after v=1i 7000")
    expected.append([f"paho5after,device={a.device}", "v", 7000, "1i"])

    c.subscribe([(f"commands/{a.device}/#", 1), ("commands/someone-else/#", 1)])
    for _ in range(200):
        if granted:
            break
        time.sleep(0.05)
    if disconnected:
        sys.exit(f"disconnected by the server: {disconnected}")
    c.disconnect()
    c.loop_stop()
    print(json.dumps({"expected": expected, "codes": codes, "granted": granted, "connack": connack}))


if __name__ == "__main__":
    main()
