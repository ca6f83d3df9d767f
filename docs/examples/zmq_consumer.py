"""Minimal consumer of edge-inspector verdicts over ZeroMQ (no broker: connects to the daemon).

ZeroMQ PUB/SUB is best effort: a subscriber that is not connected misses what is published
meanwhile, and the daemon drops messages rather than block when a subscriber is too slow. Use it for
local displays and fast gateways; use MQTT where every verdict must arrive.

Run:  python zmq_consumer.py --endpoint tcp://127.0.0.1:5556 [--count N]
"""

from __future__ import annotations

import argparse
import json

import zmq


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", default="tcp://127.0.0.1:5556", help="the daemon's zmq endpoint")
    parser.add_argument("--topic", default="edge-inspector/", help="topic prefix to subscribe to")
    parser.add_argument("--count", type=int, default=0, help="stop after this many verdicts (0 = never)")
    args = parser.parse_args()

    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.connect(args.endpoint)
    sub.setsockopt_string(zmq.SUBSCRIBE, args.topic)  # e.g. "edge-inspector/line-1/cam-0/"
    received = 0
    while not args.count or received < args.count:
        topic, payload = sub.recv_multipart()  # [b"<prefix>/<line>/<camera>/verdict", b"{...json...}"]
        if not topic.endswith(b"/verdict"):  # operations messages share the prefix: .../alarm, .../shadow
            print(f"{topic.decode()}: {payload.decode()}", flush=True)
            continue
        verdict = json.loads(payload)
        print(f"{topic.decode()}: frame {verdict['frame']} {verdict['verdict']} score {verdict['score']}", flush=True)
        received += 1
    sub.close()


if __name__ == "__main__":
    main()
