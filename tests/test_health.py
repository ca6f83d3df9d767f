"""``edge-inspector health`` (the container HEALTHCHECK) against a REAL daemon process and its endpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from edge_inspector.commands.health import StallState, assess, metrics_url
from tests.fixtures.broker import free_port
from tests.fixtures.models import write_frames
from tests.runtime.test_daemon import DaemonProc, read_jsonl, wait_until, write_config

ROOT = Path(__file__).resolve().parents[1]


def health(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(cwd)}
    return subprocess.run([sys.executable, "-m", "edge_inspector", "health", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=60)


def test_health_of_a_running_daemon_then_of_a_stopped_one(tmp_path: Path, detector_card: Path) -> None:
    frames = write_frames(tmp_path / "rec", n=20, defect_every=5)
    port = free_port()
    cfg = write_config(tmp_path / "config.yaml", camera=f"{{type: replay, path: {frames}, rate_fps: 20, loop: true}}",
                       models=[detector_card], publishers=f"- {{type: jsonl, path: {tmp_path}/v.jsonl}}\n",
                       metrics_port=port)
    no_daemon = health("--config", str(cfg), cwd=tmp_path)
    assert no_daemon.returncode == 1
    assert f"cannot reach the daemon's metrics endpoint http://127.0.0.1:{port}/metrics" in no_daemon.stdout

    daemon = DaemonProc(["run", "--config", str(cfg)], tmp_path)
    try:
        wait_until(lambda: len(read_jsonl(tmp_path / "v.jsonl")) >= 3, what="first verdicts", proc=daemon)
        res = health("--config", str(cfg), cwd=tmp_path)
        assert res.returncode == 0, res.stdout + res.stderr
        assert res.stdout.startswith("healthy: models tiny-detector 1; sources up 1/1;"), res.stdout
        by_url = health("--url", f"http://127.0.0.1:{port}/metrics", "--require-sources", cwd=tmp_path)
        assert by_url.returncode == 0, by_url.stdout
        not_metrics = health("--url", f"http://127.0.0.1:{port}/nothing-here", cwd=tmp_path)
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
    finally:
        daemon.kill()
    # prometheus_client answers every path with the metrics, so this only proves --url is used
    assert not_metrics.returncode == 0, not_metrics.stdout
    after = health("--config", str(cfg), cwd=tmp_path)
    assert after.returncode == 1 and "unhealthy: cannot reach" in after.stdout


def test_a_config_without_metrics_is_a_clear_error(tmp_path: Path, detector_card: Path) -> None:
    frames = write_frames(tmp_path / "rec", n=2)
    cfg = write_config(tmp_path / "config.yaml", camera=f"{{type: replay, path: {frames}}}", models=[detector_card],
                       publishers="- {type: jsonl, path: v.jsonl}\n", metrics_port=0)
    res = health("--config", str(cfg), cwd=tmp_path)
    assert res.returncode == 1 and "metrics.enabled is false" in res.stdout and str(cfg) in res.stdout
    broken = tmp_path / "broken.yaml"
    broken.write_text("line: [\n")
    res = health("--config", str(broken), cwd=tmp_path)
    assert res.returncode == 1 and res.stdout.startswith("unhealthy:") and "broken.yaml" in res.stdout


def test_metrics_url_reaches_a_wildcard_bind_on_loopback(tmp_path: Path, detector_card: Path) -> None:
    frames = write_frames(tmp_path / "rec", n=2)
    cfg = write_config(tmp_path / "c.yaml", camera=f"{{type: replay, path: {frames}}}", models=[detector_card],
                       publishers="- {type: jsonl, path: v.jsonl}\n", metrics_port=9200)
    cfg.write_text(cfg.read_text().replace("port: 9200}", "port: 9200, host: 0.0.0.0}"))
    assert metrics_url(cfg) == "http://127.0.0.1:9200/metrics"
    assert metrics_url(None) == "http://127.0.0.1:9108/metrics"


TEXT = """# TYPE edge_inspector_model_info gauge
edge_inspector_model_info{backend="onnxruntime",name="m",version="3"} 1.0
# TYPE edge_inspector_source_up gauge
edge_inspector_source_up{camera="cam-0"} {up}
# TYPE edge_inspector_verdicts_total counter
edge_inspector_verdicts_total{camera="cam-0",verdict="ok"} {verdicts}
# TYPE edge_inspector_queue_depth gauge
edge_inspector_queue_depth{queue="infer"} {queued}
"""


def text(verdicts: float = 5, queued: float = 0, up: int = 1) -> str:
    return TEXT.replace("{verdicts}", str(verdicts)).replace("{queued}", str(queued)).replace("{up}", str(up))


def test_stall_is_frames_queued_without_new_verdicts_for_stall_seconds() -> None:
    report, state = assess(text(5, queued=4), None, now=100.0, stall_seconds=60)
    assert report.healthy and state == StallState(5, 100.0) and report.models == ["m 3"]
    report, state = assess(text(5, queued=4), state, now=150.0, stall_seconds=60)
    assert report.healthy and state.since == 100.0  # 50 s: not yet
    report, state = assess(text(5, queued=4), state, now=161.0, stall_seconds=60)
    assert not report.healthy and "4 frame(s) queued but no verdict for 61 s" in report.line()
    report, state = assess(text(6, queued=4), state, now=162.0, stall_seconds=60)
    assert report.healthy and state.since == 162.0  # a verdict came: counting starts again
    report, _ = assess(text(6, queued=0), StallState(6, 0.0), now=1000.0, stall_seconds=60)
    assert report.healthy  # an idle line (nothing queued) is not a stall


def test_no_model_and_required_sources() -> None:
    report, _ = assess("# TYPE edge_inspector_frames_total counter\n", None, now=0, stall_seconds=60)
    assert not report.healthy and "no model loaded" in report.line()
    report, _ = assess(text(up=0), None, now=0, stall_seconds=60)
    assert report.healthy and report.sources_up == 0 and report.sources == 1
    report, _ = assess(text(up=0), None, now=0, stall_seconds=60, require_sources=True)
    assert not report.healthy and "source(s) down: cam-0" in report.line()
