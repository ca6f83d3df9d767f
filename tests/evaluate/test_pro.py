"""PRO (per-region overlap) on tiny masks/maps whose curves were worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_inspector.evaluate.pro import aupro, label_regions, pro_curve


def test_two_regions_curve_and_aupro_by_hand():
    # regions: A = {(0,0), (0,1)} (2 px), B = {(1,3)} (1 px); 9 normal pixels
    mask = np.array([[[1, 1, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]]], np.uint8)
    amap = np.array([[[0.9, 0.5, 0.8, 0.1], [0.2, 0.3, 0.4, 0.7], [0.0, 0.05, 0.15, 0.25]]])
    curve = pro_curve(amap, mask)
    assert curve.n_regions == 2
    # t=0.9: A half found -> PRO (0.5+0)/2; t=0.8: a normal pixel -> FPR 1/9; t=0.7: B -> (0.5+1)/2; t=0.5: A full
    assert curve.fpr[:5] == pytest.approx([0, 0, 1 / 9, 1 / 9, 1 / 9])
    assert curve.pro[:5] == pytest.approx([0, 0.25, 0.25, 0.75, 1.0])
    assert curve.fpr[-1] == pytest.approx(1.0) and curve.pro[-1] == pytest.approx(1.0)
    # area to FPR 0.3: 0.25 * 1/9 + 1.0 * (0.3 - 1/9); normalised by 0.3
    assert aupro(amap, mask) == pytest.approx((0.25 / 9 + (0.3 - 1 / 9)) / 0.3)


def test_each_region_weighs_the_same():
    # a 2-px region found at the top and a 1-px region found last: per-pixel overlap would say 2/3
    mask = np.array([[[1, 1, 0, 0, 0, 1]]], np.uint8)
    amap = np.array([[[0.9, 0.9, 0.1, 0.2, 0.3, 0.05]]])
    curve = pro_curve(amap, mask)
    # after the 0.9 pair PRO is (1 + 0) / 2 = 0.5, not 2/3
    assert curve.pro[1] == pytest.approx(0.5) and curve.fpr[1] == 0.0


def test_ties_make_a_diagonal_and_the_limit_is_interpolated():
    # region pixel and a normal pixel share 0.5: one step from (0,0) to (0.5,1); at FPR 0.3 PRO is 0.6
    mask = np.array([[[1, 0, 0]]], np.uint8)
    amap = np.array([[[0.5, 0.5, 0.1]]])
    assert aupro(amap, mask) == pytest.approx(0.3 * 0.6 / 2 / 0.3)
    assert aupro(amap, mask, fpr_limit=1.0) == pytest.approx(0.5 * 1 / 2 + 0.5 * 1)


def test_perfect_and_regions_across_images():
    masks = np.zeros((3, 8, 8), np.uint8)
    masks[0, 1:3, 1:3] = 1
    masks[0, 5:7, 5:7] = 1  # second region, same image, not touching
    masks[2, 0:4, 0:1] = 1
    labels, n = label_regions(masks)
    assert n == 3 and labels.max() == 3
    assert aupro(masks.astype(float), masks) == pytest.approx(1.0)
    # an inverted map finds every region only after all normal pixels: PRO 0 below FPR 0.3
    assert aupro(1.0 - masks, masks) == pytest.approx(0.0)


def _naive_aupro(maps: np.ndarray, masks: np.ndarray, limit: float) -> float:
    """Loop over thresholds (slow, obviously right) and integrate the same way."""
    labels, n = label_regions(masks)
    normal = masks == 0
    fprs, pros = [0.0], [0.0]
    for t in np.unique(maps)[::-1]:
        pred = maps >= t
        fprs.append((pred & normal).sum() / normal.sum())
        pros.append(np.mean([(pred & (labels == r)).sum() / (labels == r).sum() for r in range(1, n + 1)]))
    fprs, pros = np.array(fprs), np.array(pros)
    keep = fprs <= limit
    x, y = fprs[keep], pros[keep]
    j = np.argmax(~keep)
    y_at = y[-1] + (pros[j] - y[-1]) * (limit - x[-1]) / (fprs[j] - x[-1])
    return float(np.trapezoid(np.r_[y, y_at], np.r_[x, limit])) / limit


def test_matches_a_naive_threshold_loop_on_random_data():
    rng = np.random.default_rng(3)
    masks = np.zeros((4, 16, 16), np.uint8)
    masks[0, 2:6, 3:9] = 1
    masks[1, 10:12, 10:15] = 1
    masks[1, 0:2, 0:2] = 1
    maps = rng.random((4, 16, 16)) + masks * rng.random((4, 16, 16)) * 0.8
    maps = np.round(maps, 2)  # ties on purpose
    assert aupro(maps, masks) == pytest.approx(_naive_aupro(maps, masks, 0.3), abs=1e-9)


def test_refuses_undefined_cases():
    with pytest.raises(ValueError, match="no ground-truth defect region"):
        pro_curve(np.zeros((1, 2, 2)), np.zeros((1, 2, 2)))
    with pytest.raises(ValueError, match="no normal"):
        pro_curve(np.zeros((1, 2, 2)), np.ones((1, 2, 2)))
    with pytest.raises(ValueError, match="differ in shape"):
        pro_curve(np.zeros((1, 2, 2)), np.ones((1, 2, 3)))


def test_pixel_auroc_from_the_shared_sort_equals_scikit_learn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(5)
    masks = (rng.random((3, 12, 12)) > 0.8).astype(np.uint8)
    maps = np.round(rng.random((3, 12, 12)) + 0.3 * masks, 1)  # heavy ties
    assert pro_curve(maps, masks).pixel_auroc() == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), levels=st.integers(2, 12), limit=st.sampled_from([0.05, 0.3, 1.0]))
def test_property_fast_curve_equals_the_threshold_loop(seed, levels, limit):
    """Random masks with random regions and coarse (tie-heavy) maps: same AUPRO as the naive loop,
    and invariant under a strictly increasing transform of the scores."""
    rng = np.random.default_rng(seed)
    masks = (rng.random((2, 6, 7)) > 0.75).astype(np.uint8)
    if not masks.any() or masks.all():
        masks[0, 0, 0], masks[1, 5, 6] = 1, 0
    maps = rng.integers(0, levels, masks.shape).astype(np.float64) + masks * rng.integers(0, 2, masks.shape)
    value = aupro(maps, masks, fpr_limit=limit)
    assert value == pytest.approx(_naive_aupro(maps, masks, limit), abs=1e-9)
    assert aupro(np.exp(maps / 3.0), masks, fpr_limit=limit) == pytest.approx(value, abs=1e-9)
    assert 0.0 <= value <= 1.0 + 1e-9
