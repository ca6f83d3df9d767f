"""How sure is a threshold? Rates with confidence intervals, an upper-tail fit, and the trade-off curve.

A threshold set from a dozen normal images cannot mean "0.5 % false rejects": the 0.5 % quantile of
12 numbers does not exist. These pure functions (numbers in, numbers out; no model, no files) give
calibration three things it needs to say honestly what a threshold will do on the line:

* ``rate_interval``: a Clopper-Pearson (exact binomial) interval for a rate measured as k of n, so
  "0 of 12 rejected" is reported as "0 %, somewhere between 0 and 26 %";
* ``tail_threshold``: when the target rate is below 1/N the empirical quantile is the sample
  maximum, whatever the target; a generalised Pareto distribution fitted to the upper tail of the
  normal scores (peaks over threshold, the standard extreme-value method) extrapolates instead;
* ``tradeoff_curve`` / ``threshold_for_cost``: with labelled defects, false-reject rate against
  escape rate at every candidate threshold, and the threshold that minimises a stated cost.
"""

from __future__ import annotations

import math

import numpy as np

CONFIDENCE = 0.95
TAIL_FRACTION = 0.2  # the top 20 % of normal scores feed the tail fit
MIN_TAIL_POINTS = 25  # fewer exceedances than this: the one-parameter exponential tail (shape 0)
MIN_EXP_POINTS = 4  # fewer still: no fit, just above the sample maximum
MAX_SHAPE = 0.5  # heavier tails than this are not believed from a few dozen points


def rate_interval(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Clopper-Pearson interval for a rate observed as ``k`` events in ``n`` trials."""
    from scipy.stats import beta

    if n <= 0:
        return 0.0, 1.0
    alpha = 1.0 - confidence
    lo = 0.0 if k <= 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    hi = 1.0 if k >= n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return lo, hi


def tail_threshold(normal_scores: np.ndarray, target: float) -> tuple[float, dict]:
    """Score above which a fraction ``target`` of normal parts is expected, from a fitted upper tail.

    Peaks over threshold: ``u`` is the (1 - TAIL_FRACTION) quantile of the scores, the exceedances
    over ``u`` are fitted with a generalised Pareto distribution (shape clipped to
    [-MAX_SHAPE, MAX_SHAPE]; the exponential tail when fewer than MIN_TAIL_POINTS exceed ``u``), and
    the threshold solves P(score > t) = target. Returns the threshold
    and the fit's parameters (for the calibration record).
    """
    from scipy.stats import genpareto

    s = np.sort(np.asarray(normal_scores, np.float64).ravel())
    n = s.size
    u = float(np.quantile(s, 1.0 - TAIL_FRACTION))
    excess = s[s > u] - u
    p_u = excess.size / n
    if excess.size < MIN_EXP_POINTS or float(excess.max()) <= 0:
        step = abs(float(s[-1])) * 1e-3 + 1e-6
        return float(s[-1] + step), {"tail_fit": "none", "n_tail": int(excess.size)}
    if excess.size < MIN_TAIL_POINTS:
        # a two-parameter fit on a handful of points swings wildly; the exponential tail (the GPD
        # with shape 0, scale = mean excess) is the standard small-sample choice
        shape, scale = 0.0, float(excess.mean())
    else:
        shape, _, scale = genpareto.fit(excess, floc=0.0)
        shape = float(np.clip(shape, -MAX_SHAPE, MAX_SHAPE))
        if not math.isfinite(scale) or scale <= 0:
            scale = float(excess.mean())
    q = 1.0 - min(target / p_u, 1.0)
    t = u + float(genpareto.ppf(q, shape, loc=0.0, scale=scale))
    if not math.isfinite(t):
        t = float(s[-1] + (s[-1] - u))
    # never below the empirical rule's answer: the fit only extrapolates beyond the data
    kind = "genpareto" if excess.size >= MIN_TAIL_POINTS else "exponential"
    return max(t, float(s[-1]) + abs(float(s[-1])) * 1e-6), {
        "tail_fit": kind, "tail_u": u, "tail_shape": shape, "tail_scale": float(scale), "n_tail": int(excess.size),
    }


def tail_rate(threshold: float, fit: dict, n_normal: int) -> float | None:
    """Expected false-reject rate at ``threshold`` under a fit from ``tail_threshold`` (None without one)."""
    from scipy.stats import genpareto

    if fit.get("tail_fit") not in ("genpareto", "exponential"):
        return None
    u = fit["tail_u"]
    p_u = fit["n_tail"] / max(n_normal, 1)
    if threshold <= u:
        return None
    return float(p_u * genpareto.sf(threshold - u, fit["tail_shape"], loc=0.0, scale=fit["tail_scale"]))


def tradeoff_curve(scores: np.ndarray, labels: np.ndarray, points: int = 41) -> list[dict]:
    """False-reject and escape rates at ``points`` thresholds spanning the scores (score >= t rejects).

    Thresholds are quantiles of all scores, so the curve is dense where the scores are; each row is
    ``{"threshold", "false_reject_rate", "escape_rate"}``, thresholds ascending.
    """
    scores = np.asarray(scores, np.float64).ravel()
    labels = (np.asarray(labels).ravel() > 0)
    normal, defect = scores[~labels], scores[labels]
    if normal.size == 0 or defect.size == 0:
        return []
    grid = np.unique(np.quantile(scores, np.linspace(0.0, 1.0, points)))
    rows = []
    for t in grid:
        rows.append({"threshold": float(t), "false_reject_rate": float((normal >= t).mean()),
                     "escape_rate": float((defect < t).mean())})
    return rows


def threshold_for_cost(scores: np.ndarray, labels: np.ndarray, escape_cost: float) -> float:
    """Threshold minimising false rejects + ``escape_cost`` x escapes on the labelled images.

    ``escape_cost`` is what one defective part let through costs in units of one good part
    rejected (scrap or a manual re-check); the calibration images' own defect share stands in for
    the line's. Ties go to the higher threshold (fewer rejects).
    """
    scores = np.asarray(scores, np.float64).ravel()
    labels = (np.asarray(labels).ravel() > 0)
    if escape_cost <= 0:
        raise ValueError(f"escape cost must be positive, got {escape_cost}")
    cands = np.unique(scores)
    # cut midway between neighbouring distinct scores, plus one above the top
    cuts = np.r_[cands[0] - 1e-6, (cands[:-1] + cands[1:]) / 2.0, cands[-1] + max(abs(cands[-1]) * 1e-3, 1e-6)]
    best_t, best_cost = float(cuts[-1]), math.inf
    for t in cuts[::-1]:
        cost = float(((scores >= t) & ~labels).sum() + escape_cost * ((scores < t) & labels).sum())
        if cost < best_cost - 1e-12:
            best_t, best_cost = float(t), cost
    return best_t
