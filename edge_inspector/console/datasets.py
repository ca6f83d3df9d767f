"""Dataset registration: store an uploaded ZIP or a folder path, then validate it with the real readers.

Validation is the readers' own ``load_dataset`` so the console accepts exactly what training
accepts; its DatasetError message (naming the file or folder at fault) is shown on the page.
"""

from __future__ import annotations

import logging
import re
import threading
import zipfile
from collections import Counter
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import close_old_connections

from .models import Dataset, audit

log = logging.getLogger(__name__)
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(name: str) -> str:
    return _SAFE.sub("-", name).strip("-.") or "dataset"


def store_upload(upload: UploadedFile, name: str) -> Path:
    """Write an uploaded ZIP under the data dir; reject non-ZIP content before it reaches the readers."""
    folder: Path = settings.CONSOLE["UPLOADS_DIR"]
    folder.mkdir(parents=True, exist_ok=True)
    base = safe_name(name)
    target = folder / f"{base}.zip"
    n = 1
    while target.exists():
        n += 1
        target = folder / f"{base}-{n}.zip"
    with open(target, "wb") as fh:
        for chunk in upload.chunks():
            fh.write(chunk)
    return target


def count_samples(dataset) -> dict:
    """Images per split and defect type, e.g. {"train": {"good": 20}, "test": {"good": 5, "scratch": 4}}."""
    counts: dict = {}
    per = Counter((s.split, s.defect_type) for s in dataset.samples)
    for (split, kind), n in sorted(per.items()):
        counts.setdefault(split, {})[kind] = n
    counts["total"] = len(dataset.samples)
    counts["defective"] = sum(1 for s in dataset.samples if s.label == 1)
    counts["defect_types"] = list(dataset.defect_types)
    counts["with_masks"] = sum(1 for s in dataset.samples if s.mask_path is not None)
    return counts


def validate_soon(record: Dataset) -> None:
    """Validate now, or in a thread when BACKGROUND_VALIDATION is on: a multi-GB ZIP takes minutes
    to extract, and the upload request should not hang until it is done."""
    if not settings.CONSOLE.get("BACKGROUND_VALIDATION", False):
        validate(record)
        return

    def work() -> None:
        try:
            validate(Dataset.objects.get(pk=record.pk))
        except Exception:  # noqa: BLE001 - validate() records reader errors; this is the DB failing
            log.exception("validating dataset %s failed", record.pk)
        finally:
            close_old_connections()

    threading.Thread(target=work, name=f"validate-dataset-{record.pk}", daemon=True).start()


def validate(record: Dataset) -> Dataset:
    """Load the dataset with the readers and record layout/counts, or the error text; saves ``record``."""
    path = Path(record.path)
    try:
        if record.source == "zip" and not zipfile.is_zipfile(path):
            raise ValueError(f"{path.name}: not a ZIP archive (expected a .zip of an MVTec or normal/anomaly tree)")
        from edge_inspector.data.readers import load_dataset  # imported late: pulls OpenCV

        loaded = load_dataset(path, category=record.category or None)
        if not loaded.samples:
            raise ValueError(f"{path}: dataset has no images")
    except Exception as exc:  # noqa: BLE001 - any reader failure is a validation failure to show the user
        record.status = "invalid"
        record.error = str(exc) or exc.__class__.__name__
        record.layout = ""
        record.counts = {}
        log.info("dataset %s rejected: %s", record.name, record.error)
    else:
        record.status = "valid"
        record.error = ""
        record.layout = loaded.layout
        record.counts = count_samples(loaded)
    record.save()
    audit(None, "dataset.validate", dataset=record.pk, name=record.name, status=record.status, error=record.error)
    return record
