"""How fast the console's plant follower stores verdicts from many lines, on SQLite and PostgreSQL.

A real Mosquitto (Mosquitto's default in-flight window of 20 per client) and the console's real
``MqttVerdictSubscriber`` (persistent session, PUBACK after commit) writing into a fresh SQLite file
or a throwaway PostgreSQL cluster (tests/fixtures/postgres.py). ``--lines`` publishers (one paho
client each, QoS 1) send ``--verdicts`` verdicts in all; the figure is verdicts stored per second,
from the first publish until the last row is in the database, and the backlog case: the same
number published while the console is stopped, then drained by a console started afterwards.

    .venv/bin/python bench/plant_feed.py [--verdicts 5000] [--lines 4] [--db sqlite,postgres]

Prints one JSON object, then one line per database. Each database runs in a child process
(Django is configured once per process). The machine's CPUs may be shared: say so when quoting.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def child(db: str, n: int, lines: int) -> dict:
    from tests.fixtures.broker import Mosquitto

    work = Path(tempfile.mkdtemp(prefix="plant-feed-bench-"))
    cluster = None
    if db == "postgres":
        from tests.fixtures.postgres import start_cluster

        cluster = start_cluster()
        os.environ["DATABASE_URL"] = cluster.create_database("bench")
    else:
        os.environ["DATABASE_URL"] = f"sqlite:///{work / 'console.sqlite3'}"
    os.environ["EDGE_INSPECTOR_DATA_DIR"] = str(work / "data")
    os.environ["DJANGO_SETTINGS_MODULE"] = "edge_inspector.console.settings"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from edge_inspector.console.models import Verdict
    from edge_inspector.console.mqtt_feed import MqttFeedConfig, MqttVerdictSubscriber
    from edge_inspector.messages import Verdict as Message
    from edge_inspector.messages import utc_now_iso

    (work / "broker").mkdir()
    # The queue bound of deploy/mosquitto/mosquitto.conf: Mosquitto's default (1000 per client) would
    # drop a console's backlog beyond 1000 verdicts.
    broker = Mosquitto(work / "broker", extra_config=["max_queued_messages 100000"])
    broker.start()
    feed = MqttFeedConfig(host=broker.host, port=broker.port, client_id=f"bench-{uuid.uuid4().hex[:6]}")
    pubs = []
    for i in range(lines):
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"line-{i}")
        c.max_queued_messages_set(0)
        c.max_inflight_messages_set(100)
        c.connect(broker.host, broker.port)
        c.loop_start()
        pubs.append(c)

    def publish(offset: int) -> None:
        infos = []
        for k in range(n):
            line = k % lines
            msg = Message(line=f"line-{line}", camera=f"cam-{k % 2}", frame=offset + k, captured_at=utc_now_iso(),
                          verdict="defect" if k % 7 == 0 else "ok", score=0.2, latency_ms={"total": 4.0})
            infos.append(pubs[line].publish(f"edge-inspector/line-{line}/cam-{k % 2}/verdict", msg.to_json(), qos=1))
        for info in infos:
            info.wait_for_publish(60)

    def wait_rows(total: int, stall_s: float = 10.0) -> None:
        """Until ``total`` rows are stored, or nothing new arrived for ``stall_s`` (then rows were lost)."""
        seen, last_change = -1, time.monotonic()
        while (count := Verdict.objects.count()) < total:
            if count != seen:
                seen, last_change = count, time.monotonic()
            elif time.monotonic() - last_change > stall_s:
                return
            time.sleep(0.05)

    try:
        sub = MqttVerdictSubscriber(feed, prune_every_s=3600)
        sub.start()
        sub.subscribed.wait(10)
        t0 = time.perf_counter()
        publish(0)
        wait_rows(n)
        live_s = time.perf_counter() - t0
        sub.stop()
        publish(n)  # the console is away: the broker queues for its session
        sub = MqttVerdictSubscriber(feed, prune_every_s=3600)
        t0 = time.perf_counter()
        sub.start()
        wait_rows(2 * n)
        backlog_s = time.perf_counter() - t0
        sub.stop()
        stored = Verdict.objects.count()
    finally:
        for c in pubs:
            c.disconnect()
            c.loop_stop()
        broker.stop()
        if cluster is not None:
            cluster.stop()
    return {"db": db, "verdicts": n, "lines": lines, "live_s": round(live_s, 3),
            "live_per_s": round(n / live_s, 1), "backlog_s": round(backlog_s, 3),
            "backlog_per_s": round(n / backlog_s, 1), "stored": stored, "lost": 2 * n - stored,
            "inflight_window": 20, "max_queued_messages": 100000}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--verdicts", type=int, default=5000)
    ap.add_argument("--lines", type=int, default=4)
    ap.add_argument("--db", default="sqlite,postgres")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.verdicts, args.lines)))
        return 0
    results = []
    for db in args.db.split(","):
        proc = subprocess.run([sys.executable, __file__, "--child", db, "--verdicts", str(args.verdicts),
                               "--lines", str(args.lines)], capture_output=True, text=True, timeout=1200,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
        if proc.returncode != 0:
            results.append({"db": db, "error": (proc.stderr or proc.stdout)[-800:]})
            continue
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(json.dumps({"bench": "plant_feed", "results": results}, indent=1))
    for r in results:
        if "error" in r:
            print(f"{r['db']}: failed: {r['error']}")
            continue
        print(f"{r['db']}: {r['verdicts']} verdicts from {r['lines']} lines stored at {r['live_per_s']:.0f}/s live, "
              f"{r['backlog_per_s']:.0f}/s draining a backlog (in-flight window {r['inflight_window']}); "
              f"{r['stored']} rows, {r['lost']} lost")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
