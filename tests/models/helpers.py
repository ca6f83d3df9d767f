"""Labelled 64 px demo parts shared by the supervised-model tests (classifier, custom CNN, deep features).

Why shared: each suite needs good parts plus two clearly different defect types in ``folders`` layout;
one writer keeps the images identical across suites, so a recipe change shows up in all of them.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge_inspector.data.synthetic import render_part
from edge_inspector.data.types import Dataset, Sample

SIZE = 64
TYPES = ("blob", "stripe")


def part(rng: np.random.Generator, kind: str | None, blob_radius: tuple[int, int] = (6, 9)) -> np.ndarray:
    """A demo washer; "blob" = a dark disc, "stripe" = a bright bar. ``blob_radius`` is the [low, high) draw."""
    image, _ = render_part(rng, SIZE)
    cx, cy = (int(v) for v in rng.integers(18, 46, 2))
    if kind == "blob":
        cv2.circle(image, (cx, cy), int(rng.integers(*blob_radius)), (25, 25, 25), -1)
    elif kind == "stripe":
        angle = rng.uniform(0, np.pi)
        dx, dy = int(14 * np.cos(angle)), int(14 * np.sin(angle))
        cv2.line(image, (cx - dx, cy - dy), (cx + dx, cy + dy), (250, 250, 250), 3)
    return image


def write_labelled(folder: Path, split: str, n_good: int, n_per_type: int, stream: int,
                   blob_radius: tuple[int, int] = (6, 9)) -> list[Sample]:
    """Good parts and two clearly different defect types, as ``folders`` layout samples."""
    samples = []
    for kind in (None, *TYPES):
        for i in range(n_good if kind is None else n_per_type):
            path = folder / split / (kind or "good") / f"{i:03d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), part(np.random.default_rng((stream, len(kind or ""), i)), kind, blob_radius))
            samples.append(Sample(path, int(kind is not None), kind or "good", split=split))
    return samples


def labelled_dataset(root: Path, train: tuple[int, int] = (12, 6), blob_radius: tuple[int, int] = (6, 9)) -> Dataset:
    """train: (good, per type); val 4 + 2 per type; test 8 + 4 per type."""
    samples = (write_labelled(root, "train", *train, 0, blob_radius) + write_labelled(root, "val", 4, 2, 1, blob_radius)
               + write_labelled(root, "test", 8, 4, 2, blob_radius))
    return Dataset("labelled", root, samples, layout="folders")
