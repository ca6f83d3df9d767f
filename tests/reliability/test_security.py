"""Security defaults of the REAL daemon: metrics on loopback only, no secret in the logs (even at
DEBUG), camera ids that could escape the saved-frames folder refused, and an unreachable broker at
start that spools instead of stopping the line.

Not repeated here: model files are loaded only through ONNX Runtime after a sha256 check, and a
pickle (.pt) with a matching card is refused: tests/reliability/test_bad_config.py ('pickle model',
'sha256 mismatch'); MQTT TLS and password-file auth: tests/publishers/test_mqtt_tls.py,
tests/publishers/test_mqtt.py::test_password_file_auth_and_refused_connection.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge_inspector.config import ConfigError, parse_config
from tests.fixtures.broker import free_port
from tests.fixtures.models import write_frames
from tests.reliability.helpers import DaemonProc, read_jsonl, spool_count, wait_until, write_cfg

SECRET = "Sup3r-S3cret-Pa55"


def listening(port: int) -> list[str]:
    """Local addresses (hex, as in /proc/net/tcp*) of LISTEN sockets on ``port``."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            addr, hexport = fields[1].split(":")
            if int(hexport, 16) == port and fields[3] == "0A":  # 0A = TCP_LISTEN
                found.append(addr)
    return found


def test_metrics_loopback_by_default_and_no_secret_in_debug_logs_with_broker_down(tmp_path: Path,
                                                                                   detector_card: Path) -> None:
    frames = write_frames(tmp_path / "rec", n=5)
    mport, dead_broker = free_port(), free_port()  # nothing listens on dead_broker: unreachable at start
    jsonl, spool = tmp_path / "verdicts.jsonl", tmp_path / "spool"
    cfg = write_cfg(tmp_path / "config.yaml", f"""\
line: sec
cameras:
  - id: cam-0
    source: {{type: replay, path: {frames}, rate_fps: 5}}
models:
  - path: {detector_card}
publishers:
  - {{type: mqtt, host: 127.0.0.1, port: {dead_broker}, username: line, password: "{SECRET}",
     spool_dir: {spool}, reconnect_min_delay: 0.2, reconnect_max_delay: 0.5}}
  - {{type: jsonl, path: {jsonl}}}
metrics: {{port: {mport}}}
logging: {{level: DEBUG}}
""")
    daemon = DaemonProc(["--verbose", "run", "--config", str(cfg)], tmp_path)  # DEBUG for every logger
    try:
        wait_until(lambda: listening(mport), what="metrics socket", proc=daemon)
        assert listening(mport) == ["0100007F"], listening(mport)  # 127.0.0.1 only, no 0.0.0.0 or ::
        assert daemon.wait(60) == 0, daemon.output()[-3000:]  # the broker never came: still exit 0
    finally:
        daemon.kill()
    assert len(read_jsonl(jsonl)) == 5  # the line kept inspecting
    assert spool_count(spool) == 5  # and every MQTT verdict waits in the spool for the broker
    log = daemon.output()
    assert "cannot reach broker" in log  # the failures were logged (at DEBUG level and up) ...
    assert SECRET not in log  # ... without the password
    check = subprocess.run([sys.executable, "-m", "edge_inspector", "--verbose", "check-config", str(cfg)],
                           capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert "mqtt" in check.stdout + check.stderr and SECRET not in check.stdout + check.stderr
    assert SECRET not in (tmp_path / "verdicts.jsonl").read_text()


@pytest.mark.parametrize("camera_id", ["../x", "..", "a/b", "/etc", "x\\..\\y", ".hidden", "a b", ""])
def test_camera_ids_that_could_escape_the_frames_folder_are_refused(camera_id: str, tmp_path: Path) -> None:
    text = (f"line: l\ncameras:\n  - {{id: '{camera_id}', source: {{type: camera, device: 0}}}}\n"
            "models: [{path: m.card.json}]\nsaving: {mode: all, dir: frames}\n")
    with pytest.raises(ConfigError, match=r"cameras\[0\]\.id"):
        parse_config(text, "config.yaml", base=tmp_path)


def test_daemon_refuses_a_traversal_camera_id_and_a_traversal_line(tmp_path: Path, detector_card: Path) -> None:
    frames = write_frames(tmp_path / "rec", n=1)
    cfg = write_cfg(tmp_path / "config.yaml", f"""\
line: ../../etc
cameras:
  - {{id: ../../x, source: {{type: replay, path: {frames}}}}}
models: [{{path: {detector_card}}}]
saving: {{mode: all, dir: frames}}
metrics: {{enabled: false}}
""")
    daemon = DaemonProc(["run", "--config", str(cfg)], tmp_path)
    assert daemon.wait(30) == 1
    out = daemon.output()
    assert "cameras[0].id" in out and "line" in out and "Traceback" not in out
    assert not (tmp_path / "frames").exists() and not (tmp_path / "x").exists()
