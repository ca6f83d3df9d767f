"""Synthetic defects for training when real defects are scarce (numpy/OpenCV only, no torch).

Each function takes a BGR uint8 image and a ``numpy.random.Generator`` and returns a new image and
a uint8 {0, 1} mask that is 1 exactly where pixels were changed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

KINDS = ("cut_paste", "scratch", "noise_patch")


def cut_paste(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Cut a patch of the image, jitter it (flip, rotate, brightness) and paste it elsewhere (CutPaste)."""
    raise NotImplementedError


def scratch(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw a thin curved line contrasting with the surface."""
    raise NotImplementedError


def noise_patch(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Replace an elliptical region with Gaussian noise around its own mean."""
    raise NotImplementedError


def synthesize_defects(
    images: Sequence[np.ndarray] | np.ndarray,
    rng: np.random.Generator,
    kinds: Sequence[str] = KINDS,
) -> tuple[list[np.ndarray] | np.ndarray, list[np.ndarray] | np.ndarray, list[str]]:
    """Give every image one synthetic defect of a randomly chosen kind.

    Returns (images, masks, types); stacked arrays when ``images`` is an (N, H, W, 3) array,
    lists otherwise (images may differ in size).
    """
    raise NotImplementedError
