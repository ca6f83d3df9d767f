"""One way to copy a model to another folder: its ONNX file, its card, its sibling files and its calibration record.

Why one: ``auto`` (the chosen candidate into ``--out``), ``export --out`` (a deploy bundle) and the console's
promote (into the daemon's models folder) each copied a model their own way: different file sets, one
of them atomic, and a daemon reloading during a plain copy could read a half-written ONNX file or a
card whose model was not there yet. ``deploy_copy`` stages every file in a temporary folder inside each
target folder (same file system), then renames them into place, the card last: the card is what makes
a model visible, so a reader sees the old model or the whole new one, never a mixture. A failed copy
leaves the targets as they were. No torch here (the console imports it).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from ..card import CARD_SUFFIX, load_card
from ..errors import EdgeInspectorError
from .train import default_calibration_dir  # the one calibration-folder rule

STAGING_PREFIX = ".deploy-copy-"


class ModelCopyError(EdgeInspectorError, OSError):
    """A model could not be copied (unreadable source, unwritable target); the target was left as it was."""


def model_files(card_path: Path, calibration_dir: Path | None = None) -> tuple[list[Path], Path | None]:
    """The files that make up the model of ``card_path``: the ONNX file, every ``<name>.*`` file beside
    the card (external weights, engines, calibration notes), the card; and its calibration record
    (``<calibration_dir>/<name>.json``, by default the folder ``train`` writes it to) or None."""
    card_path = Path(card_path)
    card = load_card(card_path)  # CardError: bad JSON, a missing model file, a sha256 that does not match
    stem = card_path.name.removesuffix(CARD_SUFFIX)
    model = card.model_path(card_path)
    siblings = {p for p in card_path.parent.glob(f"{stem}.*") if p.is_file()} - {card_path, model}
    record = Path(calibration_dir or default_calibration_dir(card_path.parent)) / f"{stem}.json"
    return [model, *sorted(siblings), card_path], (record if record.is_file() else None)


def deploy_copy(card_path: Path, dest: Path, *, calibration_dir: Path | None = None) -> list[Path]:
    """Copy the model of ``card_path`` into ``dest`` (created if needed); its calibration record goes where
    ``train`` would put it for ``dest`` (``default_calibration_dir``). Returns the copied paths, the card
    first. Raises CardError for a bad card and ModelCopyError for a copy that failed (nothing replaced)."""
    card_path, dest = Path(card_path), Path(dest)
    files, record = model_files(card_path, calibration_dir)
    plan = [(src, dest / src.name) for src in files]  # the card is last in ``files``
    if record is not None:
        plan.insert(len(plan) - 1, (record, default_calibration_dir(dest) / record.name))
    staging: dict[Path, Path] = {}
    try:
        try:
            staged: list[tuple[Path, Path]] = []
            for src, dst in plan:
                folder = dst.parent
                if folder not in staging:
                    folder.mkdir(parents=True, exist_ok=True)
                    staging[folder] = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=folder))
                tmp = staging[folder] / dst.name
                shutil.copy2(src, tmp)
                staged.append((tmp, dst))
        except OSError as exc:
            raise ModelCopyError(f"copying {card_path.name} into {dest}: {exc}; nothing was replaced") from exc
        for tmp, dst in staged:  # renames within one file system: each file appears whole, the card last
            os.replace(tmp, dst)
    finally:
        for folder in staging.values():
            shutil.rmtree(folder, ignore_errors=True)
    copied = [dst for _, dst in plan]
    return [copied[-1], *copied[:-1]]
