"""What a card says about the data behind a model must be true: the images a normal-only detector really
learned from, and whether its threshold was set on images it had seen (real training, real ONNX models)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edge_inspector.card import load_card
from edge_inspector.cli import main
from edge_inspector.data.readers import load_dataset
from edge_inspector.data.types import samples_digest
from edge_inspector.evaluate.runner import evaluate_model


def test_calibrating_on_the_train_split_is_recorded_and_every_report_warns(tmp_path: Path, tiny_models: Path,
                                                                           demo_dataset: Path) -> None:
    for name in ("tiny-detector.onnx", "tiny-detector.card.json"):
        shutil.copy(tiny_models / name, tmp_path / name)
    card_path = tmp_path / "tiny-detector.card.json"
    calibration = tmp_path / "calibration"
    assert main(["calibrate", str(card_path), str(demo_dataset), "--split", "train", "--calibration-dir",
                 str(calibration), "-q"]) == 0
    op = load_card(card_path).operating_point
    assert op is not None and op.on_training_images and op.source.endswith(":train")
    test = load_dataset(demo_dataset).split("test")
    report, _ = evaluate_model(card_path, test, dataset={"name": "demo", "split": "test"}, threads=1)
    assert any("calibrated on images the model was trained on" in w for w in report.warnings), report.warnings
    assert main(["calibrate", str(card_path), str(demo_dataset), "--split", "test", "--calibration-dir",
                 str(calibration), "-q"]) == 0
    assert not load_card(card_path).operating_point.on_training_images  # held-out images: no warning
    report, _ = evaluate_model(card_path, test, dataset={"name": "demo", "split": "test"}, threads=1)
    assert not any("trained on" in w for w in report.warnings)


def test_card_counts_only_the_images_a_normal_only_detector_learned_from(tmp_path: Path,
                                                                        demo_dataset: Path) -> None:
    pytest.importorskip("torch")
    from edge_inspector.toolchain.train import train_model

    dataset = load_dataset(demo_dataset, scheme="stratified", seed=0)  # puts defects in train
    train = dataset.split("train")
    normal = [s for s in train if s.label == 0]
    assert 0 < len(normal) < len(train)
    card = load_card(train_model("feature_memory", dataset, tmp_path, name="fm", seed=0,
                                 options={"input_size": 64, "threads": 1}, progress=False))
    assert card.training.n_images == len(normal)  # not len(train): the defects never entered the memory bank
    assert card.training.data_digest == samples_digest(normal) != dataset.digest("train")
    assert not card.operating_point.on_training_images  # val split + out-of-fold scores
