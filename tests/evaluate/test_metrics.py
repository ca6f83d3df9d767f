"""Metrics against values computed by hand on small cases (the arithmetic is in the comments)."""

from __future__ import annotations

import numpy as np
import pytest

from edge_inspector.evaluate.metrics import (
    binary_counts,
    composite_score,
    defect_type_metrics,
    image_metrics,
    parse_weights,
    per_type_table,
    pixel_metrics,
    predicted_types,
)

LABELS = [0, 0, 0, 1, 1, 1]
SCORES = [0.1, 0.4, 0.6, 0.35, 0.8, 0.9]


def test_image_metrics_match_hand_values():
    m = image_metrics(LABELS, SCORES)
    # positive/negative pairs ranked right: 0.35 beats 0.1 only (1), 0.8 and 0.9 beat all three (3+3) -> 7/9
    assert m["auroc"] == pytest.approx(7 / 9)
    # ranked: + + - - + - ; AP = 1/3*1 + 1/3*1 + 1/3*(3/5)
    assert m["average_precision"] == pytest.approx(2 / 3 + 0.2)
    at = m["at_threshold"]
    # at 0.5: predicted defective = 0.6 (good), 0.8, 0.9 -> tp 2, fp 1, tn 2, fn 1
    assert (at["tp"], at["fp"], at["tn"], at["fn"]) == (2, 1, 2, 1)
    assert at["precision"] == pytest.approx(2 / 3)
    assert at["recall"] == pytest.approx(2 / 3)
    assert at["f1"] == pytest.approx(2 / 3)
    assert at["accuracy"] == pytest.approx(4 / 6)
    assert at["false_reject_rate"] == pytest.approx(1 / 3)  # 1 of 3 good parts rejected
    assert at["escape_rate"] == pytest.approx(1 / 3)  # 1 of 3 defective parts passed
    best = m["best_f1"]
    # threshold 0.8: tp 2, fp 0, fn 1 -> P 1, R 2/3, F1 0.8 (0.35 gives 0.75, 0.6 gives 0.667)
    assert best["threshold"] == pytest.approx(0.8)
    assert best["f1"] == pytest.approx(0.8)
    assert best["false_reject_rate"] == 0.0
    assert m["unavailable"] == {}


def test_single_class_gives_none_with_reasons_not_crash():
    m = image_metrics([0, 0, 0], [0.1, 0.7, 0.2])
    assert m["auroc"] is None and "no defective" in m["unavailable"]["auroc"]
    at = m["at_threshold"]
    assert at["recall"] is None and at["f1"] is None and at["escape_rate"] is None
    assert at["false_reject_rate"] == pytest.approx(1 / 3)
    assert m["best_f1"] is None
    m = image_metrics([1, 1], [0.2, 0.9])
    assert m["auroc"] is None and "no good" in m["unavailable"]["auroc"]
    assert m["at_threshold"]["false_reject_rate"] is None
    assert m["at_threshold"]["recall"] == 0.5


def test_precision_undefined_when_nothing_flagged():
    at = binary_counts(np.array([0, 1]), np.array([0.1, 0.2]), 0.5)
    assert at["precision"] is None and "no part was predicted" in at["unavailable"]["precision"]
    assert at["recall"] == 0.0 and at["f1"] == 0.0 and at["escape_rate"] == 1.0


def test_per_type_table_rates():
    rows = per_type_table([0, 0, 1, 1, 1], ["good", "good", "scratch", "scratch", "spot"], [0.1, 0.6, 0.7, 0.3, 0.9])
    by = {r["type"]: r for r in rows}
    assert [r["type"] for r in rows] == ["good", "scratch", "spot"]
    assert by["good"]["false_reject_rate"] == 0.5
    assert by["scratch"]["detection_rate"] == 0.5
    # scratch vs good: 0.7 beats both, 0.3 beats 0.1 only -> 3/4
    assert by["scratch"]["auroc_vs_good"] == pytest.approx(0.75)
    assert by["spot"]["auroc_vs_good"] == 1.0


def test_defect_type_metrics_match_hand_values():
    true = ["good", "good", "red", "red", "blue"]
    pred = ["good", "red", "red", "blue", "blue"]
    red = np.array([0.1, 0.6, 0.9, 0.4, 0.2])
    probs = np.stack([red, 1 - red], axis=1)
    m = defect_type_metrics(true, pred, probs, ["red", "blue"])
    assert m["classes"] == ["good", "blue", "red"]
    by = {c["type"]: c for c in m["per_class"]}
    # good: P 1/1, R 1/2 -> F1 2/3 ; red: P 1/2, R 1/2 -> 1/2 ; blue: P 1/2, R 1/1 -> 2/3
    assert by["good"]["f1"] == pytest.approx(2 / 3)
    assert by["red"]["precision"] == pytest.approx(0.5) and by["red"]["recall"] == pytest.approx(0.5)
    assert by["blue"]["recall"] == 1.0
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.5 + 2 / 3) / 3)
    assert m["weighted_f1"] == pytest.approx((2 * 2 / 3 + 2 * 0.5 + 2 / 3) / 5)
    assert m["confusion"] == [[1, 0, 1], [0, 1, 0], [0, 1, 1]]
    # red one-vs-rest: positives 0.9, 0.4 vs 0.1, 0.6, 0.2 -> (3 + 2) / 6 ; blue: 0.8 vs 0.9,0.4,0.1,0.6 -> 3/4
    assert m["defect_type_auroc_per_class"] == pytest.approx({"red": 5 / 6, "blue": 0.75})
    assert m["defect_type_auroc"] == pytest.approx((5 / 6 + 0.75) / 2)


def test_defect_type_without_type_head():
    m = defect_type_metrics(["good", "red"], None)
    assert m["macro_f1"] is None and "no defect-type output" in m["unavailable"]["macro_f1"]


def test_predicted_types_follow_the_verdict():
    assert predicted_types([0.2, 0.7, 0.9], ["red", "red", None]) == ["good", "red", "defect"]


def test_iou_and_dice_by_hand():
    gt = np.array([[[1, 1, 0], [0, 0, 0]]], np.uint8)
    amap = np.array([[[0.9, 0.2, 0.7], [0.1, 0.1, 0.1]]], np.float32)
    m = pixel_metrics(amap, gt)
    # predicted = {(0,0), (0,2)}; truth = {(0,0), (0,1)}: intersection 1, union 3
    assert m["iou"] == pytest.approx(1 / 3)
    assert m["dice"] == pytest.approx(2 * 1 / (2 + 2))
    # pixel AUROC: positives 0.9, 0.2 vs negatives 0.7, 0.1, 0.1, 0.1: 0.9 beats 4, 0.2 beats 3 -> 7/8
    assert m["pixel_auroc"] == pytest.approx(7 / 8)
    assert m["n_regions"] == 1
    # best Dice over thresholds: 0.9 -> TP 1, FP 0, FN 1: 2/3 ; 0.7 -> TP 1, FP 1, FN 1: 1/2 ;
    # 0.2 -> TP 2, FP 1, FN 0: 4/5 (IoU 2/3) ; 0.1 -> TP 2, FP 4: 4/8
    assert m["best_dice"]["dice"] == pytest.approx(0.8) and m["best_dice"]["iou"] == pytest.approx(2 / 3)
    assert m["best_dice"]["raw_threshold"] == pytest.approx(0.2)


def test_empty_masks_give_reasons():
    maps = np.zeros((2, 4, 4), np.float32)
    m = pixel_metrics(maps, np.zeros((2, 4, 4), np.uint8))
    assert m["pixel_auroc"] is None and m["pro"] is None and m["iou"] is None and m["dice"] is None
    assert "no defect pixel" in m["unavailable"]["pro"]
    assert "none predicted" in m["unavailable"]["iou"]
    # good images with false alarms: IoU is a real 0, not None
    maps[0, 0, 0] = 0.9
    m = pixel_metrics(maps, np.zeros((2, 4, 4), np.uint8))
    assert m["iou"] == 0.0 and m["dice"] == 0.0
    m = pixel_metrics(None, None)
    assert "no anomaly map" in m["unavailable"]["pro"]


def test_composite_reweights_missing_components():
    full = composite_score({"image_auroc": 1.0, "f1": 0.5, "recall": 0.5, "pro": 0.0, "defect_type_auroc": 1.0})
    assert full["score"] == pytest.approx(0.30 + 0.10 + 0.075 + 0.0 + 0.10)
    part = composite_score({"image_auroc": 1.0, "f1": 0.5, "recall": 0.5, "pro": None, "defect_type_auroc": None})
    # remaining weights 0.30, 0.20, 0.15 re-scaled to sum 1
    assert part["score"] == pytest.approx((0.30 * 1 + 0.20 * 0.5 + 0.15 * 0.5) / 0.65)
    assert part["missing"] == ["defect_type_auroc", "pro"]
    assert composite_score({})["score"] is None
    w = parse_weights("image_auroc=1")
    assert composite_score({"image_auroc": 0.7, "pro": 0.1}, w)["score"] == pytest.approx(0.7)
    with pytest.raises(ValueError, match="NAME=VALUE"):
        parse_weights("speed=1")
