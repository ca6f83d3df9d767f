"""Resolve a DATASET argument (folder or ZIP) and a split name into samples, with clear errors."""

from __future__ import annotations

from pathlib import Path

from ..data.types import Dataset, DatasetError
from .compare import DataSpec

SPLITS = ("train", "val", "test")


def open_dataset(path: Path | str, *, scheme: str = "native", seed: int = 0, val_fraction: float = 0.2,
                 category: str | None = None) -> Dataset:
    """Load a dataset through the shared readers (``edge_inspector.data.readers``)."""
    from ..data.readers import load_dataset  # noqa: PLC0415 - keeps CLI start-up light

    if not Path(path).exists():
        raise DatasetError(f"{path}: dataset not found (expected a folder or a .zip)")
    return load_dataset(path, scheme=scheme, seed=seed, val_fraction=val_fraction, category=category)


def data_spec(dataset: Dataset, split: str) -> DataSpec:
    """The samples of ``split``; an empty split is an error naming the dataset and the split sizes."""
    if split not in SPLITS:
        raise DatasetError(f"split {split!r}: expected one of {', '.join(SPLITS)}")
    samples = dataset.split(split)  # type: ignore[arg-type]
    if not samples:
        sizes = ", ".join(f"{s}={len(dataset.split(s))}" for s in SPLITS)  # type: ignore[arg-type]
        raise DatasetError(f"{dataset.root}: split {split!r} is empty ({sizes})")
    return DataSpec(name=dataset.name, root=str(dataset.root), split=split, samples=samples)
