"""OPC UA server latency: what a verdict costs the pipeline, and how soon a subscribed client has it.

Usage:
  python bench/opcua.py [--verdicts 300] [--interval-ms 20] [--json-only]

What it measures: the real ``OpcuaPublisher`` on loopback (anonymous allowed, no encryption) and an
asyncua client subscribed to ``Frame`` (publishing interval 10 ms, sampling 0). Each verdict is
published every ``--interval-ms`` (a line at 50 parts/s at 20 ms):

* ``publish_us``: the time ``publish()`` takes on the pipeline's thread (it only queues): the
  latency the OPC UA server adds to inspection;
* ``notify_ms``: from ``publish()`` until the client's data-change notification for that frame
  (node writes + the subscription's publishing cycle + the network stack), p50 / p99 / max.

The client runs in the same process (its own thread and loop), so both share the GIL with the
server's node writes: the tail of ``publish_us`` is that contention, a little worse than in the
daemon. Prints one JSON object, then one human line (unless --json-only). Needs asyncua (``[opcua]``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_inspector.messages import Verdict  # noqa: E402
from edge_inspector.metrics import Metrics  # noqa: E402
from edge_inspector.publishers import OpcuaConfig, create_publisher  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--verdicts", type=int, default=300)
    ap.add_argument("--interval-ms", type=float, default=20.0)
    ap.add_argument("--json-only", action="store_true")
    args = ap.parse_args(argv)
    url = f"opc.tcp://127.0.0.1:{free_port()}/edge-inspector/"
    pub = create_publisher(OpcuaConfig(type="opcua", endpoint=url, allow_anonymous=True), line="bench",
                           metrics=Metrics())
    sent: dict[int, float] = {}
    got: dict[int, float] = {}
    ready = threading.Event()
    done = threading.Event()

    async def client() -> None:
        from asyncua import Client

        class Handler:
            def datachange_notification(self, node, val, data):  # noqa: ANN001 - asyncua's callback
                got.setdefault(int(val), time.perf_counter())

        async with Client(url) as c:
            ns = await c.get_namespace_index("urn:edge-inspector")
            sub = await c.create_subscription(10, Handler())
            await sub.subscribe_data_change(c.get_node(f"ns={ns};s=bench.cam-0.Frame"), sampling_interval=0)
            ready.set()
            while not done.is_set():
                await asyncio.sleep(0.05)

    def verdict(i: int) -> Verdict:
        return Verdict(line="bench", camera="cam-0", frame=i, captured_at="2026-12-01T10:00:00.000Z",
                       verdict="defect" if i % 5 == 0 else "ok", score=0.9 if i % 5 == 0 else 0.1,
                       part_id=f"P-{i}")

    pub.publish(verdict(0))  # creates the camera's nodes
    thread = threading.Thread(target=lambda: asyncio.run(client()), daemon=True)
    thread.start()
    ready.wait(30)
    time.sleep(0.5)
    publish_s = []
    for i in range(1, args.verdicts + 1):
        t = time.perf_counter()
        pub.publish(verdict(i))
        publish_s.append(time.perf_counter() - t)
        sent[i] = t
        time.sleep(args.interval_ms / 1000)
    deadline = time.monotonic() + 5
    while len([i for i in sent if i in got]) < len(sent) and time.monotonic() < deadline:
        time.sleep(0.05)
    done.set()
    thread.join(5)
    pub.close()
    notify = [(got[i] - sent[i]) * 1000 for i in sent if i in got]
    result = {"bench": "opcua_server", "verdicts": len(sent), "notified": len(notify),
              "interval_ms": args.interval_ms,
              "publish_us_p50": round(statistics.median(publish_s) * 1e6, 1),
              "publish_us_p99": round(percentile(publish_s, 0.99) * 1e6, 1),
              "notify_ms_p50": round(statistics.median(notify), 2) if notify else None,
              "notify_ms_p99": round(percentile(notify, 0.99), 2) if notify else None,
              "notify_ms_max": round(max(notify), 2) if notify else None}
    print(json.dumps(result))
    if not args.json_only:
        print(f"OPC UA: publish() adds {result['publish_us_p99']} us p99 to the pipeline; a subscribed client has "
              f"the verdict after {result['notify_ms_p50']} ms p50 / {result['notify_ms_p99']} ms p99 "
              f"({result['notified']}/{result['verdicts']} notified)")
    return 0 if len(notify) == len(sent) else 1


if __name__ == "__main__":
    sys.exit(main())
