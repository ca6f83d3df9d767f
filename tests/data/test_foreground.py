"""The part told from a plain background by the frame's own border; textures and empty frames get None."""

from __future__ import annotations

import numpy as np

from edge_inspector.data.foreground import MIN_FRACTION, foreground_mask


def _part_on_wall(h: int = 240, w: int = 320) -> tuple[np.ndarray, np.ndarray]:
    """A blue plate on a grey wall with a left-to-right light gradient and sensor noise, and its truth."""
    rng = np.random.default_rng(0)
    wall = np.linspace(190, 150, w, dtype=np.float32)[None, :, None] * np.ones((h, 1, 3), np.float32)
    image = wall + rng.normal(0, 3, (h, w, 3))
    truth = np.zeros((h, w), bool)
    truth[60:180, 100:260] = True
    image[truth] = (170, 60, 20)  # BGR blue
    image[truth] += rng.normal(0, 6, (int(truth.sum()), 3))
    return np.clip(image, 0, 255).astype(np.uint8), truth


def test_finds_a_part_on_a_plain_background():
    image, truth = _part_on_wall()
    mask = foreground_mask(image)
    assert mask is not None and mask.shape == truth.shape
    iou = (mask & truth).sum() / (mask | truth).sum()
    assert iou > 0.9, iou


def test_a_texture_filling_the_frame_is_everywhere():
    rng = np.random.default_rng(1)
    texture = np.clip(rng.normal(128, 30, (240, 320, 3)), 0, 255).astype(np.uint8)
    assert foreground_mask(texture) is None
    assert foreground_mask(np.full((240, 320), 90, np.uint8)) is None  # an empty frame: no part to find


def test_specks_are_not_a_part():
    image, _ = _part_on_wall()
    image[:] = image[0:1, 0:1]  # wall colour everywhere ...
    side = int(np.sqrt(MIN_FRACTION * 240 * 320)) // 2
    image[100:100 + side, 100:100 + side] = (170, 60, 20)  # ... and one patch a quarter of the smallest part
    assert foreground_mask(image) is None


def test_a_thumbnail_is_everywhere():
    image, _ = _part_on_wall(48, 64)
    assert foreground_mask(image) is None  # below MIN_SIDE: no band and interior to tell apart
