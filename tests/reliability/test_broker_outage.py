"""Broker outage during a replay through the REAL daemon, with a SIGKILL of the daemon mid-outage.

What the publisher tests (tests/publishers/test_mqtt.py) already prove on the publisher object:
outage mid-stream, spool reopen, overflow policy, PUBACK-only removal. What only a process shows:
the spool that a *killed* daemon leaves behind is delivered by the next daemon, before its own new
verdicts, and the consumer's (camera, frame) dedupe yields every frame exactly once, in order.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from tests.fixtures.models import write_frames
from tests.reliability.helpers import DaemonProc, spool_count, wait_until, write_cfg

N = 40


def test_outage_and_sigkill_lose_nothing_and_keep_order(tmp_path: Path, detector_card: Path, mosquitto,
                                                        mqtt_subscriber) -> None:
    frames = write_frames(tmp_path / "rec", n=N, defect_every=4)
    spool = tmp_path / "spool"
    sub = mqtt_subscriber("edge-inspector/outage/+/verdict")
    cfg = write_cfg(tmp_path / "config.yaml", f"""\
line: outage
cameras:
  - id: cam-0
    source: {{type: replay, path: {frames}, rate_fps: 10}}
models:
  - path: {detector_card}
publishers:
  - type: mqtt
    host: 127.0.0.1
    port: {mosquitto.port}
    spool_dir: {spool}
    reconnect_min_delay: 0.5
    reconnect_max_delay: 1.0
metrics: {{enabled: false}}
""")
    first = DaemonProc(["run", "--config", str(cfg)], tmp_path)
    try:
        sub.wait_for(4, timeout=30)
        mosquitto.stop()  # outage: the daemon keeps inspecting, verdicts go to the spool
        wait_until(lambda: spool_count(spool) >= 6, what="verdicts spooled during the outage", proc=first)
        first.proc.send_signal(signal.SIGKILL)  # no drain, no close: only the fsync'd spool remains
        first.proc.wait(10)
        left_behind = spool_count(spool)
        assert left_behind >= 6
        second = DaemonProc(["run", "--config", str(cfg)], tmp_path)
        try:
            wait_until(lambda: "opened" in second.output(), what="second daemon running", proc=second)
            time.sleep(0.5)
            mosquitto.start()  # the broker comes back (empty: persistence off)
            assert second.wait(60) == 0, second.output()[-3000:]  # finite replay: drains the spool and exits
        finally:
            second.kill()
    finally:
        first.kill()
        if not mosquitto.running:
            mosquitto.start()
    got = sub.wait_for(left_behind + N, timeout=20)
    assert spool_count(spool) == 0, "spool not emptied after delivery"
    verdicts = [json.loads(m.payload) for m in got]
    assert {m.topic for m in got} == {"edge-inspector/outage/cam-0/verdict"}
    seen: dict[int, dict] = {}
    order = []
    for v in verdicts:  # what a consumer does: dedupe on (camera, frame)
        key = v["frame"]
        if key in seen:
            assert v["verdict"] == seen[key]["verdict"] and v["source"] == seen[key]["source"], "dup differs"
            continue
        seen[key] = v
        order.append(key)
    assert order == list(range(N)), f"gaps or reordering: {order}"
    assert len(verdicts) >= left_behind + N  # the killed daemon's spool was delivered, not dropped
    assert [seen[i]["verdict"] for i in range(N)] == ["defect" if i % 4 == 3 else "ok" for i in range(N)]
