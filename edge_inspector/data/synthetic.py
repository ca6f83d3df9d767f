"""Procedural demo data: machined parts on a metal plate, with scratches, spots and missing pieces.

Lets the demo, the tests and the CI run end to end with no downloaded data. Everything is drawn
with exact masks and is deterministic for a given seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

DEFECT_TYPES = ("scratch", "spot", "missing")


def generate_demo_dataset(
    out_dir: Path | str,
    *,
    n_train: int = 60,
    n_val_good: int = 0,
    n_test_good: int = 20,
    n_test_defect: int = 30,
    size: int = 128,
    seed: int = 0,
    defect_types: Sequence[str] = DEFECT_TYPES,
) -> Path:
    """Write one MVTec-layout category at ``out_dir`` and return ``out_dir``.

    ``train/good``, ``validation/good`` (only when ``n_val_good`` > 0), ``test/good``,
    ``test/<type>`` and ``ground_truth/<type>/<stem>_mask.png``; the defective test images are
    spread evenly over ``defect_types``.
    """
    raise NotImplementedError


def write_replay_folder(out_dir: Path | str, n: int, seed: int = 0, *, size: int = 128) -> Path:
    """Write ``n`` numbered frames (about 20 % defective) and ``labels.csv`` for the replay demo.

    ``labels.csv`` columns: ``file`` (name in the folder), ``label`` (0 good, 1 defective),
    ``defect_type`` ("good" for normal frames).
    """
    raise NotImplementedError


def read_replay_labels(folder: Path | str) -> dict[str, tuple[int, str]]:
    """``labels.csv`` of a replay folder as {file name: (label, defect_type)}."""
    raise NotImplementedError
