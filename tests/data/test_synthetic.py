"""Synthetic demo data: MVTec layout, exact masks, determinism, replay labels, speed."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_inspector.data.synthetic import (
    DEFECT_TYPES,
    generate_demo_dataset,
    read_replay_labels,
    render_part,
    write_replay_folder,
)
from edge_inspector.data.types import DatasetError


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def test_layout_and_masks_exactly_for_defects(demo_dataset: Path) -> None:
    assert len(list((demo_dataset / "train" / "good").glob("*.png"))) == 20
    assert len(list((demo_dataset / "test" / "good").glob("*.png"))) == 8
    assert not (demo_dataset / "ground_truth" / "good").exists()
    for kind in DEFECT_TYPES:
        images = sorted((demo_dataset / "test" / kind).glob("*.png"))
        assert len(images) == 3
        for image_path in images:
            image = cv2.imread(str(image_path))
            mask = cv2.imread(str(demo_dataset / "ground_truth" / kind / f"{image_path.stem}_mask.png"), 0)
            assert image.shape == (64, 64, 3) and mask.shape == (64, 64)
            assert set(np.unique(mask)) == {0, 255} and (mask > 0).sum() >= 4


def test_defect_pixels_differ_from_the_good_part() -> None:
    for kind in DEFECT_TYPES:
        good, empty = render_part(np.random.default_rng(5), 96)
        bad, mask = render_part(np.random.default_rng(5), 96, defect=kind)
        assert empty.sum() == 0 and mask.sum() > 0
        diff = np.abs(good.astype(int) - bad.astype(int)).max(axis=2)
        # outside the mask only sensor noise differs (the rng stream shifts); inside, the defect is visible
        assert diff[mask > 0].mean() > 30, kind
        assert np.percentile(diff[mask == 0], 50) < 15, kind


def test_deterministic_for_a_seed(tmp_path: Path) -> None:
    kwargs = dict(n_train=3, n_test_good=2, n_test_defect=3, size=48)
    a = _tree(generate_demo_dataset(tmp_path / "a", seed=1, **kwargs))
    b = _tree(generate_demo_dataset(tmp_path / "b", seed=1, **kwargs))
    c = _tree(generate_demo_dataset(tmp_path / "c", seed=2, **kwargs))
    assert a == b and a.keys() == c.keys() and a != c


def test_regenerating_replaces_an_earlier_output_but_not_foreign_files(tmp_path: Path) -> None:
    out = generate_demo_dataset(tmp_path / "d", n_train=5, n_test_good=1, n_test_defect=3, size=32)
    generate_demo_dataset(out, n_train=2, n_test_good=1, n_test_defect=0, size=32)
    assert len(list((out / "train" / "good").glob("*.png"))) == 2 and not (out / "ground_truth").exists()
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("keep me")
    with pytest.raises(DatasetError, match="not empty"):
        generate_demo_dataset(foreign)
    assert (foreign / "thesis.tex").read_text() == "keep me"


def test_bad_parameters(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="'dent'"):
        generate_demo_dataset(tmp_path / "x", defect_types=("dent",))
    with pytest.raises(DatasetError, match="at least 32 px"):
        generate_demo_dataset(tmp_path / "y", size=16)


def test_replay_folder(demo_replay: Path) -> None:
    labels = read_replay_labels(demo_replay)
    frames = sorted(p.name for p in demo_replay.glob("frame_*.png"))
    assert frames == sorted(labels) and len(frames) == 20
    assert sum(y for y, _ in labels.values()) == 4
    assert {t for y, t in labels.values() if y} <= set(DEFECT_TYPES)
    assert all(t == "good" for y, t in labels.values() if not y)
    ordered = [labels[f][0] for f in frames]
    assert ordered != sorted(ordered) and ordered != sorted(ordered, reverse=True)  # defects are interleaved


def test_replay_deterministic(tmp_path: Path) -> None:
    a = write_replay_folder(tmp_path / "a", 10, seed=3, size=32)
    b = write_replay_folder(tmp_path / "b", 10, seed=3, size=32)
    assert _tree(a) == _tree(b) and (a / "labels.csv").read_text() == (b / "labels.csv").read_text()


def test_fast_enough(tmp_path: Path) -> None:
    start = time.perf_counter()
    generate_demo_dataset(tmp_path / "speed", n_train=50, n_test_good=20, n_test_defect=30, size=128)
    elapsed = time.perf_counter() - start
    # target is < 2 s for 100 images; the bound is loose because test machines are shared
    assert elapsed < 8.0, f"100 images of 128 px took {elapsed:.1f} s"
