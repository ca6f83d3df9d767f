"""A Mosquitto bridge from a line broker to a plant broker loses no verdict across a plant outage.

Two real brokers: the line broker runs deploy/mosquitto/bridge.conf as shipped (only its address
points at the test's plant broker), the plant broker keeps its sessions (``persistence true``). A
real daemon (`edge-inspector run`, watched folder, MQTT to its own line broker) inspects frames;
the console's follower reads the plant broker. The plant broker and the console are stopped while
the line keeps inspecting; the broker comes back first and the bridge forwards the backlog, then
the console: every verdict the daemon published is in the console's database, once.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_inspector.console.models import LineStatus, Verdict
from edge_inspector.console.mqtt_feed import MqttFeedConfig, MqttVerdictSubscriber
from tests.fixtures.broker import MOSQUITTO, Mosquitto, MqttCollector
from tests.fixtures.models import make_model
from tests.fixtures.waiting import wait_for

from .conftest import REPO

BRIDGE_CONF = REPO / "deploy" / "mosquitto" / "bridge.conf"
LINE = "line-1"  # the line bridge.conf is written for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (Path(MOSQUITTO).exists() or shutil.which(MOSQUITTO)),
                       reason=f"{MOSQUITTO} not installed (apt-get install mosquitto)"),
]


def bridge_lines(plant: Mosquitto) -> list[str]:
    """deploy/mosquitto/bridge.conf with its address pointing at ``plant``; nothing else changed."""
    lines = []
    for raw in BRIDGE_CONF.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        lines.append(f"address {plant.host}:{plant.port}" if line.startswith("address ") else line)
    assert any(x.startswith("connection ") for x in lines) and "cleansession false" in lines
    return lines


wait_for = partial(wait_for, poll=0.1)  # page/broker polls need not spin faster


def drop_frames(inbox: Path, start: int, n: int) -> None:
    rng = np.random.default_rng(start)
    for i in range(start, start + n):
        img = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
        tmp = inbox / f".part-{i:04d}.png"
        cv2.imwrite(str(tmp), img)
        tmp.rename(inbox / f"part-{i:04d}.png")


def jsonl_frames(path: Path) -> list[int]:
    if not path.exists():
        return []
    return [json.loads(x)["frame"] for x in path.read_text().splitlines() if x.strip()]


@pytest.fixture
def plant_and_line(tmp_path):
    (tmp_path / "plant").mkdir()
    (tmp_path / "line").mkdir()
    plant = Mosquitto(tmp_path / "plant", persistence=True)
    plant.start()
    line = Mosquitto(tmp_path / "line", extra_config=bridge_lines(plant))
    line.start()
    try:
        yield plant, line
    finally:
        line.stop()
        plant.stop()


def test_no_verdict_lost_across_a_plant_broker_outage(plant_and_line, committed_db, tmp_path):
    plant, line = plant_and_line
    ours = Verdict.objects.filter(line=LINE)  # (on a shared PostgreSQL, other tests' consoles write too)
    bridge_state = MqttCollector(plant.host, plant.port, f"$SYS/broker/connection/edge-inspector-bridge-{LINE}/state")
    feed = MqttFeedConfig(host=plant.host, port=plant.port, client_id=f"console-{uuid.uuid4().hex[:8]}",
                          reconnect_min_delay=0.1, reconnect_max_delay=0.5, keepalive=5)
    follower = MqttVerdictSubscriber(feed, prune_every_s=3600)
    follower.start()
    inbox, models = tmp_path / "inbox", tmp_path / "models"
    inbox.mkdir()
    card = make_model(models, "detector", name="bridge-fm", size=64)
    jsonl, daemon_log = tmp_path / "verdicts.jsonl", tmp_path / "daemon.log"
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        f"line: {LINE}\ncameras:\n  - id: cam-0\n    source: {{type: folder, path: {inbox}, settle_ms: 50, "
        f"poll_ms: 50}}\nmodels:\n  - path: {card}\n    threads: 1\n"
        f"publishers:\n  - {{type: mqtt, host: {line.host}, port: {line.port}, spool_dir: {tmp_path / 'spool'}, "
        f"reconnect_min_delay: 0.2, reconnect_max_delay: 1.0}}\n"
        f"  - {{type: jsonl, path: {jsonl}}}\n"
        f"metrics: {{enabled: false}}\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    logs = (daemon_log, line.log, plant.log)
    daemon = subprocess.Popen([sys.executable, "-m", "edge_inspector", "run", "--config", str(cfg)],
                              stdout=open(daemon_log, "wb"), stderr=subprocess.STDOUT, env=env)  # noqa: SIM115
    try:
        assert follower.subscribed.wait(10), "console follower did not subscribe to the plant broker"
        wait_for(lambda: any(m.payload == b"1" for m in bridge_state.messages), 20, "the bridge to connect", logs)
        wait_for(lambda: LineStatus.objects.filter(line=LINE, state="online").exists(), 60,
                 "the daemon's retained 'online' through the bridge", logs)

        drop_frames(inbox, 0, 10)
        wait_for(lambda: ours.count() >= 10, 60, "10 verdicts through the bridge", logs)

        # Plant maintenance, the worst order: the plant broker and the console go away while the line keeps
        # inspecting; the broker comes back and the bridge delivers the backlog before the console returns.
        plant.stop()
        follower.stop()
        drop_frames(inbox, 10, 15)
        wait_for(lambda: len(jsonl_frames(jsonl)) >= 25, 60, "the daemon to inspect 15 frames more", logs)
        time.sleep(1.0)  # the line broker has acknowledged them to the daemon and queued them for the bridge
        assert ours.count() == 10
        ups = sum(m.payload == b"1" for m in bridge_state.messages)
        plant.start()
        wait_for(lambda: sum(m.payload == b"1" for m in bridge_state.messages) > ups, 30, "the bridge to reconnect",
                 logs)
        time.sleep(1.5)  # the bridge forwards its backlog into the console's stored session
        follower = MqttVerdictSubscriber(feed, prune_every_s=3600)  # the console restarts: same session id
        follower.start()
        wait_for(lambda: ours.count() >= 25, 60, "the 15 verdicts queued across the outage", logs)
        drop_frames(inbox, 25, 5)
        wait_for(lambda: ours.count() >= 30, 60, "5 more verdicts", logs)
        assert bridge_state.messages[-1].payload == b"1"  # the plant sees the bridge up, not a stale "0"
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(30)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
        follower.stop()
        bridge_state.close()
    published = jsonl_frames(jsonl)
    stored = sorted(Verdict.objects.filter(line=LINE).values_list("frame", flat=True))
    assert len(published) == 30 and sorted(published) == stored, (published, stored)
    assert follower.rejected == 0
    LineStatus.objects.all().delete()
