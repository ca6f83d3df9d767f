"""Out-of-fold calibration: the threshold comes from hundreds of honest normal scores and holds on new parts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edge_inspector.card import load_card  # noqa: E402
from edge_inspector.data.readers import load_dataset  # noqa: E402
from edge_inspector.data.synthetic import generate_demo_dataset  # noqa: E402
from edge_inspector.evaluate.scoring import score_samples  # noqa: E402
from edge_inspector.inference import LoadedModel  # noqa: E402
from edge_inspector.toolchain.train import train_model  # noqa: E402

SIZE = 64
TARGET = 0.1  # large enough that 80 fresh good parts can show whether it holds


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory):
    root = generate_demo_dataset(tmp_path_factory.mktemp("oof") / "parts", n_train=40, n_test_good=80,
                                 n_test_defect=6, size=SIZE, seed=11)
    return load_dataset(root, val_fraction=0.1, seed=0)


def _test_frr(card_path: Path, parts) -> float:
    good = [s for s in parts.split("test") if s.label == 0]
    pred = score_samples(LoadedModel.load(card_path), good)
    return float((pred.scores >= 0.5).mean())


def test_training_images_scored_out_of_fold_set_a_threshold_that_holds(parts, tmp_path: Path) -> None:
    opts = {"input_size": (SIZE, SIZE), "threads": 1}
    card_path = train_model("feature_memory", parts, tmp_path, name="oof", options=opts, progress=False,
                            calibration_method="fpr", calibration_target=TARGET)
    card = load_card(card_path)
    op = card.operating_point
    n_train, n_val = len(parts.split("train")), len(parts.split("val"))
    assert op is not None and op.n_normal == n_train + n_val  # every training image, scored out-of-fold
    assert "out-of-fold (leave-one-out)" in op.source
    # the val images' map peaks still set the heatmap threshold, so passed parts show no hot regions
    assert card.normalization.pixel_threshold is not None
    assert op.false_reject_ci[0] <= op.false_reject_rate <= op.false_reject_ci[1] <= 0.3
    frr = _test_frr(card_path, parts)
    # 80 fresh good parts at a true rate of 10 %: more than 22 % rejected happens < 0.1 % of the time
    assert frr <= 0.22, f"out-of-fold threshold rejected {frr:.1%} of fresh good parts (target {TARGET:.0%})"


def test_in_sample_scores_would_not_hold(parts, tmp_path: Path) -> None:
    """The failure out-of-fold scoring exists to prevent: the same model calibrated on its own
    training images rejects far more fresh good parts than it promised."""
    opts = {"input_size": (SIZE, SIZE), "threads": 2, "oof_folds": 0}
    card_path = train_model("feature_memory", parts, tmp_path, name="in-sample", options=opts, progress=False,
                            calibration="train", calibration_method="fpr", calibration_target=TARGET)
    assert _test_frr(card_path, parts) > 0.3


def test_out_of_fold_scores_sit_above_in_sample_scores(parts) -> None:
    from edge_inspector.models import create_detector

    det = create_detector("feature_memory", input_size=(SIZE, SIZE), threads=1, oof_folds=4)
    train = parts.split("train")
    det.fit(train, progress=False)
    assert det.oof_scores is not None and det.oof_scores.shape == (len(train),)
    in_sample = det.predict(det.load(train))["pred_score"]
    assert np.median(det.oof_scores) > np.median(in_sample)
    from edge_inspector.models import DetectorError

    with pytest.raises(DetectorError, match="oof_folds"):
        create_detector("feature_memory", input_size=(SIZE, SIZE), oof_folds=1)
