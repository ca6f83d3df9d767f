"""Dataset registration: store an uploaded ZIP or a folder path, then validate it with the real readers.

Validation is the readers' own ``load_dataset`` so the console accepts exactly what training
accepts; its DatasetError message (naming the file or folder at fault) is shown on the page.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
import zipfile
from collections import Counter
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import close_old_connections

from .models import Dataset, audit
from .uploads import UploadLimits, UploadRefused, check_quota, check_zip

log = logging.getLogger(__name__)
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(name: str) -> str:
    return _SAFE.sub("-", name).strip("-.") or "dataset"


def store_upload(upload: UploadedFile, name: str) -> Path:
    """Write an uploaded ZIP under the data dir (0600, never over another file), at most MAX_UPLOAD_MB.

    The size is counted again here, not only by the upload handler: the file on disk is what
    the quota and the readers see.
    """
    folder: Path = settings.CONSOLE["UPLOADS_DIR"]
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    limit = UploadLimits.current().max_upload_bytes
    base = safe_name(name)
    n = 1
    while True:
        target = folder / (f"{base}.zip" if n == 1 else f"{base}-{n}.zip")
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            break
        except FileExistsError:
            n += 1
    written = 0
    try:
        with os.fdopen(fd, "wb") as fh:
            for chunk in upload.chunks():
                written += len(chunk)
                if written > limit:
                    raise UploadRefused(f"{upload.name}: larger than the upload limit of {limit >> 20} MB "
                                        "(EDGE_INSPECTOR_MAX_UPLOAD_MB)")
                fh.write(chunk)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return target


def remove_upload(zip_path: Path) -> list[Path]:
    """Delete a refused upload and every extraction of it in the archive cache; returns what went."""
    from edge_inspector.data.archive import SOURCE, default_cache_dir

    removed = []
    zip_path = Path(zip_path)
    cache = default_cache_dir()
    for entry in cache.glob(f"{zip_path.stem}-*") if cache.is_dir() else []:
        source = entry / SOURCE
        try:
            same = source.is_file() and Path(source.read_text()) == zip_path.resolve()
        except OSError:
            same = False
        if same:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    if zip_path.exists():
        zip_path.unlink(missing_ok=True)
        removed.append(zip_path)
    return removed


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
    shape = None
    try:
        if record.source == "zip":
            if not zipfile.is_zipfile(path):
                raise ValueError(f"{path.name}: not a ZIP archive (expected a .zip of an MVTec or normal/anomaly tree)")
            limits = UploadLimits.current()
            shape = check_zip(path, limits)  # from the central directory, before anything is extracted
            check_quota(record.created_by, shape.uncompressed_bytes, limits)
        from edge_inspector.data.readers import load_dataset  # imported late: pulls OpenCV

        loaded = load_dataset(path, category=record.category or None)
        if not loaded.samples:
            raise ValueError(f"{path}: dataset has no images")
    except Exception as exc:  # noqa: BLE001 - any reader failure is a validation failure to show the user
        record.status = "invalid"
        record.error = str(exc) or exc.__class__.__name__
        record.layout = ""
        record.counts = {}
        if record.source == "zip" and path.parent == Path(settings.CONSOLE["UPLOADS_DIR"]) and path.exists():
            # A refused upload must not keep its disk: the archive and anything extracted from it go.
            remove_upload(path)
            record.error += " (the uploaded archive was deleted; fix it and upload it again)"
        log.info("dataset %s rejected: %s", record.name, record.error)
    else:
        record.status = "valid"
        record.error = ""
        record.layout = loaded.layout
        record.counts = count_samples(loaded)
        if shape is not None:
            record.counts["extracted_bytes"] = shape.uncompressed_bytes  # counts against the user's quota
    record.save()
    audit(None, "dataset.validate", dataset=record.pk, name=record.name, status=record.status, error=record.error)
    return record
