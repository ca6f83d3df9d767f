"""Synthetic defects for training when real defects are scarce (numpy/OpenCV only, no torch).

Each function takes a BGR uint8 image (grey (H, W) works too) and a ``numpy.random.Generator`` and
returns a new image and a uint8 {0, 1} mask that is 1 exactly where pixels were changed, so the
mask can serve as a segmentation target without blurring the truth.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np

from .types import DatasetError

KINDS = ("cut_paste", "scratch", "noise_patch")
_ATTEMPTS = 10  # a change can vanish (e.g. brightening a white patch); try another placement


def _check(image: np.ndarray) -> None:
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or min(image.shape[:2]) < 8:
        raise DatasetError(f"augmentation expects a uint8 image of at least 8x8 pixels, got {image.dtype} "
                           f"array of shape {image.shape}")


def _changed(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    diff = before != after
    return (diff.any(axis=2) if diff.ndim == 3 else diff).astype(np.uint8)


def _apply(draw: Callable[[np.ndarray, np.random.Generator], np.ndarray], image: np.ndarray,
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Run ``draw`` until it changes at least one pixel; the mask is derived from the pixels, not the drawing."""
    _check(image)
    out, mask = image, np.zeros(image.shape[:2], np.uint8)
    for _ in range(_ATTEMPTS):
        out = draw(image, rng)
        mask = _changed(image, out)
        if mask.any():
            break
    return out, mask


def _cut_paste(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = image.shape[:2]
    ph = int(rng.integers(max(2, h // 10), max(3, h * 3 // 10) + 1))
    pw = int(rng.integers(max(2, w // 10), max(3, w * 3 // 10) + 1))
    sy, sx = int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))
    dy, dx = int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))
    patch = image[sy:sy + ph, sx:sx + pw].astype(np.float32)
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    if rng.random() < 0.5:
        patch = patch[::-1]
    beta = rng.choice([-1.0, 1.0]) * rng.uniform(15.0, 40.0)
    patch = patch * rng.uniform(0.8, 1.2) + beta
    out = image.copy()
    out[dy:dy + ph, dx:dx + pw] = np.clip(patch, 0, 255).astype(np.uint8)
    return out


def _curve(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    start = rng.uniform([0, 0], [w, h])
    length = rng.uniform(0.2, 0.6) * max(h, w)
    d = rng.uniform(0, 2 * np.pi)
    end = start + length * np.array([np.cos(d), np.sin(d)])
    bend = (start + end) / 2 + rng.normal(0, 0.1 * max(h, w), 2)
    t = np.linspace(0, 1, 32)[:, None]
    return np.round((1 - t) ** 2 * start + 2 * (1 - t) * t * bend + t**2 * end).astype(np.int32)


def _scratch(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = image.shape[:2]
    canvas = np.zeros((h, w), np.uint8)
    thickness = int(rng.integers(1, max(2, min(h, w) // 40) + 1))
    cv2.polylines(canvas, [_curve(rng, h, w)], False, 1, thickness, cv2.LINE_8)
    region = canvas > 0
    out = image.copy()
    if not region.any():
        return out
    local = float(image[region].mean())
    level = local - rng.uniform(60, 110) if local > 110 else local + rng.uniform(60, 110)
    values = level + rng.normal(0, 6.0, size=out[region].shape)
    out[region] = np.clip(values, 0, 255).astype(np.uint8)
    return out


def _noise_patch(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = image.shape[:2]
    canvas = np.zeros((h, w), np.uint8)
    centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
    axes = (max(2, int(rng.uniform(0.05, 0.2) * w)), max(2, int(rng.uniform(0.05, 0.2) * h)))
    cv2.ellipse(canvas, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    region = canvas > 0
    out = image.copy()
    mean = image[region].astype(np.float32).mean(axis=0)
    shape = out[region].shape
    grey = rng.normal(0, rng.uniform(25, 60), size=shape[:1])  # surfaces are grey: no colour confetti
    values = mean + (grey[:, None] if len(shape) == 2 else grey) + rng.normal(0, 4.0, size=shape)
    out[region] = np.clip(values, 0, 255).astype(np.uint8)
    return out


def cut_paste(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Cut a patch of the image, jitter it (flip, brightness, contrast) and paste it elsewhere (CutPaste).

    Pasting the part's own texture makes a defect a detector cannot spot from colour statistics
    alone; the jitter keeps the patch from blending in invisibly. Returns (image, mask).
    """
    return _apply(_cut_paste, image, rng)


def scratch(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw a thin curved line contrasting with the surface around it. Returns (image, mask)."""
    return _apply(_scratch, image, rng)


def noise_patch(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Replace an elliptical region with grey-level noise around its own mean. Returns (image, mask)."""
    return _apply(_noise_patch, image, rng)


_FUNCTIONS = {"cut_paste": cut_paste, "scratch": scratch, "noise_patch": noise_patch}


def synthesize_defects(
    images: Sequence[np.ndarray] | np.ndarray,
    rng: np.random.Generator,
    kinds: Sequence[str] = KINDS,
) -> tuple[list[np.ndarray] | np.ndarray, list[np.ndarray] | np.ndarray, list[str]]:
    """Give every image one synthetic defect of a randomly chosen kind.

    Returns (images, masks, types); stacked arrays when ``images`` is an (N, H, W, 3) array,
    lists otherwise (images may differ in size). ``types`` names the kind used per image.
    """
    unknown = [k for k in kinds if k not in _FUNCTIONS]
    if unknown or not kinds:
        raise DatasetError(f"kinds={list(kinds)}: expected a non-empty subset of {list(KINDS)}")
    out_images, out_masks, types = [], [], []
    for image in images:
        kind = kinds[int(rng.integers(len(kinds)))]
        new, mask = _FUNCTIONS[kind](image, rng)
        out_images.append(new)
        out_masks.append(mask)
        types.append(kind)
    if isinstance(images, np.ndarray):
        shape = images.shape[1:3]
        return (np.stack(out_images) if out_images else images.copy(),
                np.stack(out_masks) if out_masks else np.zeros((0, *shape), np.uint8), types)
    return out_images, out_masks, types
