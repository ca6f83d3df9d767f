"""Typed dataset records shared by the readers, the trainers and the evaluation."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..errors import EdgeInspectorError

GOOD = "good"
Split = Literal["train", "val", "test"]


class DatasetError(EdgeInspectorError, ValueError):
    """A dataset is empty, corrupt or mislabelled; the message names the file or folder."""


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int  # 0 = good (normal), 1 = defective
    defect_type: str = GOOD  # "good" for normal samples
    mask_path: Path | None = None
    split: Split = "train"


@dataclass
class Dataset:
    name: str
    root: Path
    samples: list[Sample]
    layout: str = "mvtec"  # mvtec | folders | visa
    split_info: dict = field(default_factory=dict)  # how the split was made (seed, fractions)

    def split(self, name: Split) -> list[Sample]:
        return [s for s in self.samples if s.split == name]

    @property
    def defect_types(self) -> list[str]:
        return sorted({s.defect_type for s in self.samples if s.label == 1})

    def digest(self, split: Split | None = None) -> str:
        """sha256 over relative names, labels and file bytes: identifies the data a model saw."""
        return samples_digest(self.samples if split is None else self.split(split))


def samples_digest(samples: list[Sample]) -> str:
    """``Dataset.digest`` of any list of samples (e.g. the part of a split a detector really learned from)."""
    h = hashlib.sha256()
    for s in sorted(samples, key=lambda s: str(s.path)):
        h.update(f"{s.path.name}|{s.label}|{s.defect_type}|".encode())
        h.update(hashlib.sha256(Path(s.path).read_bytes()).digest())
    return h.hexdigest()
