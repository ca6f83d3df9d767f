"""``edge-inspector replay`` as a real process against a real Mosquitto that is down at the end.

Integrators replaying a recorded shift into the MES got exit code 0 and "300 published" while 258
verdicts were still in the MQTT spool. Now the replay waits up to ``--drain-timeout`` for delivery,
says "handed to publishers" vs "delivered", and exits 4 when verdicts remain undelivered.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import pytest

from edge_inspector.publishers.spool import Spool
from tests.fixtures.broker import MOSQUITTO, Mosquitto
from tests.fixtures.models import write_frames
from tests.lineops.util import write_config

N = 5

pytestmark = pytest.mark.skipif(not shutil.which(MOSQUITTO), reason="mosquitto not installed")


def _setup(tmp_path, detector_card) -> tuple[Mosquitto, list[str]]:
    (tmp_path / "broker-dir").mkdir(exist_ok=True)
    broker = Mosquitto(tmp_path / "broker-dir")
    replay = write_frames(tmp_path / "replay", n=N, defect_every=2)
    cfg = write_config(tmp_path / "config.yaml", replay=replay, models=f"- path: {detector_card}",
                       publishers=f"- {{type: mqtt, host: {broker.host}, port: {broker.port}, topic_prefix: rp, "
                                  f"spool_dir: {tmp_path}/spool, reconnect_min_delay: 0.1, "
                                  "reconnect_max_delay: 0.3}")
    cmd = [sys.executable, "-m", "edge_inspector", "replay", str(replay), "--config", str(cfg)]
    return broker, cmd


def test_broker_down_at_the_end_exits_4_and_says_undelivered(tmp_path, detector_card):
    broker, cmd = _setup(tmp_path, detector_card)  # never started: the broker is down throughout
    t0 = time.monotonic()
    proc = subprocess.run([*cmd, "--drain-timeout", "1.5"], capture_output=True, text=True, timeout=90)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 4, out
    assert f"{N} published (handed to publishers), {N} NOT delivered" in out, out
    assert "not delivered within --drain-timeout" in out, out
    assert time.monotonic() - t0 >= 1.5


def test_broker_back_during_the_drain_timeout_delivers_everything_and_exits_0(tmp_path, detector_card):
    broker, cmd = _setup(tmp_path, detector_card)
    proc = subprocess.Popen([*cmd, "--drain-timeout", "30"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        time.sleep(4.0)  # the replay is done long before; the daemon waits for the broker
        assert proc.poll() is None, proc.communicate()[0]
        broker.start()
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
        assert f"{N} published (handed to publishers), all delivered" in out, out
        spool = Spool(tmp_path / "spool", 1000, "drop-oldest")  # the broker acknowledged every one
        assert len(spool) == 0
        spool.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        broker.stop()
