"""Turn dataset samples into model input through THE shared preprocessing path (preprocess.py)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .types import Sample


def load_images(samples: Sequence[Sample], height: int, width: int, progress: bool = False) -> np.ndarray:
    """Decode and preprocess samples into one float32 (N, 3, height, width) RGB [0, 1] batch."""
    raise NotImplementedError


def load_masks(samples: Sequence[Sample], height: int, width: int) -> np.ndarray:
    """Ground-truth masks as uint8 {0, 1} (N, height, width); zeros for samples without a mask."""
    raise NotImplementedError
