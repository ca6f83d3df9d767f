"""Promote against a real daemon process: the promoted model must be what runs, confirmed by the daemon.

Integrators trained a model under a new name in the console and promoted it: the console showed
a green "deployed" while the daemon reloaded its old card, because ``config.yaml`` still named it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge_inspector.card import sha256_file
from edge_inspector.console.models import AuditLog
from edge_inspector.console.registry import register_card
from edge_inspector.deploy_model import live_models
from tests.fixtures.broker import free_port
from tests.fixtures.models import build_detector_onnx, make_model

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def daemon(tmp_path):
    """A real `edge-inspector run` on a watched folder, running the card models/old-fm, metrics on a free port."""
    root = tmp_path / "line"
    models_dir = root / "models"
    make_model(models_dir, name="old-fm")
    inbox = root / "inbox"
    inbox.mkdir(parents=True)
    port = free_port()
    cfg = root / "config.yaml"
    cfg.write_text(
        "# line config, edited by the console's promote\n"
        "line: line1\n"
        f"cameras:\n  - id: cam1\n    source: {{type: folder, path: {inbox}, poll_ms: 50, settle_ms: 50}}\n"
        "models:\n  - path: models/old-fm.card.json   # the slot promote replaces\n    threads: 1\n"
        f"publishers:\n  - {{type: jsonl, path: {root}/verdicts.jsonl}}\n"
        f"metrics: {{enabled: true, host: 127.0.0.1, port: {port}}}\n")
    pid_file, log = root / "daemon.pid", root / "daemon.log"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    proc = subprocess.Popen([sys.executable, "-m", "edge_inspector", "run", "--config", str(cfg), "--pid-file",
                             str(pid_file)], stdout=open(log, "wb"), stderr=subprocess.STDOUT, env=env)  # noqa: SIM115
    url = f"http://127.0.0.1:{port}/metrics"
    deadline = time.monotonic() + 30
    while True:
        try:
            if live_models(url):
                break
        except OSError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.1)
    yield {"proc": proc, "config": cfg, "models_dir": models_dir, "pid_file": pid_file, "url": url, "log": log}
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _settings(settings_console, daemon) -> None:
    settings_console.update(MODELS_DIR=daemon["models_dir"], DAEMON_PID_FILE=daemon["pid_file"],
                            DAEMON_CONFIG=daemon["config"], DAEMON_METRICS=daemon["url"], PROMOTE_CONFIRM_S=8)


def test_promote_under_a_new_name_changes_what_runs_and_is_confirmed(client, settings_console, daemon, tmp_path):
    _settings(settings_console, daemon)
    trained = register_card(make_model(tmp_path / "job" / "model", name="new-fm"))
    page = client.post(f"/models/{trained.pk}/promote", follow=True).content.decode()
    assert "The daemon confirms new-fm v1 is live" in page, page
    assert [m["name"] for m in live_models(daemon["url"])] == ["new-fm"]
    text = daemon["config"].read_text()
    assert "models/new-fm.card.json" in text and "# the slot promote replaces" in text  # comments kept
    trained.refresh_from_db()
    assert trained.deployed
    detail = AuditLog.objects.get(action="model.promote").detail
    assert detail["confirmed"] is True and detail["config_change"].startswith("models[0].path: models/old-fm")
    assert daemon["proc"].poll() is None


def test_a_model_the_daemon_refuses_is_not_deployed_and_the_config_is_put_back(client, settings_console, daemon,
                                                                             tmp_path):
    _settings(settings_console, daemon)
    card_path = make_model(tmp_path / "job" / "model", name="broken-fm")
    onnx = card_path.parent / "broken-fm.onnx"
    build_detector_onnx(onnx, 48)  # the card says 32x32: the daemon refuses a graph of another input size
    data = json.loads(card_path.read_text())
    data["model_sha256"] = sha256_file(onnx)
    card_path.write_text(json.dumps(data))
    trained = register_card(card_path)
    before = daemon["config"].read_text()
    page = client.post(f"/models/{trained.pk}/promote", follow=True).content.decode()
    assert "NOT deployed: the daemon still runs old-fm v1" in page, page
    assert daemon["config"].read_text() == before  # a restart runs what is running now
    trained.refresh_from_db()
    assert not trained.deployed
    assert "reload refused" in daemon["log"].read_text()
    assert AuditLog.objects.get(action="model.promote").detail["confirmed"] is False


def test_deploy_command_for_train_auto_export_output(daemon, tmp_path):
    """`edge-inspector deploy` (what train/auto/export users run): same slot change, reload and confirmation."""
    cli = [sys.executable, "-m", "edge_inspector", "deploy", "--config", str(daemon["config"]), "--pid-file",
           str(daemon["pid_file"]), "--metrics", daemon["url"], "--timeout", "8"]
    good = make_model(daemon["models_dir"], name="exported-fm")
    proc = subprocess.run([*cli, str(good)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "the daemon confirms exported-fm v1 is live" in proc.stdout, proc.stdout
    assert [m["name"] for m in live_models(daemon["url"])] == ["exported-fm"]
    before = daemon["config"].read_text()
    bad = make_model(tmp_path / "bad", name="bad-fm")
    build_detector_onnx(bad.parent / "bad-fm.onnx", 48)
    data = json.loads(bad.read_text())
    data["model_sha256"] = sha256_file(bad.parent / "bad-fm.onnx")
    bad.write_text(json.dumps(data))
    proc = subprocess.run([*cli, str(bad)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "NOT deployed: the daemon runs exported-fm v1" in proc.stdout, proc.stdout
    assert daemon["config"].read_text() == before


def test_console_flags_reach_the_promote_settings(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for var in ("DJANGO_SETTINGS_MODULE", "EDGE_INSPECTOR_DATA_DIR"):
        env.pop(var, None)
    proc = subprocess.run([sys.executable, "-m", "edge_inspector", "console", "--data-dir", str(tmp_path / "d"),
                           "--daemon-metrics", "http://127.0.0.1:9/metrics", "--daemon-config",
                           str(tmp_path / "config.yaml"), "manage", "diffsettings"],
                          capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert "'DAEMON_METRICS': 'http://127.0.0.1:9/metrics'" in proc.stdout, proc.stdout[-2000:] + proc.stderr
    assert f"'DAEMON_CONFIG': PosixPath('{tmp_path / 'config.yaml'}')" in proc.stdout
