"""Synthetic defect augmentation: masks equal the changed pixels, determinism, batching."""

from __future__ import annotations

import numpy as np
import pytest

from edge_inspector.data.augment import KINDS, cut_paste, noise_patch, scratch, synthesize_defects
from edge_inspector.data.synthetic import render_part
from edge_inspector.data.types import DatasetError

FUNCTIONS = {"cut_paste": cut_paste, "scratch": scratch, "noise_patch": noise_patch}


@pytest.fixture(scope="module")
def parts() -> np.ndarray:
    return np.stack([render_part(np.random.default_rng(i), 64)[0] for i in range(6)])


@pytest.mark.parametrize("kind", KINDS)
def test_mask_matches_changed_pixels(parts: np.ndarray, kind: str) -> None:
    for i, image in enumerate(parts):
        original = image.copy()
        out, mask = FUNCTIONS[kind](image, np.random.default_rng(i))
        assert np.array_equal(image, original), "input must not be modified"
        assert out.shape == image.shape and out.dtype == np.uint8
        assert mask.shape == image.shape[:2] and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
        changed = (out != image).any(axis=2)
        assert mask.sum() > 0 and np.array_equal(changed, mask.astype(bool))


@pytest.mark.parametrize("kind", KINDS)
def test_deterministic_and_grey_images(parts: np.ndarray, kind: str) -> None:
    a = FUNCTIONS[kind](parts[0], np.random.default_rng(7))
    b = FUNCTIONS[kind](parts[0], np.random.default_rng(7))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    grey = parts[0][:, :, 1].copy()
    out, mask = FUNCTIONS[kind](grey, np.random.default_rng(1))
    assert out.shape == grey.shape and np.array_equal(out != grey, mask.astype(bool)) and mask.any()


def test_defect_is_visible(parts: np.ndarray) -> None:
    for kind in ("scratch", "noise_patch"):
        out, mask = FUNCTIONS[kind](parts[1], np.random.default_rng(3))
        diff = np.abs(out.astype(int) - parts[1].astype(int)).max(axis=2)
        assert diff[mask > 0].mean() > 15, kind


def test_synthesize_batch_and_list(parts: np.ndarray) -> None:
    images, masks, types = synthesize_defects(parts, np.random.default_rng(0))
    assert images.shape == parts.shape and masks.shape == parts.shape[:3] and len(types) == len(parts)
    assert set(types) <= set(KINDS) and all(m.any() for m in masks)
    sizes = [parts[0], parts[1][:40, :50]]
    images, masks, types = synthesize_defects(sizes, np.random.default_rng(0), kinds=["scratch"])
    assert types == ["scratch", "scratch"] and masks[1].shape == (40, 50) and images[1].shape == (40, 50, 3)


def test_bad_inputs(parts: np.ndarray) -> None:
    with pytest.raises(DatasetError, match="'blur'"):
        synthesize_defects(parts, np.random.default_rng(0), kinds=["blur"])
    with pytest.raises(DatasetError, match="uint8"):
        scratch(parts[0].astype(np.float32), np.random.default_rng(0))
