"""Promote: model + card + calibration copied into the daemon's models dir, audit row, real SIGHUP."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from edge_inspector.card import load_card
from edge_inspector.console.models import AuditLog, TrainedModel
from edge_inspector.console.registry import register_card
from tests.fixtures.models import make_model


@pytest.fixture
def trained(db, tmp_path) -> TrainedModel:
    out = tmp_path / "job" / "model"
    card = make_model(out, name="widget-fm")
    (out / "calibration").mkdir()
    (out / "calibration" / "widget-fm.json").write_text(json.dumps({"threshold": 0.3}))
    return register_card(card)


def test_promote_copies_files_audits_and_signals(client, settings_console, trained, fake_daemon):
    proc, pid_file, record = fake_daemon
    settings_console["DAEMON_PID_FILE"] = pid_file
    response = client.post(f"/models/{trained.pk}/promote", follow=True)
    assert response.status_code == 200
    assert f"daemon pid {proc.pid} signalled to reload" in response.content.decode()

    models_dir: Path = settings_console["MODELS_DIR"]
    assert (models_dir / "widget-fm.onnx").is_file()
    card = load_card(models_dir / "widget-fm.card.json")  # sha256 of the copied model checks out
    assert card.name == "widget-fm"
    assert (models_dir.parent / "calibration" / "widget-fm.json").is_file()  # models/ -> ../calibration/

    deadline = time.monotonic() + 5
    while not (record.exists() and "SIGHUP" in record.read_text()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert record.read_text().count("SIGHUP") == 1
    assert proc.poll() is None  # SIGHUP reloads, it does not kill

    entry = AuditLog.objects.get(action="model.promote")
    assert entry.username == "operator"
    assert entry.detail["sighup_pid"] == proc.pid and entry.detail["model"] == "widget-fm"
    assert len(entry.detail["copied"]) == 3
    trained.refresh_from_db()
    # a stand-in daemon cannot say which model it runs: copied and signalled, but never shown as deployed
    # (tests/console/test_promote_live.py confirms against a real daemon's model_info)
    assert not trained.deployed and entry.detail["confirmed"] is None
    assert "Not confirmed" in response.content.decode()
    assert b"model.promote" in client.get("/audit/").content


def test_promote_without_daemon_still_copies_and_warns(client, settings_console, trained, tmp_path):
    settings_console["DAEMON_PID_FILE"] = tmp_path / "missing.pid"
    response = client.post(f"/models/{trained.pk}/promote", follow=True)
    assert "daemon NOT signalled" in response.content.decode()
    assert (settings_console["MODELS_DIR"] / "widget-fm.card.json").is_file()
    assert "cannot read" in AuditLog.objects.get(action="model.promote").detail["signal_error"]


def test_promote_refuses_tampered_model(client, settings_console, trained):
    Path(trained.card_path).with_name("widget-fm.onnx").write_bytes(b"tampered")
    response = client.post(f"/models/{trained.pk}/promote", follow=True)
    assert "Promote failed" in response.content.decode() and "sha256" in response.content.decode()
    assert not (settings_console["MODELS_DIR"] / "widget-fm.card.json").exists()
    assert AuditLog.objects.filter(action="model.promote_failed").exists()
