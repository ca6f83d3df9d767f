"""Training job lifecycle through real worker processes (train/evaluate are stand-in scripts)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from edge_inspector.console import jobs
from edge_inspector.console.models import Dataset, TrainedModel, TrainingJob


@pytest.fixture
def dataset(db, demo_dataset):
    return Dataset.objects.create(name="demo", source="folder", path=str(demo_dataset), status="valid", layout="mvtec")


def wait_finished(job: TrainingJob, timeout: float = 30.0) -> TrainingJob:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs.tick()
        job.refresh_from_db()
        if job.finished:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job.pk} still {job.status} after {timeout}s; log:\n{jobs.log_tail(job)}")


def test_job_lifecycle_done(client, settings_console, dataset):
    response = client.post("/training/", {"dataset": dataset.pk, "kind": "feature_memory", "name": "widget-fm",
                                          "seed": 1, "evaluate": "on"})
    assert response.status_code == 302
    job = TrainingJob.objects.get()
    assert job.status == "running" and job.pid  # the view's tick() started it at once
    api = client.get(f"/api/jobs/{job.pk}").json()
    assert api["status"] in ("running", "done") and api["kind"] == "feature_memory"
    job = wait_finished(job)
    assert job.status == "done", job.error
    assert job.progress == 1.0
    log = jobs.log_tail(job)
    assert "step 1/2: train" in log and "step 2/2: evaluate" in log and "100%" in log

    model = TrainedModel.objects.get(job=job)
    assert model.name == "widget-fm" and Path(model.card_path).is_file()
    assert model.metrics["image_auroc_val"] == pytest.approx(0.91)  # from the card
    assert model.metrics["image.auroc"] == pytest.approx(0.875)  # from report.json
    api = client.get(f"/api/jobs/{job.pk}").json()
    assert api["finished"] and api["model_id"] == model.pk

    detail = client.get(f"/models/{model.pk}/")
    assert b"image.auroc" in detail.content and b"roc_image.png" in detail.content
    assert client.get(f"/models/{model.pk}/report/").status_code == 200
    assert client.get(f"/models/{model.pk}/report/roc_image.png")["Content-Type"] == "image/png"
    assert client.get(f"/models/{model.pk}/report/../../spec.json").status_code == 404
    comparison = client.get("/models/")
    assert b"metrics-chart" in comparison.content and b"chart.umd.min.js" in comparison.content
    assert comparison.context["columns"][0] in ("image.auroc", "image.f1", "image_auroc_val", "pixel.auroc")


def test_job_failure_and_queue(client, settings_console, dataset):
    failing = TrainingJob.objects.create(dataset=dataset, kind="autoencoder", options={"extra_args": "--option fail=3"})
    queued = TrainingJob.objects.create(dataset=dataset, kind="autoencoder", options={"evaluate": False})
    jobs.tick()
    failing.refresh_from_db()
    queued.refresh_from_db()
    assert failing.status == "running" and queued.status == "queued"  # one job at a time
    failing = wait_finished(failing)
    assert failing.status == "failed" and "train exited with status 3" in failing.error
    assert "simulated training failure" in jobs.log_tail(failing)
    queued = wait_finished(queued)
    assert queued.status == "done" and TrainedModel.objects.filter(job=queued).exists()


def test_cancel_running_job(client, settings_console, dataset):
    job = TrainingJob.objects.create(dataset=dataset, kind="classifier", options={"extra_args": "--option sleep=60"})
    jobs.tick()
    job.refresh_from_db()
    assert job.status == "running"
    response = client.post(f"/training/{job.pk}/cancel")
    assert response.status_code == 302
    job = wait_finished(job, timeout=15)
    assert job.status == "cancelled"
    assert not jobs.pid_alive(job.pid)


def test_job_survives_console_restart(settings_console, dataset):
    """A new console process finds a running worker by pid and finishes the job from its files."""
    job = TrainingJob.objects.create(dataset=dataset, kind="feature_memory",
                                     options={"extra_args": "--option sleep=1.5", "evaluate": False})
    jobs.tick()
    job.refresh_from_db()
    proc = jobs._children.pop(job.pid)  # forget the Popen, as a restarted console would
    deadline = time.monotonic() + 10  # a restart comes long after exec(); here wait for it
    while b"jobrunner" not in Path(f"/proc/{job.pid}/cmdline").read_bytes() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert jobs.pid_alive(job.pid)  # found through /proc
    jobs.recover()
    job.refresh_from_db()
    assert job.status == "running"
    proc.wait(timeout=20)  # reap it (in production init does, the old console being gone)
    jobs.recover()
    job.refresh_from_db()
    assert job.status == "done", job.error


def test_lost_worker_marked_failed(settings_console, dataset, tmp_path):
    job = TrainingJob.objects.create(dataset=dataset, kind="feature_memory", status="running",
                                     pid=_dead_pid(), work_dir=str(tmp_path / "gone"))
    jobs.recover()
    job.refresh_from_db()
    assert job.status == "failed" and "ended without a result" in job.error


def _dead_pid() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def test_cancel_queued_job(client, settings_console, dataset):
    blocker = TrainingJob.objects.create(dataset=dataset, kind="feature_memory",
                                         options={"extra_args": "--option sleep=60"})
    jobs.tick()
    waiting = TrainingJob.objects.create(dataset=dataset, kind="feature_memory")
    client.post(f"/training/{waiting.pk}/cancel")
    waiting.refresh_from_db()
    assert waiting.status == "cancelled"
    jobs.cancel(blocker, None)
    assert wait_finished(blocker, timeout=15).status == "cancelled"


def test_concurrent_refresh_finishes_a_job_once_with_its_model(committed_db, settings_console, demo_dataset, tmp_path):
    """The job monitor and page requests refresh the same job from several threads. Each thread that sees
    "done" must find the job's model (the job page stops polling at "done"), and no thread may fail the
    job on the other's model row. The e2e browser test waited forever for the model link."""
    import json
    import threading

    from django.db import close_old_connections

    from tests.fixtures.models import make_model

    dataset = Dataset.objects.create(name="d", source="folder", path=str(demo_dataset), status="valid")
    job_dir = tmp_path / "job-x"
    card = make_model(job_dir / "model", name="raced")
    (job_dir / "status.json").write_text(json.dumps({"returncode": 0, "card": str(card), "cancelled": False}))
    job = TrainingJob.objects.create(dataset=dataset, kind="feature_memory", status="running", pid=None,
                                     work_dir=str(job_dir))
    seen = []

    def worker():
        try:
            finished = jobs.refresh(TrainingJob.objects.get(pk=job.pk))
            seen.append((finished.status, finished.models.count()))
        finally:
            close_old_connections()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    job.refresh_from_db()
    assert job.status == "done", job.error
    assert TrainedModel.objects.filter(job=job).count() == 1
    assert seen and all(s == ("done", 1) for s in seen), seen


def test_training_form_lists_every_registered_kind(client, settings_console, dataset):
    """The form reads the detector registry: the segmenter (and any kind added later) can be trained from the
    console, and the page shows each kind's label."""
    from edge_inspector.models import DETECTORS, KIND_LABELS

    assert set(KIND_LABELS) == set(DETECTORS)  # a new kind gets a label where it is registered
    page = client.get("/training/").content.decode()
    for kind in DETECTORS:
        assert f'value="{kind}"' in page, kind
    assert KIND_LABELS["segmenter"].split(" (")[0] in page
    response = client.post("/training/", {"dataset": dataset.pk, "kind": "segmenter", "name": "widget-seg",
                                          "seed": 1})
    assert response.status_code == 302, response.content.decode()[:2000]
    job = TrainingJob.objects.get()
    assert job.kind == "segmenter"
    argv = jobs.build_steps(job, Path("out"), Path("report"))[0]["argv"]
    assert argv[argv.index("--model") + 1] == "segmenter"
    assert wait_finished(job).status == "done", job.error  # the stand-in trainer took it
