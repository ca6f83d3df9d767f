"""Minimal MES/PLC-side consumer of edge-inspector verdicts over MQTT.

Why it dedupes: the daemon delivers every verdict *at least once* (it re-sends what the broker had
not acknowledged before a crash or an outage), so the same verdict can arrive twice, byte for byte.
(camera, frame) identifies a verdict while the daemon runs; frame numbers start again at 0 when it
restarts, so the key also holds captured_at (and the line, for several lines on one broker).
Why a persistent session (fixed client id, clean_session=False, QoS 1): the broker then
keeps the verdicts published while this consumer is down and hands them over when it returns.

Run:  python mqtt_consumer.py --host broker.plant.local [--count N]
      python mqtt_consumer.py --host broker.plant.local --port 8883 --cafile ca.crt \
          --username mes --password-file mes.pw        # the shipped broker config (TLS, no anonymous)
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
from collections import OrderedDict

import paho.mqtt.client as mqtt


class Deduper:
    """Remembers the most recent keys (bounded), answering 'seen before?' in O(1)."""

    def __init__(self, size: int = 100_000) -> None:
        self.size = size
        self.seen: OrderedDict[tuple, None] = OrderedDict()

    def first_time(self, key: tuple) -> bool:
        if key in self.seen:
            self.seen.move_to_end(key)
            return False
        self.seen[key] = None
        if len(self.seen) > self.size:
            self.seen.popitem(last=False)
        return True


def handle(verdict: dict) -> None:
    """Your integration goes here: write to the MES, set a PLC tag, divert the part, ..."""
    if verdict["verdict"] == "ok":
        action = "pass"
    elif verdict["verdict"] == "defect":
        action = f"reject ({verdict.get('defect_type') or 'defect'}, score {verdict.get('score')})"
    else:  # "error": the part was NOT inspected (bad frame, model failure): never treat it as ok
        action = f"hold for manual check ({verdict.get('error')})"
    part = f" part {verdict['part_id']}" if verdict.get("part_id") else ""  # schema 2, when the trigger names it
    print(f"{verdict['line']}/{verdict['camera']} frame {verdict['frame']}{part}: {action}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--prefix", default="edge-inspector", help="the daemon's topic_prefix")
    parser.add_argument("--client-id", default="mes-consumer-1", help="fixed, so the broker keeps our session")
    parser.add_argument("--count", type=int, default=0, help="stop after this many distinct verdicts (0 = never)")
    parser.add_argument("--cafile", help="CA certificate of the broker: connect with TLS (port 8883 usually)")
    parser.add_argument("--cert", help="client certificate, for a broker that asks for one (with --key)")
    parser.add_argument("--key", help="private key of --cert")
    parser.add_argument("--username", help="broker user name (deploy/mosquitto has allow_anonymous false)")
    parser.add_argument("--password-file", help="file holding the broker password")
    args = parser.parse_args()

    dedupe = Deduper()
    handled = 0
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=args.client_id, clean_session=False)
    if args.username:
        password = None
        if args.password_file:
            with open(args.password_file, encoding="utf-8") as fh:
                password = fh.read().rstrip("\r\n")
        client.username_pw_set(args.username, password)
    if args.cafile:
        client.tls_set(ca_certs=args.cafile, certfile=args.cert, keyfile=args.key)

    def on_connect(client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            print(f"broker refused the connection: {reason_code}", flush=True)
            return
        client.subscribe([(f"{args.prefix}/+/+/verdict", 1), (f"{args.prefix}/+/status", 1)])

    def on_message(client, userdata, msg):
        nonlocal handled
        if msg.topic.endswith("/status"):  # retained "online", or "offline" (clean stop or last will)
            print(f"{msg.topic}: {msg.payload.decode()}", flush=True)
            return
        verdict = json.loads(msg.payload)
        if verdict.get("schema") not in (1, 2):  # 2 adds the optional part_id / triggered_at
            print(f"skipping a message of unknown schema {verdict.get('schema')!r}", flush=True)
            return
        key = (verdict["line"], verdict["camera"], verdict["frame"], verdict["captured_at"])
        if not dedupe.first_time(key):
            return  # a re-delivery of a verdict already handled
        handle(verdict)
        handled += 1
        if args.count and handled >= args.count:
            client.disconnect()

    def on_connect_fail(client, userdata):
        print(f"cannot reach broker {args.host}:{args.port}; retrying", flush=True)

    client.on_connect = on_connect
    client.on_message = on_message
    client.on_connect_fail = on_connect_fail
    try:
        client.connect(args.host, args.port, keepalive=30)
    except ssl.SSLCertVerificationError as exc:  # name the TLS problem: it never fixes itself
        sys.exit(f"TLS certificate verify failed for {args.host}:{args.port}: {exc.verify_message} "
                 f"(check --cafile and that the certificate names {args.host})")
    except ssl.SSLError as exc:
        sys.exit(f"TLS handshake with {args.host}:{args.port} failed: {exc.reason} (is it a TLS port?)")
    except OSError as exc:
        print(f"cannot reach broker {args.host}:{args.port} ({exc}); retrying", flush=True)
        client.connect_async(args.host, args.port, keepalive=30)
    client.loop_forever(retry_first_connection=True)


if __name__ == "__main__":
    main()
