"""The whole path with the real toolchain: dataset -> `edge-inspector train` + `evaluate` -> compare -> promote.

Slower than the stand-in job tests (torch import, a 64 px feature-memory fit on 16 images), so
it is the only test that runs the real CLIs.
"""

from __future__ import annotations

import time

import pytest

from edge_inspector.card import load_card
from edge_inspector.console import jobs
from edge_inspector.console.models import AuditLog, Dataset, TrainedModel, TrainingJob

from .test_jobs import wait_finished


@pytest.mark.slow
def test_real_train_evaluate_compare_promote(client, settings_console, demo_dataset, fake_daemon):
    proc, pid_file, record = fake_daemon
    settings_console.update(TRAIN_COMMAND="", EVALUATE_COMMAND="", DAEMON_PID_FILE=pid_file)  # the real CLIs
    client.post("/datasets/folder", {"name": "demo", "path": str(demo_dataset)})
    dataset = Dataset.objects.get(name="demo")
    assert dataset.status == "valid", dataset.error
    response = client.post("/training/", {"dataset": dataset.pk, "kind": "feature_memory", "name": "demo-fm",
                                          "seed": 0, "input_size": 64, "evaluate": "on",
                                          "extra_args": "--threads 1"})
    assert response.status_code == 302
    job = wait_finished(TrainingJob.objects.get(), timeout=120)
    assert job.status == "done", f"{job.error}"
    assert "100%|" in jobs.log_tail(job)  # tqdm bars reach the log: the worker gives steps a pty
    model = TrainedModel.objects.get(job=job)
    assert model.kind == "feature_memory" and model.card["input"]["height"] == 64
    for key in ("image.auroc", "pixel.auroc", "composite", "ms_per_image", "parameters"):
        assert key in model.metrics, sorted(model.metrics)
    assert 0.0 <= model.metrics["image.auroc"] <= 1.0

    comparison = client.get("/models/")
    assert comparison.context["columns"][:2] == ["image.auroc", "image.f1"]
    detail = client.get(f"/models/{model.pk}/")
    assert b"roc_image.png" in detail.content and b"Open the HTML report" in detail.content
    assert b"<html" in b"".join(client.get(f"/models/{model.pk}/report/").streaming_content).lower()

    client.post(f"/models/{model.pk}/promote")
    models_dir = settings_console["MODELS_DIR"]
    assert load_card(models_dir / "demo-fm.card.json").name == "demo-fm"
    assert (models_dir.parent / "calibration" / "demo-fm.json").is_file()
    deadline = time.monotonic() + 5
    while not record.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert record.read_text().count("SIGHUP") == 1
    assert AuditLog.objects.get(action="model.promote").detail["sighup_pid"] == proc.pid
