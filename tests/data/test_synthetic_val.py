"""Synthetic validation defects: exact masks, three sizes, seeded, written where an engineer can look."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_inspector.data.foreground import foreground_mask
from edge_inspector.data.synthetic_val import MIN_WINDOW, SIZES, defect_in_window, synthetic_validation
from edge_inspector.data.types import Sample
from edge_inspector.preprocess import ImageDecodeError


def _goods(root: Path, n: int = 3, size: tuple[int, int] = (256, 320)) -> list[Sample]:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    samples = []
    for i in range(n):
        path = root / f"good_{i}.png"
        image = np.clip(rng.normal(128, 12, (*size, 3)), 0, 255).astype(np.uint8)
        cv2.imwrite(str(path), cv2.GaussianBlur(image, (5, 5), 0))
        samples.append(Sample(path=path, label=0, split="val"))
    return samples


def test_every_good_image_gets_one_defect_per_size_with_an_exact_mask(tmp_path):
    goods = _goods(tmp_path / "val")
    made_all = synthetic_validation(goods, tmp_path / "synth", seed=3)
    out = made_all.samples
    assert made_all.goods == len(goods) and made_all.on_part == 0  # noise texture: no plain background
    assert out[:len(goods)] == goods  # the good parts stay, first and unchanged
    made = out[len(goods):]
    assert len(made) == len(goods) * len(SIZES)
    assert sorted({s.defect_type for s in made}) == sorted(f"synthetic_{name}" for name, _ in SIZES)
    for k, s in enumerate(made):  # in order: each good image's sizes, then the next image's
        assert s.label == 1 and s.split == "val" and s.path.is_file() and s.mask_path.is_file()
        source = cv2.imread(str(goods[k // len(SIZES)].path))
        image, mask = cv2.imread(str(s.path)), cv2.imread(str(s.mask_path), cv2.IMREAD_GRAYSCALE) > 127
        changed = (image != source).any(axis=2)
        assert mask.any() and np.array_equal(changed, mask), s.path.name  # the mask is the changed pixels


def test_small_sizes_stay_inside_their_window(tmp_path):
    image = cv2.imread(str(_goods(tmp_path, n=1, size=(512, 512))[0].path))
    rng = np.random.default_rng(1)
    for fraction in (0.25, 0.125):
        side = max(MIN_WINDOW, round(512 * fraction))
        for _ in range(20):
            _, mask, _ = defect_in_window(image, rng, fraction)
            ys, xs = np.nonzero(mask)
            assert ys.max() - ys.min() < side and xs.max() - xs.min() < side


def test_seeded_and_names_a_bad_image(tmp_path):
    goods = _goods(tmp_path / "val", n=2)
    a = synthetic_validation(goods, tmp_path / "a", seed=5).samples
    b = synthetic_validation(goods, tmp_path / "b", seed=5).samples
    assert [s.path.name for s in a] == [s.path.name for s in b]
    assert all(s.path.read_bytes() == t.path.read_bytes() for s, t in zip(a[2:], b[2:], strict=True))
    broken = tmp_path / "val" / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(ImageDecodeError, match="broken.png"):
        synthetic_validation([Sample(path=broken, label=0, split="val")], tmp_path / "c")


def test_on_a_plain_background_every_defect_lies_on_the_part(tmp_path):
    from tests.data.test_foreground import _part_on_wall

    image, truth = _part_on_wall(384, 512)
    path = tmp_path / "val" / "plate.png"
    path.parent.mkdir()
    cv2.imwrite(str(path), image)
    made = synthetic_validation([Sample(path=path, label=0, split="val")] * 4, tmp_path / "synth", seed=2)
    assert made.on_part == 4 and len(list((tmp_path / "synth" / "foreground").glob("*.png"))) == 4
    defects = made.samples[4:]
    assert len(defects) == 4 * len(SIZES)  # no size left out: the part is large enough for each
    part = foreground_mask(image)
    for s in defects:
        mask = cv2.imread(str(s.mask_path), cv2.IMREAD_GRAYSCALE) > 127
        changed = (cv2.imread(str(s.path)) != image).any(axis=2)
        assert mask.any() and np.array_equal(changed, mask), s.path.name
        assert not (mask & ~part).any(), s.path.name  # nothing drawn on the wall
