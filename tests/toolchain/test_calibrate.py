"""Threshold calibration rules on score sets whose answers are known by construction."""

from __future__ import annotations

import numpy as np
import pytest

from edge_inspector.toolchain.calibrate import (
    CalibrationError,
    calibrate_scores,
    span_around,
    threshold_best_f1,
    threshold_for_fpr,
    threshold_min_recall,
)


def test_fpr_threshold_rejects_exactly_the_allowed_fraction() -> None:
    scores = np.random.default_rng(0).permutation(np.arange(1000, dtype=np.float64))
    t = threshold_for_fpr(scores, 0.005)
    assert 994 < t < 995 and (scores >= t).sum() == 5  # 0.5 % of 1000
    t0 = threshold_for_fpr(scores, 0.0)
    assert t0 > 999 and (scores >= t0).sum() == 0
    assert (scores >= threshold_for_fpr(scores, 0.1)).sum() == 100


def test_fpr_threshold_with_ties_never_exceeds_the_budget() -> None:
    scores = np.array([1.0, 2.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0])
    t = threshold_for_fpr(scores, 0.2)  # 2 may go, but the top 8 are tied: none can go alone
    assert (scores >= t).sum() == 0
    with pytest.raises(CalibrationError, match="at least one normal"):
        threshold_for_fpr(np.array([]), 0.01)


def test_best_f1_known_answer() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.35, 0.8])
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    t, f1 = threshold_best_f1(scores, labels)
    # flag {0.35, 0.4, 0.6, 0.7, 0.8}: tp 4, fp 1 -> F1 8/9 (better than 6/7 at 0.5)
    assert f1 == pytest.approx(8 / 9) and 0.3 < t < 0.35


def test_best_f1_perfect_separation_sits_midway() -> None:
    t, f1 = threshold_best_f1(np.array([1.0, 2.0, 5.0, 7.0]), np.array([0, 0, 1, 1]))
    assert f1 == 1.0 and t == pytest.approx(3.5)


def test_min_recall_is_the_highest_threshold_reaching_it() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.35, 0.8])
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    assert threshold_min_recall(scores, labels, 0.75) == pytest.approx(0.5)  # 0.6, 0.7, 0.8 caught
    t = threshold_min_recall(scores, labels, 1.0)
    assert 0.3 < t < 0.35  # must also catch 0.35, so it sits between 0.3 and 0.35
    with pytest.raises(CalibrationError, match="labelled defective"):
        threshold_min_recall(scores, np.zeros(8), 0.9)


def test_calibrate_scores_normalisation_puts_threshold_at_half() -> None:
    rng = np.random.default_rng(1)
    normal, defect = rng.normal(10, 1, 200), rng.normal(16, 1, 50)
    scores = np.r_[normal, defect]
    labels = np.r_[np.zeros(200), np.ones(50)]
    for method, target in (("fpr", 0.01), ("f1", None), ("recall", 0.9)):
        cal = calibrate_scores(scores, labels, method=method, target=target)
        norm = cal.normalization()
        assert norm.score(cal.threshold) == pytest.approx(0.5)
        s = norm.score(scores)
        assert s.min() >= 0.0 and s.max() <= 1.0
        assert np.array_equal(s >= 0.5, scores >= cal.threshold)
    fpr = calibrate_scores(normal, method="auto", target=0.02)
    assert fpr.method == "fpr" and fpr.false_reject_rate <= 0.02 and fpr.recall is None
    auto = calibrate_scores(scores, labels)
    assert auto.method == "f1" and auto.f1 > 0.95 and auto.recall > 0.95
    rec = calibrate_scores(scores, labels, method="recall", target=0.9)
    assert rec.recall >= 0.9


def test_pixel_threshold_from_masks() -> None:
    maps = np.zeros((2, 8, 8), np.float32)
    masks = np.zeros((2, 8, 8), np.uint8)
    maps[1, 2:4, 2:4], masks[1, 2:4, 2:4] = 5.0, 1
    maps[0] += 0.5  # normal image: low everywhere
    cal = calibrate_scores(np.array([0.5, 5.0]), np.array([0, 1]), maps=maps, masks=masks)
    assert 0.5 < cal.pixel_threshold < 5.0 and cal.pixel_f1 == 1.0
    assert calibrate_scores(np.array([0.5, 5.0]), np.array([0, 1]), maps=maps, masks=masks * 0).pixel_threshold is None


def test_pixel_threshold_from_normal_map_peaks_without_masks() -> None:
    """A top-k score sits below the map's peak: the pixel threshold must come from the peaks."""
    scores = np.arange(10, dtype=np.float64)  # normal images only
    peaks = scores * 2 + 1  # each map peaks above its image score
    cal = calibrate_scores(scores, method="fpr", target=0.1, map_max=peaks)
    assert (scores >= cal.threshold).sum() == 1 and (peaks >= cal.pixel_threshold).sum() == 1
    norm = cal.normalization()
    assert np.array_equal(norm.anomaly_map(peaks) >= 0.5, peaks >= cal.pixel_threshold)
    with pytest.raises(CalibrationError, match="map maxima"):
        calibrate_scores(scores, map_max=peaks[:3])


def test_errors_name_the_problem() -> None:
    with pytest.raises(CalibrationError, match="unknown calibration method 'roc'"):
        calibrate_scores(np.array([1.0]), method="roc")
    with pytest.raises(CalibrationError, match="NaN"):
        calibrate_scores(np.array([1.0, np.nan]))
    with pytest.raises(CalibrationError, match="fpr calibration needs normal images"):
        calibrate_scores(np.array([1.0]), np.array([1]), method="fpr")
    lo, hi = span_around(2.0, 2.0, 2.0)  # degenerate: all scores equal
    assert lo < 2.0 < hi
