"""Turn dataset samples into model input through THE shared preprocessing path (preprocess.py).

Trainers and the evaluation call these instead of reading images themselves, so a model is
trained and scored on exactly the tensors the daemon will feed it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np

from ..preprocess import ImageDecodeError, decode_image, load_mask, to_tensor
from .types import DatasetError, Sample


def load_images(samples: Sequence[Sample], height: int, width: int, progress: bool = False) -> np.ndarray:
    """Decode and preprocess samples into one float32 (N, 3, height, width) RGB [0, 1] batch.

    ``progress`` shows a tqdm bar (only on a terminal). Raises DatasetError naming the file.
    """
    out = np.empty((len(samples), 3, height, width), dtype=np.float32)
    items = samples
    if progress and sys.stderr.isatty():
        from tqdm import tqdm

        items = tqdm(samples, desc="loading images", unit="img")
    for i, sample in enumerate(items):
        try:
            out[i] = to_tensor(decode_image(sample.path), height, width)
        except ImageDecodeError as exc:
            raise DatasetError(str(exc)) from exc
    return out


def load_masks(samples: Sequence[Sample], height: int, width: int) -> np.ndarray:
    """Ground-truth masks as uint8 {0, 1} (N, height, width); zeros for samples without a mask."""
    out = np.zeros((len(samples), height, width), dtype=np.uint8)
    for i, sample in enumerate(samples):
        try:
            out[i] = load_mask(sample.mask_path, height, width)
        except ImageDecodeError as exc:
            raise DatasetError(str(exc)) from exc
    return out
