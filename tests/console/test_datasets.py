"""Dataset upload: a generated ZIP is accepted with its counts, bad uploads are rejected with a message."""

from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path

from django.core.files.uploadedfile import SimpleUploadedFile

from edge_inspector.console.models import AuditLog, Dataset


def zip_folder(folder: Path, top: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, f"{top}/{path.relative_to(folder)}")
    return buf.getvalue()


def test_upload_valid_zip(client, settings_console, demo_dataset):
    data = zip_folder(demo_dataset, "widget")
    response = client.post("/datasets/upload", {"name": "widgets", "archive": SimpleUploadedFile("widgets.zip", data)})
    assert response.status_code == 302
    record = Dataset.objects.get(name="widgets")
    assert record.status == "valid", record.error
    assert record.layout == "mvtec" and record.source == "zip"
    assert record.counts["total"] == 37 and record.counts["defective"] == 9
    assert Path(record.path).parent == settings_console["UPLOADS_DIR"]
    page = client.get(response["Location"])
    assert b"37 images" in page.content or b"Total 37 images" in page.content
    assert AuditLog.objects.filter(action="dataset.validate", detail__status="valid").exists()


def test_upload_bad_zip_rejected_with_message(client, settings_console, tmp_path, demo_dataset):
    # A real ZIP whose defect folder has no images: the readers must say which folder is wrong.
    broken = tmp_path / "broken"
    shutil.copytree(demo_dataset, broken)
    for image in (broken / "test" / "scratch").iterdir():
        image.unlink()
    (broken / "test" / "scratch" / "notes.txt").write_text("no images here")
    response = client.post("/datasets/upload", {"name": "broken",
                                                "archive": SimpleUploadedFile("broken.zip", zip_folder(broken, "b"))})
    record = Dataset.objects.get(name="broken")
    assert record.status == "invalid"
    assert "scratch" in record.error
    page = client.get(response["Location"], follow=True)
    assert b"Validation failed" in page.content and b"scratch" in page.content

    # Not a ZIP at all (right extension, wrong bytes).
    client.post("/datasets/upload", {"name": "junk", "archive": SimpleUploadedFile("junk.zip", b"not a zip")})
    junk = Dataset.objects.get(name="junk")
    assert junk.status == "invalid" and "not a ZIP archive" in junk.error

    # Wrong extension: refused by the form, nothing stored.
    response = client.post("/datasets/upload", {"name": "png", "archive": SimpleUploadedFile("x.png", b"\x89PNG")})
    assert response.status_code == 400 and b"expected a .zip file" in response.content
    assert not Dataset.objects.filter(name="png").exists()


def test_folder_dataset(client, settings_console, demo_dataset):
    response = client.post("/datasets/folder", {"name": "folder-ds", "path": str(demo_dataset)})
    assert response.status_code == 302
    assert Dataset.objects.get(name="folder-ds").status == "valid"
    response = client.post("/datasets/folder", {"name": "nowhere", "path": str(demo_dataset.parent / "missing")})
    assert response.status_code == 400 and b"no such file or folder" in response.content
    response = client.post("/datasets/folder", {"name": "outside", "path": "/nonexistent/dataset"})
    assert response.status_code == 400 and b"not inside an allowed folder" in response.content


def test_multi_category_root_needs_a_category(client, settings_console, demo_dataset, tmp_path):
    from edge_inspector.console.jobs import build_steps
    from edge_inspector.console.models import TrainingJob

    root = tmp_path / "mvtec"
    for category in ("bottle", "cable"):
        shutil.copytree(demo_dataset, root / category)
    client.post("/datasets/folder", {"name": "all", "path": str(root)})
    record = Dataset.objects.get(name="all")
    assert record.status == "invalid" and "bottle" in record.error and "cable" in record.error
    client.post("/datasets/folder", {"name": "cable", "path": str(root), "category": "cable"})
    record = Dataset.objects.get(name="cable")
    assert record.status == "valid" and record.category == "cable"
    assert b"mvtec (cable)" in client.get("/datasets/").content

    job = TrainingJob(dataset=record, kind="feature_memory", options={"input_size": 64, "seed": 2})
    train, evaluate = build_steps(job, tmp_path / "out", tmp_path / "report")
    assert train["argv"][-8:] == ["--out", str(tmp_path / "out"), "--seed", "2", "--input-size", "64",
                                  "--category", "cable"]
    assert evaluate["argv"][-2:] == ["--category", "cable"] and "{card}" in evaluate["argv"]


def test_background_validation(committed_db, settings_console, demo_dataset):
    """In the server, validation runs in a thread; the page says so and later shows the result."""
    import time

    from django.contrib.auth import get_user_model
    from django.test import Client

    from .conftest import PASSWORD

    settings_console["BACKGROUND_VALIDATION"] = True
    get_user_model().objects.create_superuser("bg", password=PASSWORD)  # folders are an admin's
    c = Client()
    c.login(username="bg", password=PASSWORD)
    response = c.post("/datasets/folder", {"name": "bg", "path": str(demo_dataset)}, follow=True)
    assert response.status_code == 200
    record = Dataset.objects.get(name="bg")
    deadline = time.monotonic() + 20
    while record.status == "pending" and time.monotonic() < deadline:
        time.sleep(0.05)
        record.refresh_from_db()
    assert record.status == "valid", record.error
    assert b"Total 37 images" in c.get(f"/datasets/{record.pk}/").content


def test_zip_bomb_and_missing_normal_images_rejected_with_message(client, settings_console, tmp_path, demo_dataset):
    import os

    cache = Path(os.environ["EDGE_INSPECTOR_CACHE"])
    before = set(cache.rglob("*")) if cache.exists() else set()

    buf = io.BytesIO()  # 64 MB of zeros compress to ~64 kB: far beyond any image's ratio
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("bomb/train/good/000.png", b"\0" * (64 << 20))
    client.post("/datasets/upload", {"name": "bomb", "archive": SimpleUploadedFile("bomb.zip", buf.getvalue())})
    bomb = Dataset.objects.get(name="bomb")
    assert bomb.status == "invalid" and "zip bomb" in bomb.error
    page = client.get(f"/datasets/{bomb.pk}/", follow=True)
    assert b"zip bomb" in page.content
    after = set(cache.rglob("*")) if cache.exists() else set()
    assert not after - before, sorted(after - before)  # nothing half-extracted is left behind

    no_normal = tmp_path / "no-normal"  # plain-folder layout with defects only
    shutil.copytree(demo_dataset / "test" / "scratch", no_normal / "anomaly" / "scratch")
    client.post("/datasets/upload", {"name": "no-normal",
                                     "archive": SimpleUploadedFile("n.zip", zip_folder(no_normal, "n"))})
    record = Dataset.objects.get(name="no-normal")
    assert record.status == "invalid" and "normal" in record.error
