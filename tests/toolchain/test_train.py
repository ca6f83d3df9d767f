"""train_model and the train/calibrate/export commands, end to end on a tiny generated dataset."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from edge_inspector.card import load_card, sha256_file  # noqa: E402
from edge_inspector.cli import main  # noqa: E402
from edge_inspector.data.readers import load_dataset  # noqa: E402
from edge_inspector.inference import LoadedModel  # noqa: E402
from edge_inspector.models import DetectorError  # noqa: E402
from edge_inspector.preprocess import decode_image  # noqa: E402
from edge_inspector.toolchain.train import default_calibration_dir, limit_train, train_model  # noqa: E402


def test_train_model_writes_a_calibrated_deployable_model(demo_dataset: Path, tmp_path: Path) -> None:
    dataset = load_dataset(demo_dataset, val_fraction=0.2, seed=0)
    out = tmp_path / "out"
    card_path = train_model("feature_memory", dataset, out, name="fm", seed=1,
                            options={"input_size": 64, "threads": 2}, progress=False)
    assert card_path == out / "fm.card.json"
    card = load_card(card_path)  # verifies the sha256 as well
    assert card.model_sha256 == sha256_file(out / "fm.onnx")
    assert card.kind == "feature_memory" and card.model_file == "fm.onnx"
    assert (card.input.height, card.input.width) == (64, 64) and card.input.mean == [0.5, 0.5, 0.5]
    assert set(card.outputs) == {"pred_score", "anomaly_map"} and card.classes == []
    assert card.training.data_digest == dataset.digest("train")
    assert card.training.n_images == len(dataset.split("train")) and card.training.seed == 1
    assert card.training.backbone == "lite1" and card.training.fit_seconds > 0  # feature_memory's default
    assert card.parameters > 100_000 and card.extra["taps"] == [8, 16, 32]
    assert card.normalization.method == "fpr=0.01"

    record = json.loads((out / "calibration" / "fm.json").read_text())
    # the val split plus every training image scored out-of-fold
    n_val, n_train = len(dataset.split("val")), len(dataset.split("train"))
    assert record["method"] == "fpr" and record["n_images"] == n_val + n_train
    assert record["model_sha256"] == card.model_sha256 and ":val + " in record["source"]
    assert card.operating_point is not None and card.operating_point.n_normal == n_val + n_train

    model = LoadedModel.load(card_path, threads=2)
    val = [decode_image(s.path) for s in dataset.split("val")]
    assert all(r.score < 0.5 for r in model.predict(val))  # 0.5 % of a handful: none rejected
    test = dataset.split("test")
    results = model.predict([decode_image(s.path) for s in test])
    labels = np.array([s.label for s in test])
    raw = np.array([r.raw_score for r in results])
    assert raw[labels == 1].mean() > raw[labels == 0].mean()


def test_limit_train_and_calibration_dir(demo_dataset: Path, tmp_path: Path) -> None:
    dataset = load_dataset(demo_dataset, val_fraction=0.2, seed=0)
    small = limit_train(dataset, 5, seed=0)
    assert len(small.split("train")) == 5 and small.split("test") == dataset.split("test")
    assert limit_train(dataset, 5, seed=0).split("train") == small.split("train")
    assert limit_train(dataset, None) is dataset
    assert default_calibration_dir(tmp_path / "models") == tmp_path / "calibration"
    assert default_calibration_dir(tmp_path / "scratch") == tmp_path / "scratch" / "calibration"


def test_unknown_kind_and_option_fail_before_any_work(demo_dataset: Path, tmp_path: Path) -> None:
    dataset = load_dataset(demo_dataset)
    with pytest.raises(DetectorError, match="unknown model kind 'patchcore'"):
        train_model("patchcore", dataset, tmp_path)
    with pytest.raises(DetectorError, match="unknown option.*coreset"):
        train_model("feature_memory", dataset, tmp_path, options={"coreset": 0.1})
    assert not list(tmp_path.glob("*.onnx"))


def test_cli_train_calibrate_export(demo_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    rc = main(["train", str(demo_dataset), "--model", "feature_memory", "--out", "models", "--name", "cli",
               "--input-size", "64", "--max-train", "12", "-o", "coreset_ratio=0.05", "-q"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "models/cli.onnx" in out and "threshold:" in out and "fit" in out
    card = load_card(tmp_path / "models" / "cli.card.json")
    assert card.training.n_images == 12 and card.training.options["coreset_ratio"] == 0.05
    assert (tmp_path / "calibration" / "cli.json").is_file()  # models/ -> sibling calibration/

    rc = main(["calibrate", "models/cli.onnx", str(demo_dataset), "--split", "test", "--method", "recall",
               "--target", "0.9", "-q"])
    out = capsys.readouterr().out
    assert rc == 0, out
    card = load_card(tmp_path / "models" / "cli.card.json")
    assert card.normalization.method == "recall=0.9" and "recall" in out
    record = json.loads((tmp_path / "calibration" / "cli.json").read_text())
    assert record["recall"] >= 0.9 and record["n_defect"] == 9

    rc = main(["export", "models/cli.card.json", "--images", str(demo_dataset / "test"), "--out", "deploy"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert (tmp_path / "deploy" / "cli.onnx").is_file() and (tmp_path / "deploy" / "calibration" / "cli.json").is_file()
    assert load_card(tmp_path / "deploy" / "cli.card.json").model_sha256 == card.model_sha256

    # clear errors, exit status 1
    assert main(["train", str(tmp_path / "nowhere"), "-q"]) == 1
    assert "nowhere" in capsys.readouterr().err
    assert main(["calibrate", "models/cli.onnx", str(demo_dataset), "--method", "f1", "-q"]) == 1
    assert "labelled defective" in capsys.readouterr().err
    (tmp_path / "models" / "cli.onnx").write_bytes(b"tampered")
    assert main(["export", "models/cli.card.json"]) == 1
    assert "sha256" in capsys.readouterr().err


def test_auto_input_size_keeps_the_parts_shape(tmp_path):
    import cv2
    import numpy as np

    from edge_inspector.data.types import Sample
    from edge_inspector.toolchain.train import auto_input_size

    def samples(h, w, n=3):
        out = []
        for i in range(n):
            path = tmp_path / f"{h}x{w}_{i}.png"
            cv2.imwrite(str(path), np.full((h, w, 3), 128, np.uint8))
            out.append(Sample(path=path, label=0))
        return out

    assert auto_input_size(samples(300, 310)) == (224, 224)
    assert auto_input_size(samples(512, 203)) == (448, 176)  # tall commutator images
    assert auto_input_size(samples(100, 200)) == (176, 352)  # wide parts
    # frames holding at least twice the detail the default input keeps get twice its pixels
    assert auto_input_size(samples(512, 512)) == (320, 320)  # mpdd-like plates
    assert auto_input_size(samples(447, 460)) == (224, 224)  # just under 2x: unchanged
    assert auto_input_size(samples(1000, 2500)) == (256, 640)  # a large wide frame


def _plain_folders(root: Path, n_normal: int = 30, per_type: int = 10) -> Path:
    """normal/ + anomaly/{scratch,spot}/ with 48 px images, defects visibly darker."""
    import cv2

    rng = np.random.default_rng(0)
    for i in range(n_normal):
        (root / "normal").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "normal" / f"n{i:03d}.png"), rng.integers(120, 140, (48, 48, 3), dtype=np.uint8))
    for t in ("scratch", "spot"):
        (root / "anomaly" / t).mkdir(parents=True, exist_ok=True)
        for i in range(per_type):
            img = rng.integers(120, 140, (48, 48, 3), dtype=np.uint8)
            img[10:30, 10:20] = 20
            cv2.imwrite(str(root / "anomaly" / t / f"{t}{i:03d}.png"), img)
    return root


def test_cli_train_normal_only_kind_keeps_every_defect_for_val_and_test(tmp_path: Path, monkeypatch, capsys) -> None:
    """Issue 19.3: plain folders + feature_memory: no defect wasted in train, --max-train counts normals only,
    and evaluate/calibrate re-split the dataset the way the model was trained (from its card)."""
    data = _plain_folders(tmp_path / "my-part")
    monkeypatch.chdir(tmp_path)
    rc = main(["train", "my-part", "--model", "feature_memory", "--input-size", "64", "--max-train", "12", "-q"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "learns from normal images only" in out and "(10 val, 10 test)" in out
    card = load_card(tmp_path / "models" / "my-part-feature_memory.card.json")
    assert card.training.n_images == 12  # 12 normal images, not 12 of a mix
    assert card.training.split["defects_in_train"] is False
    assert card.training.split["counts"]["train"] == {"good": 18}  # 60 % of 30 normals, before --max-train

    rc = main(["evaluate", "models/my-part-feature_memory.card.json", "my-part", "--out", "reports/my-part",
               "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0, out
    report = json.loads((tmp_path / "reports" / "my-part" / "report.json").read_text())
    assert report["dataset"]["n_defective"] == 10, report["dataset"]  # 5 per type, not 2
    # issue 19.8: the report and the terminal name the command that moves the threshold; it runs as shown
    command = "edge-inspector calibrate models/my-part-feature_memory.card.json my-part --method f1 --split val"
    assert f"threshold: to move it to the best-F1 rule, {command}" in out
    page = (tmp_path / "reports" / "my-part" / "report.html").read_text()
    assert command in page
    if report["image"]["at_threshold"]["fp"] == 0:  # the gallery does not call accepted good parts false positives
        assert "No false positives" in page and "Worst false positives" not in page
    rc = main([*command.split()[1:], "--dry-run", "-q"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "+ 10 defective images (val)" in out

    # issue 19.6: export takes a plain-folders dataset (masks skipped) and says what a missing folder should be
    (data / "masks" / "spot").mkdir(parents=True)
    (data / "masks" / "spot" / "a.png").write_bytes(b"not a png")  # fails the export if it were read as a sample
    for images, n in (("my-part", 50), ("my-part/normal", 4)):
        rc = main(["export", "models/my-part-feature_memory.card.json", "--images", images, "--count", str(n),
                   "--out", "bundle/my-part-v1"])
        out = capsys.readouterr().out
        assert rc == 0 and f"checked: {n} images" in out, out  # 30 normal + 20 defects, not the mask
    assert (tmp_path / "bundle" / "my-part-v1" / "my-part-feature_memory.card.json").is_file()
    assert main(["export", "models/my-part-feature_memory.card.json", "--images", "my-part/test"]) == 1
    assert "my-part/test: no such folder" in capsys.readouterr().err
    shutil.rmtree(data / "masks")

    # a supervised kind keeps the ordinary stratified split (it learns from the defects)
    dataset = load_dataset(data)
    assert sum(1 for s in dataset.split("train") if s.label == 1) == 12


def test_cli_retrain_refuses_to_overwrite_without_force(tmp_path: Path, monkeypatch, capsys) -> None:
    """Issue 19.5: a retrain under an existing name changes nothing unless --force says so."""
    _plain_folders(tmp_path / "my-part", n_normal=12, per_type=3)
    monkeypatch.chdir(tmp_path)
    args = ["train", "my-part", "--input-size", "64", "-q"]
    assert main(args) == 0, capsys.readouterr().out
    models, name = tmp_path / "models", "my-part-feature_memory"
    files = [models / f"{name}.onnx", models / f"{name}.card.json", tmp_path / "calibration" / f"{name}.json"]
    before = {f: f.read_bytes() for f in files}

    assert main(args) == 1
    out = capsys.readouterr().err
    assert "model 'my-part-feature_memory' exists" in out and "--force" in out and "--name" in out
    assert all(str(f.relative_to(tmp_path)) in out for f in files)
    assert {f: f.read_bytes() for f in files} == before  # nothing touched

    assert main([*args, "--name", "my-part-v2"]) == 0, capsys.readouterr().out  # another name: both kept
    assert (tmp_path / "models" / "my-part-v2.card.json").is_file() and files[1].read_bytes() == before[files[1]]

    assert main([*args, "--force", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "replacing:" in out
    assert load_card(files[1]).training.seed == 3


def test_cli_auto_refuses_to_replace_a_model_of_the_same_name(tmp_path: Path, monkeypatch, capsys) -> None:
    """Issue 19.5: auto copies its choice to --out as <dataset>-<kind>; over an existing model only with --force."""
    _plain_folders(tmp_path / "my-part", n_normal=6, per_type=2)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    card = tmp_path / "models" / "my-part-feature_memory.card.json"
    card.write_text("{}")  # refused before any training: the existing file is never read or touched
    assert main(["auto", "my-part", "--models", "feature_memory", "--out", "models", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "models/my-part-feature_memory.card.json exist(s)" in err and "--force" in err and "models/auto" in err
    assert card.read_text() == "{}" and not (tmp_path / "models" / "candidates").exists()


def test_max_train_cap_keeps_defects_first(tmp_path: Path) -> None:
    """A random cap drops most of the rare defects a supervised model learns from: defects come first (up to
    half the cap), good parts fill the rest, the rule is recorded, and quantize's rebuild gets the same subset."""
    data = _plain_folders(tmp_path / "part", n_normal=60, per_type=5)
    dataset = load_dataset(data, scheme="stratified", seed=0)
    train = dataset.split("train")
    n_defects = sum(s.label for s in train)
    assert 4 <= n_defects <= 8 and len(train) > 30  # few defects among many good parts, as on a line

    capped = limit_train(dataset, 20, seed=0)
    kept = capped.split("train")
    assert len(kept) == 20 and sum(s.label for s in kept) == n_defects  # every defect kept
    assert capped.split_info["max_train_rule"] == "defects_first"
    assert capped.split("val") == dataset.split("val") and capped.split("test") == dataset.split("test")
    assert limit_train(dataset, 20, seed=0).split("train") == kept  # seeded: rebuilt identically (quantize)

    tiny = limit_train(dataset, 4, seed=0).split("train")  # more defects than half the cap: half and half
    assert sum(s.label for s in tiny) == 2 and len(tiny) == 4

    # the old rule, still there for cards trained before: a random subset that loses defects
    lost = [sum(s.label for s in limit_train(dataset, 20, seed=k, defects_first=False).split("train"))
            for k in range(5)]
    assert min(lost) < n_defects
    assert "max_train_rule" not in limit_train(dataset, 20, seed=0, defects_first=False).split_info

    from edge_inspector.data.readers import hold_out_defects

    good_only = hold_out_defects(load_dataset(data))  # good parts only: the subset is the plain random one
    assert not any(s.label for s in good_only.split("train"))
    assert (limit_train(good_only, 10, seed=3).split("train")
            == limit_train(good_only, 10, seed=3, defects_first=False).split("train"))
