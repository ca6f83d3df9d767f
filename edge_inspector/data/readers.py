"""Dataset readers: MVTec AD, VisA-style CSV, plain ``normal/`` + ``anomaly/<type>/`` folders and ZIPs of them.

Every reader returns one :class:`~edge_inspector.data.types.Dataset` whose samples carry their split,
so trainers and the evaluation never re-implement splitting. Bad data is refused here, once, with a
:class:`DatasetError` naming the file or folder, rather than failing later inside a training loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from .types import Dataset

Scheme = Literal["native", "stratified"]


def load_dataset(
    path: Path | str,
    *,
    scheme: Scheme = "native",
    seed: int = 0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    max_archive_mb: int = 2048,
    category: str | None = None,
    split_file: Path | str | None = None,
    cache_dir: Path | str | None = None,
) -> Dataset:
    """Read the dataset at ``path`` (folder or ``.zip``), auto-detecting its layout, and split it.

    scheme "native": MVTec/VisA's own train/test, with ``val_fraction`` of the normal training
    images held out as "val" (or MVTec-LOCO style ``validation/good`` when present).
    scheme "stratified": everything pooled, then a seeded split stratified by defect type into
    train/val/test. Plain folders have no native split and are always split stratified.
    ``category`` picks one category of a multi-category root; ``split_file`` (from
    :func:`save_split`) reproduces an earlier split exactly; ``cache_dir`` is where ZIPs are
    extracted (default ``$XDG_CACHE_HOME/edge-inspector/archives``).
    """
    raise NotImplementedError


def list_categories(path: Path | str) -> list[str]:
    """Names of the MVTec-layout categories (sub-folders with ``train/`` and ``test/``) under ``path``."""
    raise NotImplementedError


def save_split(dataset: Dataset, path: Path | str) -> Path:
    """Write the split (``split_info`` plus every sample's relative path and split) as JSON."""
    raise NotImplementedError


def load_split(path: Path | str) -> dict:
    """Read a split written by :func:`save_split`; keys: ``info`` (dict) and ``assignments`` {relpath: split}."""
    raise NotImplementedError


def apply_split(dataset: Dataset, split: dict) -> Dataset:
    """Reassign ``dataset``'s samples to the splits recorded in ``split`` (from :func:`load_split`)."""
    raise NotImplementedError
