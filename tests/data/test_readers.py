"""Dataset readers: layouts, both split schemes, reproducible splits and every refused input."""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

import pytest

from edge_inspector.data import readers
from edge_inspector.data.readers import apply_split, list_categories, load_dataset, load_split, save_split
from edge_inspector.data.synthetic import generate_demo_dataset
from edge_inspector.data.types import GOOD, DatasetError

from . import builders

# the shared real sets beside the checkout (or $EI_DATASETS); tests using them skip when absent
REAL = Path(os.environ.get("EI_DATASETS", Path(__file__).resolve().parents[3] / "shared" / "datasets"))


def _assignments(ds) -> dict[str, str]:
    return {str(s.path): s.split for s in ds.samples}


# ------------------------------------------------------------------------------------ MVTec
def test_mvtec_native_split(demo_dataset: Path) -> None:
    ds = load_dataset(demo_dataset)
    assert ds.layout == "mvtec" and ds.name == demo_dataset.name and ds.root == demo_dataset
    assert ds.split_info["counts"] == {
        "train": {GOOD: 16}, "val": {GOOD: 4},
        "test": {GOOD: 8, "missing": 3, "scratch": 3, "spot": 3},
    }
    assert ds.split_info["scheme"] == "native" and ds.split_info["seed"] == 0
    assert all(s.label == 0 for s in ds.split("train") + ds.split("val"))
    defects = [s for s in ds.samples if s.label == 1]
    assert defects and all(s.mask_path is not None and s.mask_path.stem == s.path.stem + "_mask" for s in defects)
    assert all(s.mask_path is None for s in ds.samples if s.label == 0)
    assert ds.defect_types == ["missing", "scratch", "spot"]


def test_mvtec_native_validation_folder(tmp_path: Path) -> None:
    root = generate_demo_dataset(tmp_path / "cat", n_train=6, n_val_good=3, n_test_good=2, n_test_defect=3, size=32)
    ds = load_dataset(root, val_fraction=0.5)
    counts = ds.split_info["counts"]
    assert counts["train"] == {GOOD: 6} and counts["val"] == {GOOD: 3}  # validation/good used, nothing held out
    assert all("validation" in s.path.parts for s in ds.split("val"))
    assert ds.split_info["val_source"] == "validation/good"


def test_native_val_holdout_is_seeded(demo_dataset: Path) -> None:
    a, b, c = (load_dataset(demo_dataset, seed=s) for s in (1, 1, 2))
    assert _assignments(a) == _assignments(b)
    assert _assignments(a) != _assignments(c)


def test_multi_category_root_is_refused_and_listed(tmp_path: Path) -> None:
    builders.mvtec(tmp_path / "bottle")
    builders.mvtec(tmp_path / "screw")
    (tmp_path / "notes").mkdir()
    assert list_categories(tmp_path) == ["bottle", "screw"]
    with pytest.raises(DatasetError, match=r"2 categories \(bottle, screw\)"):
        load_dataset(tmp_path)
    ds = load_dataset(tmp_path, category="screw")
    assert ds.name == "screw" and ds.root == tmp_path / "screw"
    with pytest.raises(DatasetError, match="no category 'cable'.*bottle, screw"):
        load_dataset(tmp_path, category="cable")


def test_single_wrapping_folder_is_entered(tmp_path: Path) -> None:
    builders.mvtec(tmp_path / "outer" / "part")
    assert load_dataset(tmp_path / "outer").name == "part"


# --------------------------------------------------------------------------------- stratified
def test_stratified_counts_per_type(tmp_path: Path) -> None:
    root = builders.mvtec(tmp_path / "cat", n_train=20, n_good=10, defects={"crack": 10, "hole": 5})
    ds = load_dataset(root, scheme="stratified", val_fraction=0.2, test_fraction=0.2, seed=3)
    assert ds.split_info["counts"] == {
        "train": {"crack": 6, GOOD: 18, "hole": 3},
        "val": {"crack": 2, GOOD: 6, "hole": 1},
        "test": {"crack": 2, GOOD: 6, "hole": 1},
    }
    assert ds.split_info["scheme"] == "stratified" and ds.split_info["test_fraction"] == 0.2
    # masks travel with their images into whichever split they land in
    assert all(s.mask_path is not None for s in ds.samples if s.label == 1)


def test_stratified_is_reproducible_and_seed_dependent(tmp_path: Path) -> None:
    root = builders.mvtec(tmp_path / "cat", n_train=12, n_good=6, defects={"crack": 6})
    a, b, c = (load_dataset(root, scheme="stratified", seed=s) for s in (7, 7, 8))
    assert _assignments(a) == _assignments(b)
    assert _assignments(a) != _assignments(c)


def test_stratified_keeps_rare_types_in_training(tmp_path: Path) -> None:
    root = builders.mvtec(tmp_path / "cat", defects={"rare": 1, "pair": 2})
    counts = load_dataset(root, scheme="stratified").split_info["counts"]
    assert counts["train"]["rare"] == 1
    assert counts["train"]["pair"] == 1 and counts["test"]["pair"] == 1


def test_bad_fractions_and_scheme(demo_dataset: Path) -> None:
    with pytest.raises(DatasetError, match="sum to less than 1"):
        load_dataset(demo_dataset, val_fraction=0.6, test_fraction=0.5)
    with pytest.raises(DatasetError, match="scheme='random'"):
        load_dataset(demo_dataset, scheme="random")  # type: ignore[arg-type]


def test_split_saved_and_loaded(tmp_path: Path, demo_dataset: Path) -> None:
    ds = load_dataset(demo_dataset, scheme="stratified", seed=5)
    path = save_split(ds, tmp_path / "split.json")
    loaded = load_split(path)
    assert loaded["info"]["seed"] == 5 and len(loaded["assignments"]) == len(ds.samples)
    again = load_dataset(demo_dataset, seed=99, split_file=path)  # a different seed, the saved split wins
    assert _assignments(again) == _assignments(ds)
    assert again.split_info["counts"] == ds.split_info["counts"]
    assert again.split_info["split_file"] == str(path)


def test_split_file_must_match_dataset(tmp_path: Path, demo_dataset: Path) -> None:
    ds = load_dataset(demo_dataset)
    split = load_split(save_split(ds, tmp_path / "split.json"))
    del split["assignments"][next(iter(split["assignments"]))]
    with pytest.raises(DatasetError, match="1 files not in the split"):
        apply_split(ds, split)
    (tmp_path / "bad.json").write_text('{"format": 1, "assignments": {"a.png": "holdout"}}')
    with pytest.raises(DatasetError, match="bad.json.*train/val/test"):
        load_split(tmp_path / "bad.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(DatasetError, match="broken.json: not valid JSON"):
        load_split(tmp_path / "broken.json")


# ------------------------------------------------------------------------------ plain folders
def test_plain_folders_default_to_stratified(tmp_path: Path) -> None:
    root = builders.folders(tmp_path / "line3")
    ds = load_dataset(root)
    assert ds.layout == "folders" and ds.name == "line3"
    assert ds.split_info["scheme"] == "stratified" and ds.split_info["requested_scheme"] == "native"
    assert ds.split_info["counts"] == {
        "train": {"dent": 3, GOOD: 6, "stain": 3},
        "val": {"dent": 1, GOOD: 2, "stain": 1},
        "test": {"dent": 1, GOOD: 2, "stain": 1},
    }
    # both mask naming conventions are paired
    assert all(s.mask_path is not None for s in ds.samples if s.label == 1)
    assert {s.mask_path.name for s in ds.samples if s.defect_type == "stain"} >= {"stain000.png"}


def test_plain_folders_loose_anomalies_and_missing_anomaly_dir(tmp_path: Path, caplog) -> None:
    root = tmp_path / "plain"
    for i in range(4):
        builders.image(root / "normal" / f"{i}.png", seed=i)
        builders.image(root / "anomaly" / f"a{i}.png", seed=10 + i)
    ds = load_dataset(root)
    assert ds.defect_types == ["anomaly"]
    only_normal = tmp_path / "normals"
    for i in range(3):
        builders.image(only_normal / "normal" / f"{i}.png", seed=i)
    with caplog.at_level(logging.WARNING):
        assert len(load_dataset(only_normal).samples) == 3
    assert "no anomaly/ folder" in caplog.text


def test_visa_csv(tmp_path: Path) -> None:
    root = tmp_path / "visa"
    rows = []
    for obj in ("candle", "pcb1"):
        for i in range(5):
            rows.append([obj, "train", "normal", builders.image(root / obj / "Normal" / f"{i}.JPG", seed=i), ""])
        for i in range(2):
            rows.append([obj, "test", "normal", builders.image(root / obj / "Normal" / f"t{i}.JPG", seed=9 + i), ""])
            img = builders.image(root / obj / "Anomaly" / f"{i}.JPG", seed=20 + i)
            rows.append([obj, "test", "anomaly", img, builders.mask(root / obj / "Masks" / f"{i}.png")])
    (root / "split_csv").mkdir()
    with open(root / "split_csv" / "1cls.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["object", "split", "label", "image", "mask"])
        for obj, split, label, img, m in rows:
            w.writerow([obj, split, label, Path(img).relative_to(root).as_posix(),
                        Path(m).relative_to(root).as_posix() if m else ""])
    with pytest.raises(DatasetError, match=r"2 categories \(candle, pcb1\)"):
        load_dataset(root)
    ds = load_dataset(root, category="pcb1")
    assert ds.layout == "visa" and ds.name == "pcb1"
    assert ds.split_info["counts"] == {"train": {GOOD: 4}, "val": {GOOD: 1}, "test": {"anomaly": 2, GOOD: 2}}
    assert all(s.mask_path is not None and "pcb1" in s.path.parts for s in ds.samples if s.label)


# ------------------------------------------------------------------------------- bad inputs
def test_missing_path_and_missing_folders(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=f"{tmp_path / 'nope'}: missing"):
        load_dataset(tmp_path / "nope")
    builders.image(tmp_path / "half" / "train" / "good" / "0.png")
    with pytest.raises(DatasetError, match=f"{tmp_path / 'half' / 'test'}: missing folder"):
        load_dataset(tmp_path / "half")
    (tmp_path / "odd" / "stuff").mkdir(parents=True)
    builders.image(tmp_path / "odd" / "x.png")
    with pytest.raises(DatasetError, match="unknown dataset layout"):
        load_dataset(tmp_path / "odd")


def test_empty_training_class(tmp_path: Path) -> None:
    root = builders.mvtec(tmp_path / "cat", n_train=0)
    (root / "train" / "good").mkdir(parents=True)
    with pytest.raises(DatasetError, match=f"{root / 'train' / 'good'}: no images"):
        load_dataset(root)


def test_empty_anomaly_type_folder(tmp_path: Path) -> None:
    root = builders.folders(tmp_path / "plain")
    (root / "anomaly" / "burr").mkdir()
    with pytest.raises(DatasetError, match=f"{root / 'anomaly' / 'burr'}: no images.*'burr'"):
        load_dataset(root)
    root2 = builders.mvtec(tmp_path / "cat")
    (root2 / "test" / "bent").mkdir()
    with pytest.raises(DatasetError, match=f"{root2 / 'test' / 'bent'}: no images"):
        load_dataset(root2)


@pytest.mark.parametrize("content", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\0" * 40])
def test_corrupt_image(tmp_path: Path, content: bytes) -> None:
    root = builders.mvtec(tmp_path / "cat")
    bad = root / "test" / "crack" / "009.png"
    bad.write_bytes(content)
    with pytest.raises(DatasetError, match=f"{bad}: corrupt or unreadable image"):
        load_dataset(root)


def test_mask_without_image(tmp_path: Path) -> None:
    root = builders.mvtec(tmp_path / "cat")
    orphan = builders.mask(root / "ground_truth" / "crack" / "077_mask.png")
    with pytest.raises(DatasetError, match=f"{orphan}: mask without image"):
        load_dataset(root)
    orphan.unlink()
    builders.mask(root / "ground_truth" / "scratch" / "000_mask.png")
    with pytest.raises(DatasetError, match="ground_truth/scratch: masks without images"):
        load_dataset(root)


def test_mask_size_mismatch(tmp_path: Path) -> None:
    root = builders.mvtec(tmp_path / "cat", masks=False)
    scaled = builders.mask(root / "ground_truth" / "crack" / "000_mask.png", h=32, w=32)  # same aspect: resized
    ds = load_dataset(root)
    assert any(s.mask_path == scaled for s in ds.samples)
    wrong = builders.mask(root / "ground_truth" / "crack" / "001_mask.png", h=16, w=40)
    with pytest.raises(DatasetError, match=f"{wrong}: mask is 40x16 but its image .*001.png is 16x16"):
        load_dataset(root)


def test_non_image_files_are_ignored_with_a_warning(tmp_path: Path, caplog) -> None:
    root = builders.mvtec(tmp_path / "cat")
    (root / "train" / "good" / "README.txt").write_text("camera 3, shift B")
    (root / "train" / "good" / ".DS_Store").write_bytes(b"\0")
    with caplog.at_level(logging.WARNING):
        ds = load_dataset(root)
    assert len([s for s in ds.samples if s.split in ("train", "val")]) == 6
    assert "README.txt" in caplog.text and "DS_Store" not in caplog.text


def test_mixed_aspect_ratios(tmp_path: Path) -> None:
    root = builders.mvtec(tmp_path / "cat")
    builders.image(root / "train" / "good" / "wide.png", h=16, w=40)  # 2.5: still one kind of picture
    builders.image(root / "train" / "good" / "tall.png", h=40, w=16)  # turned by 90 degrees: same shape
    builders.image(root / "train" / "good" / "big.png", h=48, w=44)  # other size, similar ratio: normal
    load_dataset(root)
    strip = builders.image(root / "test" / "good" / "strip.png", h=8, w=80)
    with pytest.raises(DatasetError, match=f"factor 4.*000.png is 16x16, {strip} is 80x8"):
        load_dataset(root)
    assert load_dataset(root, max_aspect_spread=None).samples


def test_each_image_is_decoded_once(tmp_path: Path, monkeypatch) -> None:
    root = builders.mvtec(tmp_path / "cat")
    load_dataset(root)
    calls = []
    real = readers.cv2.imread
    monkeypatch.setattr(readers.cv2, "imread", lambda *a: calls.append(a) or real(*a))
    load_dataset(root, scheme="stratified")
    assert calls == []


@pytest.mark.skipif(not REAL.is_dir(), reason="real benchmark data not on this machine")
@pytest.mark.parametrize("name", ["magnetic_tile", "kolektorsdd", "mpdd_metal_plate"])
def test_real_sets_with_mixed_sizes(name: str) -> None:
    if not (REAL / name).is_dir():
        pytest.skip(f"{name} not present")
    ds = load_dataset(REAL / name)
    assert ds.split("train") and ds.split("val") and ds.split("test")
    assert sum(s.label for s in ds.samples) > 0


def test_partly_masked_defect_type_warns(tmp_path: Path, caplog) -> None:
    root = builders.mvtec(tmp_path / "cat")
    (root / "ground_truth" / "crack" / "001_mask.png").unlink()
    with caplog.at_level(logging.WARNING):
        load_dataset(root)
    assert "'crack': 1 of 3 images have no mask" in caplog.text and "'hole'" not in caplog.text
