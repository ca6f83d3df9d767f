"""Image and mask loading goes through the shared preprocessing path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_inspector.data.loading import load_images, load_masks
from edge_inspector.data.readers import load_dataset
from edge_inspector.data.types import DatasetError, Sample
from edge_inspector.preprocess import decode_image, load_mask, to_tensor


def test_images_equal_the_shared_preprocessing(demo_dataset: Path) -> None:
    samples = load_dataset(demo_dataset).split("test")
    batch = load_images(samples, 48, 40, progress=True)
    assert batch.shape == (len(samples), 3, 48, 40) and batch.dtype == np.float32
    assert 0.0 <= batch.min() and batch.max() <= 1.0
    for i in (0, len(samples) - 1):
        assert np.array_equal(batch[i], to_tensor(decode_image(samples[i].path), 48, 40))


def test_masks(demo_dataset: Path) -> None:
    samples = load_dataset(demo_dataset).split("test")
    masks = load_masks(samples, 32, 32)
    assert masks.shape == (len(samples), 32, 32) and masks.dtype == np.uint8
    for s, m in zip(samples, masks, strict=True):
        assert m.any() == bool(s.label)
        assert np.array_equal(m, load_mask(s.mask_path, 32, 32))


def test_unreadable_image_is_a_dataset_error(tmp_path: Path) -> None:
    bad = tmp_path / "x.png"
    bad.write_bytes(b"nope")
    with pytest.raises(DatasetError, match="x.png"):
        load_images([Sample(bad, 0)], 8, 8)
    with pytest.raises(DatasetError, match="x.png"):
        load_masks([Sample(bad, 1, "crack", bad)], 8, 8)
