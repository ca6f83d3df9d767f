"""Roles and server paths (issue 14 item 3, red-team F3): the red team's steps as a viewer, an engineer
and an admin against the real console views, real files and a real signalled process."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from edge_inspector.console import jobs
from edge_inspector.console.models import AuditLog, Dataset, TrainedModel, TrainingJob
from edge_inspector.console.registry import register_card
from edge_inspector.console.roles import Role, role_of
from tests.fixtures.models import make_model

from .conftest import make_client


@pytest.fixture
def trained(db, settings_console, tmp_path) -> TrainedModel:
    out = Path(settings_console["JOBS_DIR"]) / "job-9" / "model"
    return register_card(make_model(out, name="widget-fm"))


@pytest.fixture
def dataset(db, demo_dataset):
    return Dataset.objects.create(name="demo", source="folder", path=str(demo_dataset), status="valid", layout="mvtec")


def test_plain_user_is_a_viewer_and_may_change_nothing(db, settings_console, trained, dataset, fake_daemon, tmp_path):
    """Red team F3 steps 2-5: a user made with create_user (is_staff False) imported a card from a server
    path and promoted it into the daemon's models folder, which got SIGHUP."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    proc, pid_file, record = fake_daemon
    settings_console["DAEMON_PID_FILE"] = pid_file
    op = get_user_model().objects.create_user("op", password="Op3rator-Pass-123")
    assert role_of(op) == Role.VIEWER
    c = Client()
    c.force_login(op)
    outside = make_model(tmp_path / "elsewhere", name="planted")

    for page in ("/", "/gallery/", "/datasets/", "/training/", "/models/", f"/models/{trained.pk}/"):
        assert c.get(page).status_code == 200, page
    refused = {
        "/models/": {"card_path": str(outside)},
        f"/models/{trained.pk}/promote": {},
        "/datasets/folder": {"name": "x", "path": str(dataset.path)},
        "/datasets/upload": {"name": "x", "archive": SimpleUploadedFile("x.zip", b"PK")},
        "/training/": {"dataset": dataset.pk, "kind": "feature_memory"},
        f"/datasets/{dataset.pk}/validate": {},
    }
    for url, data in refused.items():
        response = c.post(url, data)
        assert response.status_code == 403, url
        assert b"needs the <strong>" in response.content, url
    assert c.get("/audit/").status_code == 403
    assert not TrainedModel.objects.filter(name="planted").exists()
    assert not any(Path(settings_console["MODELS_DIR"]).glob("*")) if Path(settings_console["MODELS_DIR"]).exists() \
        else True
    assert not TrainingJob.objects.exists() and Dataset.objects.count() == 1
    time.sleep(0.2)
    assert not record.exists() or "SIGHUP" not in record.read_text()  # the daemon was never signalled
    denied = AuditLog.objects.filter(action="access.denied", username="op")
    assert denied.count() == len(refused) + 1
    assert {e.detail["needed"] for e in denied} == {"engineer", "admin"}


def test_engineer_trains_but_name_and_arguments_stay_in_the_job_folder(db, settings_console, dataset):
    """Red team F3 step 6: name ../../../escaped-by-name and extra arguments --out <folder> wrote the
    model three folders up (argparse kept the last --out); step 7: the audit row had neither."""
    eng = make_client("eng", "engineer")
    form = {"dataset": dataset.pk, "kind": "feature_memory", "evaluate": ""}
    response = eng.post("/training/", {**form, "name": "../../../escaped-by-name"})
    assert response.status_code == 400 and b"no &#x27;..&#x27;" in response.content
    extra = "--out elsewhere/x --max-train 4 --threads 1"
    response = eng.post("/training/", {**form, "name": "ok", "extra_args": extra})
    assert response.status_code == 400 and b"&#x27;--out&#x27; is not allowed here" in response.content
    for bad in ("--calibration-dir /tmp", "--include-review /etc", "-o weights=/etc/passwd", "--name x",
                "--out=/tmp", "extra-positional", "--threads 1e9", "--backbone resnet50"):
        assert eng.post("/training/", {**form, "extra_args": bad}).status_code == 400, bad
    assert not TrainingJob.objects.exists()

    extra = "--max-train 4 --threads 1 -o coreset_ratio=0.5 --quiet"
    response = eng.post("/training/", {**form, "name": "widget-fm", "seed": 3, "extra_args": extra})
    assert response.status_code == 302
    job = TrainingJob.objects.get()
    entry = AuditLog.objects.get(action="job.create")
    assert entry.username == "eng"
    assert entry.detail["name"] == "widget-fm" and entry.detail["extra_args"] == extra and entry.detail["seed"] == 3
    deadline = time.monotonic() + 30
    while not job.finished and time.monotonic() < deadline:
        jobs.tick()
        job.refresh_from_db()
        time.sleep(0.1)
    assert job.status == "done", job.error
    spec = json.loads((Path(job.work_dir) / "spec.json").read_text())
    argv = spec["steps"][0]["argv"]
    assert argv.count("--out") == 1 and argv[argv.index("--out") + 1] == str(Path(job.work_dir) / "model")
    assert argv.index("--max-train") < argv.index("--out")  # extras first: the console's flags win
    assert Path(job.result_card).parent == Path(job.work_dir) / "model"

    # An engineer still may not promote, import or name server folders.
    model = TrainedModel.objects.get(job=job)
    assert eng.post(f"/models/{model.pk}/promote").status_code == 403
    assert eng.post("/models/", {"card_path": job.result_card}).status_code == 403
    assert eng.post("/datasets/folder", {"name": "y", "path": dataset.path}).status_code == 403
    assert eng.get("/audit/").status_code == 200


def test_job_with_bad_options_from_the_database_is_refused_at_start(db, settings_console, dataset, tmp_path):
    """A job queued by an older console (or a row edited by hand) still cannot escape: build_steps checks again."""
    escaped = tmp_path / "escaped"
    job = TrainingJob.objects.create(dataset=dataset, kind="feature_memory",
                                     options={"name": "../../../escaped-by-name", "extra_args": f"--out {escaped}"})
    jobs.tick()
    job.refresh_from_db()
    assert job.status == "failed" and job.error.startswith("refused:"), job.error
    assert not escaped.exists()
    assert AuditLog.objects.filter(action="job.refused", detail__job=job.pk).exists()


def test_admin_imports_only_from_the_allowed_folders(db, settings_console, trained, tmp_path):
    admin = make_client("boss", "admin")
    outside = make_model(tmp_path / "elsewhere", name="planted")
    response = admin.post("/models/", {"card_path": str(outside)})
    assert response.status_code == 400 and b"not inside an allowed folder" in response.content
    assert admin.post("/models/", {"card_path": "/etc/passwd"}).status_code == 400
    assert admin.post("/models/", {"card_path": "relative/x.card.json"}).status_code == 400
    link = Path(settings_console["JOBS_DIR"]) / "link.card.json"  # a link inside pointing outside
    link.symlink_to(outside)
    assert admin.post("/models/", {"card_path": str(link)}).status_code == 400
    assert not TrainedModel.objects.filter(name="planted").exists()

    settings_console["IMPORT_ROOTS"] = [tmp_path / "elsewhere"]
    response = admin.post("/models/", {"card_path": str(outside)})
    assert response.status_code == 302
    entry = AuditLog.objects.get(action="model.import")
    assert entry.username == "boss" and entry.detail["card"] == str(outside.resolve())

    settings_console["DATASET_ROOTS"] = []
    response = admin.post("/datasets/folder", {"name": "f", "path": str(tmp_path)})
    assert response.status_code == 400 and b"EDGE_INSPECTOR_DATASET_ROOTS" in response.content


def test_setrole_command(db):
    from django.contrib.auth import get_user_model
    from django.core.management import CommandError, call_command

    user = get_user_model().objects.create_user("someone", password="a-long-enough-pass")
    call_command("setrole", "someone", "engineer")
    assert role_of(get_user_model().objects.get(pk=user.pk)) == Role.ENGINEER
    call_command("setrole", "someone", "viewer")
    assert role_of(get_user_model().objects.get(pk=user.pk)) == Role.VIEWER
    with pytest.raises(CommandError, match="expected one of viewer, engineer, admin"):
        call_command("setrole", "someone", "root")
    with pytest.raises(CommandError, match="does not exist"):
        call_command("setrole", "nobody", "admin")
    assert AuditLog.objects.filter(action="user.set_role", detail__role="viewer").exists()
