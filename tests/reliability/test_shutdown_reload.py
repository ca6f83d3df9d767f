"""Shutdown and reload under load on the REAL daemon, with MQTT (spool) and JSONL both attached.

Covered elsewhere, not repeated: SIGTERM mid-replay drains every grabbed frame to JSONL
(tests/runtime/test_daemon.py::test_sigterm_mid_replay_publishes_everything_grabbed); SIGKILL then restart
delivers the spool with duplicates only of the same frame (test_broker_outage.py).
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from tests.fixtures.models import write_frames
from tests.reliability.helpers import DaemonProc, read_jsonl, spool_count, wait_until, write_cfg


def config(tmp_path: Path, frames: Path, model: Path, mosquitto, line: str, rate: float, queue: int = 8) -> str:
    return f"""\
line: {line}
cameras:
  - id: cam-0
    source: {{type: replay, path: {frames}, rate_fps: {rate}}}
    queue_size: {queue}
models:
  - path: {model}
publishers:
  - {{type: mqtt, host: 127.0.0.1, port: {mosquitto.port}, spool_dir: {tmp_path}/spool}}
  - {{type: jsonl, path: {tmp_path}/verdicts.jsonl}}
inference: {{batch_max: 2}}
metrics: {{enabled: false}}
"""


def test_sigterm_with_full_queues_publishes_everything_and_exits_in_time(tmp_path: Path, detector_card: Path,
                                                                          mosquitto, mqtt_subscriber) -> None:
    frames = write_frames(tmp_path / "rec", n=400, size=96)
    sub = mqtt_subscriber("edge-inspector/term/+/verdict")
    cfg = write_cfg(tmp_path / "config.yaml", config(tmp_path, frames, detector_card, mosquitto, "term", 0, 200))
    daemon = DaemonProc(["run", "--config", str(cfg)], tmp_path)
    try:
        wait_until(lambda: len(read_jsonl(tmp_path / "verdicts.jsonl")) >= 10, what="first verdicts", proc=daemon)
        t0 = time.monotonic()
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(30) == 0, daemon.output()[-3000:]
        took = time.monotonic() - t0
    finally:
        daemon.kill()
    line = next(ln for ln in daemon.output().splitlines() if "stopped:" in ln)
    grabbed = int(line.split("stopped: ")[1].split(" frames")[0])
    assert grabbed < 400, "SIGTERM came after the replay ended: nothing was in flight"
    out = read_jsonl(tmp_path / "verdicts.jsonl")
    assert [v["frame"] for v in out] == list(range(grabbed))  # every grabbed frame decided and written
    got = sub.wait_for(grabbed, timeout=20)
    assert sorted({json.loads(m.payload)["frame"] for m in got}) == list(range(grabbed))  # ... and sent
    assert spool_count(tmp_path / "spool") == 0  # close() waited for every PUBACK
    assert took < 20, f"shutdown took {took:.1f} s"


def test_twenty_sighups_during_a_replay_lose_no_frame(tmp_path: Path, tiny_models: Path, mosquitto,
                                                      mqtt_subscriber) -> None:
    n = 120
    frames = write_frames(tmp_path / "rec", n=n, defect_every=4)
    sub = mqtt_subscriber("edge-inspector/hup/+/verdict")
    a, b = tiny_models / "tiny-detector.card.json", tiny_models / "tiny-detector-b.card.json"
    cfg = tmp_path / "config.yaml"
    write_cfg(cfg, config(tmp_path, frames, a, mosquitto, "hup", 30))
    daemon = DaemonProc(["run", "--config", str(cfg)], tmp_path)
    try:
        wait_until(lambda: len(read_jsonl(tmp_path / "verdicts.jsonl")) >= 3, what="first verdicts", proc=daemon)
        for i in range(20):  # alternate models: every accepted reload swaps the generation mid-stream
            cfg.write_text(config(tmp_path, frames, b if i % 2 == 0 else a, mosquitto, "hup", 30))
            daemon.signal(signal.SIGHUP)
            time.sleep(0.12)
        assert daemon.wait(60) == 0, daemon.output()[-3000:]  # the finite replay ends, the daemon exits
    finally:
        daemon.kill()
    log = daemon.output()
    assert log.count("reloaded") >= 5, "too few reloads took effect to test anything"
    out = read_jsonl(tmp_path / "verdicts.jsonl")
    assert [v["frame"] for v in out] == list(range(n))  # none lost, none repeated
    assert [v["verdict"] for v in out] == ["defect" if i % 4 == 3 else "ok" for i in range(n)]
    assert {v["models"][0]["name"] for v in out} == {"tiny-detector", "tiny-detector-b"}
    got = sub.wait_for(n, timeout=20)
    frames_sent = [json.loads(m.payload)["frame"] for m in got]
    first = list(dict.fromkeys(frames_sent))
    assert first == list(range(n))  # MQTT: every frame, in order (reused session across reloads)
