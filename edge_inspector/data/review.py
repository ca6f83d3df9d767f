"""The review folder (``lineops/review.py`` fills it at the line) as training data.

A toolchain function: it reads the folder with the ordinary dataset reader, so it lives with the
readers, not beside the capture that the daemon runs (which must not reach the toolchain).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from .readers import load_dataset
from .types import Dataset


def merge_review(dataset: Dataset, review_dir: Path, classifier: bool = False) -> Dataset:
    """``dataset`` plus the reviewed frames of ``review_dir``.

    Read with the ordinary dataset reader (so a broken review folder fails with the reader's clear
    DatasetError). Reviewed good frames go to the training split: a reviewer labelled them on
    purpose. Reviewed defects go to training only for a classifier (it learns from defects); an
    anomaly detector must never memorise a defect as normal, so for it they join the test split.
    The existing splits of ``dataset`` are left untouched.
    """
    reviewed = load_dataset(review_dir, scheme="stratified")
    extra = [replace(s, split="train" if s.label == 0 or classifier else "test") for s in reviewed.samples]
    info = dict(dataset.split_info, review_dir=str(review_dir), review_frames=len(extra))
    return replace(dataset, samples=list(dataset.samples) + extra, split_info=info)
