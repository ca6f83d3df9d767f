"""Operating point: rate intervals, the upper-tail fit, the trade-off curve and the cost rule."""

from __future__ import annotations

import numpy as np
import pytest

from edge_inspector.operating_point import (
    rate_interval,
    tail_rate,
    tail_threshold,
    threshold_for_cost,
    tradeoff_curve,
)
from edge_inspector.toolchain.calibrate import CalibrationError, calibrate_scores, fpr_threshold


def test_rate_interval_brackets_the_rate_and_narrows_with_n() -> None:
    lo, hi = rate_interval(0, 12)
    assert lo == 0.0 and 0.2 < hi < 0.3  # "0 of 12" is anything up to ~26 %
    lo2, hi2 = rate_interval(0, 400)
    assert hi2 < 0.01
    lo3, hi3 = rate_interval(10, 100)
    assert lo3 < 0.1 < hi3


def test_tail_fit_extrapolates_a_rate_below_one_over_n() -> None:
    rng = np.random.default_rng(0)
    normal = rng.exponential(1.0, 150)  # the exponential tail: P(x > t) = exp(-t)
    target = 0.001  # below 1/150: the sample cannot show this quantile
    t, fit = tail_threshold(normal, target)
    assert fit["tail_fit"] == "genpareto"
    assert t > normal.max()
    # the true 0.1 % quantile of Exp(1) is ln(1000) = 6.9; a 150-point fit lands in the right region
    assert 4.5 < t < 11.0
    fresh = rng.exponential(1.0, 200_000)
    assert (fresh >= t).mean() < 0.005
    assert tail_rate(t, fit, normal.size) == pytest.approx(target, rel=0.05)


def test_fpr_rule_uses_the_tail_only_below_one_over_n() -> None:
    scores = np.linspace(0.0, 1.0, 200)
    t, fit = fpr_threshold(scores, 0.02)  # 4 of 200 may be rejected: empirical
    assert fit["tail_fit"] == "none" and (scores >= t).sum() == 4
    t2, fit2 = fpr_threshold(scores, 0.001)
    assert fit2["tail_fit"] != "none" and t2 > 1.0


def test_calibration_reports_interval_curve_and_escape() -> None:
    rng = np.random.default_rng(1)
    normal, defect = rng.normal(0, 1, 300), rng.normal(3, 1, 60)
    scores = np.r_[normal, defect]
    labels = np.r_[np.zeros(300), np.ones(60)]
    cal = calibrate_scores(scores, labels, method="fpr", target=0.01)
    assert cal.false_reject_rate <= 0.01 and cal.false_reject_ci[0] <= cal.false_reject_rate <= cal.false_reject_ci[1]
    assert cal.escape_rate is not None and 0.0 < cal.escape_rate < 0.5
    assert cal.curve and all(a["threshold"] < b["threshold"] for a, b in zip(cal.curve, cal.curve[1:], strict=False))
    assert "good parts" in cal.summary() and "defective parts pass" in cal.summary()
    strict = calibrate_scores(scores, labels, method="recall", target=0.99)
    assert strict.escape_rate <= 0.01 + 1e-9 and "WARNING" not in strict.summary()
    loose = calibrate_scores(scores, labels, method="fpr", target=0.0005)
    assert loose.escape_rate > 0.10 and "WARNING" in loose.summary()


def test_cost_rule_moves_with_the_escape_cost() -> None:
    rng = np.random.default_rng(2)
    scores = np.r_[rng.normal(0, 1, 200), rng.normal(2, 1, 50)]
    labels = np.r_[np.zeros(200), np.ones(50)]
    cheap, dear = threshold_for_cost(scores, labels, 0.5), threshold_for_cost(scores, labels, 50.0)
    assert dear < cheap  # expensive escapes: reject more
    cal = calibrate_scores(scores, labels, method="cost", target=50.0)
    assert cal.threshold == pytest.approx(dear)
    with pytest.raises(CalibrationError, match="cost"):
        calibrate_scores(scores, labels, method="cost", target=-1.0)
    with pytest.raises(CalibrationError, match="labelled"):
        calibrate_scores(scores[:200], None, method="cost", target=10.0)


def test_tradeoff_curve_is_monotone() -> None:
    scores = np.r_[np.arange(10.0), np.arange(5.0, 15.0)]
    labels = np.r_[np.zeros(10), np.ones(10)]
    rows = tradeoff_curve(scores, labels)
    fr = [r["false_reject_rate"] for r in rows]
    esc = [r["escape_rate"] for r in rows]
    assert fr == sorted(fr, reverse=True) and esc == sorted(esc)
