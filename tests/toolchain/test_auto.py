"""auto: choose on the validation split, report on test once, keep the chosen model and its calibration.

The selection logic runs with tiny real ONNX models through an injected trainer (fast, exact); one
test runs the real ``train_model`` on the generated demo dataset end to end.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import edge_inspector.toolchain.auto as auto
from edge_inspector.card import load_card
from edge_inspector.data.types import Dataset, DatasetError
from tests.evaluate.tiny import build_detector, make_samples


def fake_trainer(kind: str, dataset: Dataset, out_dir: Path, *, name: str, seed: int, options: dict,
                 progress: bool) -> Path:
    """feature_memory: a good detector; autoencoder and feature_memory's wide-neighbourhood and no-region
    twins: the same graph with a threshold so high that it passes every part (poor recall); classifier:
    training fails."""
    if kind == "classifier":
        raise RuntimeError("no labelled defects")
    card_path = build_detector(Path(out_dir), name)
    if kind == "autoencoder" or options.get("neighbourhood") == 5 or options.get("region_window") == 0:
        card = load_card(card_path)
        card.normalization.threshold = 0.99
        card.save(card_path)
    calib = Path(out_dir) / "calibration"
    calib.mkdir(parents=True, exist_ok=True)
    (calib / f"{name}.json").write_text(json.dumps({"threshold": 0.5, "kind": kind}))
    return card_path


@pytest.fixture()
def tiny_dataset(tmp_path: Path) -> Dataset:
    root = tmp_path / "ds"
    samples = (make_samples(root / "train", n_good=4, n_red=0, n_blue=0, split="train", seed=1, hard=False)
               + make_samples(root / "val", n_good=4, n_red=2, n_blue=2, split="val", seed=2)
               + make_samples(root / "test", n_good=4, n_red=2, n_blue=2, split="test", seed=3))
    return Dataset(name="tiny", root=root, samples=samples, layout="folders")


def test_chooses_on_validation_and_reports_test_once(tiny_dataset, tmp_path, monkeypatch):
    seen: list[tuple[str, str]] = []
    real = auto.evaluate_model

    def spy(model, samples, **kw):
        seen.append((str(model), kw["dataset"]["split"]))
        assert {s.split for s in samples} == {kw["dataset"]["split"]}
        return real(model, samples, **kw)

    monkeypatch.setattr(auto, "evaluate_model", spy)
    out = tmp_path / "models"
    summary = auto.run_auto(tiny_dataset, out, trainer=fake_trainer, threads=1)

    by = {c["kind"]: c for c in summary["candidates"]}
    assert "no labelled defects" in by["classifier"]["error"]
    assert by["autoencoder"]["val"]["recall"] == 0.0
    assert by["feature_memory"]["val_composite"]["score"] > by["autoencoder"]["val_composite"]["score"]
    assert summary["chosen"]["kind"] == "feature_memory" and by["feature_memory"]["chosen"]
    # every candidate scored on val; only the chosen one, copied into out/, on test
    assert "feature_memory@neighbourhood5" in by  # the option twin was tried, and lost on val
    assert not by["feature_memory@neighbourhood5"]["chosen"]
    assert "feature_memory@no-region" in by  # labelled val defects: the region branch's "off" twin runs too
    assert [split for _, split in seen] == ["val", "val", "val", "val", "test"]
    assert seen[-1][0] == str(out / "tiny-feature_memory.card.json")

    card = load_card(out / "tiny-feature_memory.card.json")  # sha256 still matches the copied model
    assert card.metrics["test_image_auroc"] == summary["test"]["image_auroc"]
    assert card.metrics["training_energy_wh"] == by["feature_memory"]["training_energy"]["energy_wh"]
    assert card.metrics["test_ms_per_image"] > 0  # the chosen model's cost per frame (a twin's is 4x)
    assert (out / "tiny-feature_memory.onnx").is_file()
    assert json.loads((tmp_path / "calibration" / "tiny-feature_memory.json").read_text())["kind"] == "feature_memory"
    assert (out / "candidates" / "autoencoder" / "tiny-autoencoder.onnx").is_file()
    assert not (out / "tiny-autoencoder.onnx").exists()
    data = json.loads((out / "auto_report" / "auto.json").read_text())
    assert data["selection_split"] == "val" and data["chosen"]["kind"] == "feature_memory"
    assert (out / "auto_report" / "test" / "report.html").is_file()
    assert "validation" in (out / "auto_report" / "auto.html").read_text()


def test_an_option_twin_that_wins_on_validation_is_chosen(tiny_dataset, tmp_path):
    """The twin's options reach the trainer, and it is kept when val ranks it above the default."""
    got: list[dict] = []

    def twin_better(kind, dataset, out_dir, *, name, seed, options, progress):
        got.append(dict(options))
        flipped = dict(options)
        flipped["neighbourhood"] = 3 if options.get("neighbourhood") == 5 else 5
        return fake_trainer(kind, dataset, out_dir, name=name, seed=seed, options=flipped, progress=progress)

    out = tmp_path / "models"
    summary = auto.run_auto(tiny_dataset, out, models=["feature_memory"], trainer=twin_better, threads=1)
    assert {"neighbourhood": 5} in got
    assert summary["chosen"]["kind"] == "feature_memory@neighbourhood5"
    assert (out / "tiny-feature_memory-neighbourhood5.card.json").is_file()


def test_no_option_twin_for_an_option_the_user_set():
    assert auto.option_variants(["feature_memory"]) == [
        ("feature_memory@neighbourhood5", "feature_memory", {"neighbourhood": 5}),
        ("feature_memory@no-region", "feature_memory", {"region_window": 0.0})]
    given = {"feature_memory": {"neighbourhood": 7, "region_window": 0.2}}
    assert auto.option_variants(["feature_memory"], given) == []
    # synthetic validation defects are local blobs: they cannot judge the region branch, so its twin stays out
    assert auto.option_variants(["feature_memory"], labelled=False) == [
        ("feature_memory@neighbourhood5", "feature_memory", {"neighbourhood": 5})]
    assert auto.option_variants(["autoencoder", "classifier"]) == []


def _without_val(dataset: Dataset, label: int) -> Dataset:
    dataset.samples[:] = [s for s in dataset.samples if not (s.split == "val" and s.label == label)]
    return dataset


def test_refuses_a_validation_split_without_good_parts(tiny_dataset, tmp_path):
    with pytest.raises(DatasetError, match="no good part"):
        auto.run_auto(_without_val(tiny_dataset, 0), tmp_path, trainer=fake_trainer)


def _classifier_trains(kind: str, dataset: Dataset, out_dir: Path, **kw) -> Path:
    """fake_trainer, except that the classifier trains (on synthetic defects, as the real one would here)."""
    if kind == "classifier":
        return build_detector(Path(out_dir), kw["name"])
    return fake_trainer(kind, dataset, out_dir, **kw)


def test_ranks_on_synthetic_defects_when_validation_has_no_labelled_one(tiny_dataset, tmp_path, monkeypatch):
    """A native split: val holds good parts only. Candidates are ranked on synthetic defects made from them
    (written where they can be looked at); the classifier, which would train on the same generator, is
    trained and scored but not ranked; test is still the real split."""
    dataset = _without_val(tiny_dataset, 1)
    assert auto.default_candidates(dataset) == ("feature_memory",)
    ranked_on: list[list] = []
    real = auto.evaluate_model

    def spy(model, samples, **kw):
        if kw["dataset"]["split"] == "val":
            ranked_on.append(samples)
        return real(model, samples, **kw)

    monkeypatch.setattr(auto, "evaluate_model", spy)
    out = tmp_path / "models"
    summary = auto.run_auto(dataset, out, models=["classifier", "feature_memory"], trainer=_classifier_trains,
                            threads=1)
    n_good = len(dataset.split("val"))
    assert summary["val_defects"]["source"] == "synthetic"
    assert summary["val_defects"]["defective"] == 3 * n_good
    assert all(sum(s.label for s in samples) == 3 * n_good for samples in ranked_on)
    assert len(list((out / "auto_report" / "synthetic_val" / "images").glob("*.png"))) == 3 * n_good
    by = {c["kind"]: c for c in summary["candidates"]}
    assert "synthetic" in by["classifier"]["not_ranked"] and not by["classifier"]["chosen"]
    assert by["classifier"]["val_composite"]["score"] is not None  # scored, shown, but not ranked
    assert summary["chosen"]["kind"] == "feature_memory"  # its twin passes every defect (threshold 0.99)
    assert "synthetic" in (out / "auto_report" / "auto.html").read_text()
    assert summary["test"]["image_auroc"] is not None  # the real test split

    with pytest.raises(auto.AutoError, match="classifier: it may have trained on the same synthetic defects"):
        auto.run_auto(dataset, tmp_path / "only", models=["classifier"], trainer=_classifier_trains, threads=1)


def test_fails_clearly_when_no_candidate_survives(tiny_dataset, tmp_path):
    with pytest.raises(auto.AutoError, match="classifier: RuntimeError: no labelled defects"):
        auto.run_auto(tiny_dataset, tmp_path, models=["classifier"], trainer=fake_trainer)
    with pytest.raises(auto.AutoError, match="no candidate model kind given"):
        auto.run_auto(tiny_dataset, tmp_path, models=[], trainer=fake_trainer)


def test_cli_reports_no_surviving_candidate_on_stderr(demo_dataset, tmp_path, monkeypatch, capsys):
    """An AutoError reaches cli.main: one line on stderr, exit 1, no traceback, no doubled 'auto: auto:'."""
    from edge_inspector.cli import main

    monkeypatch.setattr(auto, "_default_trainer", lambda: fake_trainer)
    rc = main(["auto", str(demo_dataset), "--models", "classifier", "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "auto: no candidate could be trained and scored (classifier: RuntimeError: no labelled defects)" in err
    assert "auto: auto:" not in err and "Traceback" not in err


@pytest.mark.slow
def test_real_training_end_to_end(demo_dataset, tmp_path, capsys):
    """The CLI with the real train_model: two kinds trained, chosen on val, reported on test."""
    from edge_inspector.cli import main

    out = tmp_path / "models"
    rc = main(["auto", str(demo_dataset), "--models", "feature_memory,classifier", "--out", str(out),
               "--threads", "1", "--quiet", "--epochs", "1"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "chosen:" in text and "image AUROC" in text
    data = json.loads((out / "auto_report" / "auto.json").read_text())
    kinds = {c["kind"]: c for c in data["candidates"]}
    assert set(kinds) == {"feature_memory", "feature_memory@neighbourhood5", "feature_memory@no-region", "classifier"}
    assert all("error" not in c for c in kinds.values()), kinds
    assert kinds["classifier"]["val"]["defect_type_auroc"] is not None  # the type head is scored
    assert kinds["feature_memory"]["val_composite"]["missing"] == ["defect_type_auroc"]
    chosen = data["chosen"]["kind"]
    best = max(kinds.values(), key=lambda c: c["val_composite"]["score"])
    assert chosen == best["kind"]
    card = load_card(out / f"{demo_dataset.name}-{chosen.replace('@', '-')}.card.json")
    assert card.normalization.method != "uncalibrated"
    assert data["test"]["image_auroc"] is not None and "test_composite" in card.metrics


def _frames(root: Path, size: tuple[int, int], n: int = 6) -> Dataset:
    import cv2
    import numpy as np

    from edge_inspector.data.types import Sample

    root.mkdir(parents=True, exist_ok=True)
    samples = []
    for i in range(n):
        path = root / f"f{i}.png"
        cv2.imwrite(str(path), np.full((*size, 3), 128, np.uint8))
        samples.append(Sample(path=path, label=0, split="train"))
    return Dataset(name="frames", root=root, samples=samples)


def test_high_resolution_twin_only_for_large_frames(tmp_path):
    small = _frames(tmp_path / "small", (300, 300))
    assert auto.resolution_variants(small, ["feature_memory", "classifier"]) == []
    large = _frames(tmp_path / "large", (1024, 1280))
    variants = auto.resolution_variants(large, ["feature_memory", "autoencoder", "classifier"])
    assert [(label, kind) for label, kind, _ in variants] == [
        ("feature_memory@640x640", "feature_memory"), ("autoencoder@640x640", "autoencoder")]  # base 320 x 2
    # feature_memory's twin is for small defects: its region branch is off, unless the user set it
    assert variants[0][2] == {"input_size": (640, 640), "region_window": 0.0}
    assert variants[1][2] == {"input_size": (640, 640)}
    given = auto.resolution_variants(large, ["feature_memory"], {"feature_memory": {"region_window": 0.2}})
    assert given[0][2] == {"input_size": (640, 640)}
