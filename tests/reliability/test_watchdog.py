"""The systemd watchdog on the REAL daemon: WATCHDOG=1 pings flow while idle, and stop when the
inference stage hangs inside ONNX Runtime, so systemd (WatchdogSec=) would restart the service.

The hang is real, not mocked: ``build_hanging_detector`` (tests/reliability/helpers.py) is an ONNX
model whose ``Loop`` runs ~1e9 iterations on any real frame. The in-process health logic itself is
unit-tested in tests/runtime/test_pipeline.py::test_watchdog_health_idle_is_healthy_stuck_is_not; this test
proves the whole chain: stuck ORT call -> stale heartbeat -> no datagram on a real NOTIFY_SOCKET.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.fixtures.models import write_frames
from tests.reliability.helpers import DaemonProc, NotifySocket, build_hanging_detector, wait_until, write_cfg


def test_hung_inference_stops_the_watchdog_pings(tmp_path: Path) -> None:
    card = build_hanging_detector(tmp_path / "models")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    cfg = write_cfg(tmp_path / "config.yaml", f"""\
line: wd
cameras:
  - id: cam-0
    source: {{type: folder, path: {inbox}, settle_ms: 20, poll_ms: 20}}
models:
  - path: {card}
metrics: {{enabled: false}}
""")
    notify = NotifySocket(tmp_path / "notify.sock")
    daemon = DaemonProc(["run", "--config", str(cfg)], tmp_path,
                        env={"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "1000000"})  # WatchdogSec=1
    try:
        wait_until(lambda: any(m.startswith("READY=1") for _, m in notify.pump(0.2)), what="READY=1", proc=daemon)
        idle = [t for t, m in notify.pump(1.5) if m.startswith("WATCHDOG=1")]
        assert len(idle) >= 2, "no watchdog pings while healthy and idle"
        write_frames(tmp_path / "staging", n=1)
        shutil.copy(tmp_path / "staging" / "frame_00000.png", inbox / "part.png")  # inference now spins
        wait_until(lambda: "not pinging the watchdog" in daemon.output(), timeout=15, what="stall noticed",
                   proc=daemon)
        notify.pump(0.3)  # discard pings queued in the socket before the stall was noticed
        stalled = [m for _, m in notify.pump(2.5) if m.startswith("WATCHDOG=1")]
        assert stalled == [], f"watchdog still pinged while inference hung: {stalled}"
        assert daemon.proc.poll() is None  # wedged, not crashed: only the watchdog can notice
    finally:
        daemon.kill()  # what systemd does after WatchdogSec without a ping (SIGABRT/SIGKILL)
        notify.close()
