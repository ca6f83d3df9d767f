"""Helpers of the operations tests: replay folders with known scores, and running the real daemon.

Scores are predictable with the tiny detector of tests/fixtures/models.py: its normalised score is
the frame's mean brightness + 0.2, so a frame of grey level g (0-255) scores g / 255 + 0.2.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import cv2
import numpy as np

from edge_inspector.runtime.daemon import Daemon


def grey_frame(level: int, seed: int, size: int = 64) -> np.ndarray:
    """A BGR frame of mean grey ``level`` with +-6 of pixel noise."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.integers(level - 6, level + 7, size=(size, size, 3)), 0, 255).astype(np.uint8)


def write_levels(folder: Path, levels: list[int]) -> Path:
    """``frame_00000.png``...: frame i has mean grey ``levels[i]``."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, level in enumerate(levels):
        cv2.imwrite(str(folder / f"frame_{i:05d}.png"), grey_frame(level, seed=i))
    return folder


def score_of(level: float) -> float:
    return level / 255 + 0.2


def write_config(path: Path, *, replay: Path, models: str, publishers: str = "[]", extra: str = "") -> Path:
    """A daemon config: one replay camera 'cam1' on line 'line1', metrics off."""
    path.write_text(
        "line: line1\n"
        f"cameras:\n  - id: cam1\n    source: {{type: replay, path: {replay}}}\n"
        f"models:\n{textwrap.indent(textwrap.dedent(models).strip(), '  ')}\n"
        f"publishers:\n{textwrap.indent(textwrap.dedent(publishers).strip(), '  ')}\n"
        "metrics: {enabled: false}\n"
        "inference: {batch_max: 4}\n"
        f"{textwrap.dedent(extra)}"
    )
    return path


def run_daemon(config: Path) -> Daemon:
    """Start the real daemon, let the replay finish, drain and close; return it (metrics readable)."""
    daemon = Daemon(config, drain_timeout=30)
    daemon.start()
    assert daemon.run() == 0
    return daemon


def metric(daemon: Daemon, name: str, **labels: str) -> float | None:
    value = daemon.metrics.registry.get_sample_value(name, labels)
    return value
