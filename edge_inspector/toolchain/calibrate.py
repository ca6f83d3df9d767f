"""Threshold calibration: choose the raw score that means "defect" and store it in the model card.

Scores come from ``inference.LoadedModel`` (the ONNX file, the shared preprocessing), so the
threshold is set on exactly the numbers the daemon will compute. Four rules:

* ``fpr``: normal images only; the threshold lets at most ``target`` of them be rejected
  (false-reject rate, default 1 %): the threshold is the score that ``floor(target * N)`` of the N
  normal scores reach or exceed. When ``target`` is below 1/N that quantile does not exist in the
  data, so a generalised Pareto distribution fitted to the upper tail of the normal scores
  extrapolates it (``operating_point.tail_threshold``). The usual case on a line: defects are rare
  and unlabelled.
* ``f1``: labelled images; the threshold with the best F1.
* ``recall``: labelled images; the highest threshold that still catches ``target`` of the
  defects (an escape budget), which keeps false rejects as low as that allows.
* ``cost``: labelled images; the threshold minimising false rejects + ``target`` x escapes (one
  escape costs ``target`` good parts rejected; default 10).

The normal scores should be many and unseen: ``train_model`` pools the training images scored
out-of-fold (a memory bank built without them) with the held-out validation images, so a few
hundred normal scores set the threshold, not a dozen. Every threshold sits between an accepted and
a flagged score, so a tiny numeric difference cannot flip a calibration image. The card's
normalisation maps the threshold to 0.5, and its ``operating_point`` records the false-reject (and
escape) rate with a 95 % interval and, with labelled defects, the trade-off curve.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..card import OperatingPoint, ScoreNormalization, card_path_for, load_card
from ..data.types import Sample
from ..errors import EdgeInspectorError
from ..operating_point import rate_interval, tail_rate, tail_threshold, threshold_for_cost, tradeoff_curve

if TYPE_CHECKING:
    from ..config import FusionConfig
    from ..evaluate.fusion import Member

METHODS = ("fpr", "f1", "recall", "cost")
DEFAULT_TARGETS = {"fpr": 0.01, "recall": 0.95, "f1": None, "cost": 10.0}
ESCAPE_WARNING = 0.10  # escape rates above this get a warning wherever a figure is printed
MAX_PIXELS = 2_000_000  # pixels used for the pixel threshold (random subsample beyond that)


class CalibrationError(EdgeInspectorError, ValueError):
    """Calibration is impossible with the given images (none, or no defects for f1/recall)."""


@dataclass
class Calibration:
    """A calibration decision and the figures it achieves on the calibration images."""

    method: str
    target: float | None
    threshold: float
    min: float
    max: float
    n_normal: int
    n_defect: int
    false_reject_rate: float
    recall: float | None = None
    precision: float | None = None
    f1: float | None = None
    pixel_threshold: float | None = None
    pixel_min: float | None = None
    pixel_max: float | None = None
    pixel_f1: float | None = None
    false_reject_ci: tuple[float, float] = (0.0, 1.0)
    escape_rate: float | None = None
    escape_ci: tuple[float, float] | None = None
    expected_false_reject_rate: float | None = None
    tail: dict = field(default_factory=dict)
    curve: list[dict] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def method_label(self) -> str:
        return self.method if self.target is None else f"{self.method}={self.target:g}"

    def operating_point(self, source: str = "") -> OperatingPoint:
        return OperatingPoint(
            method=self.method, target=self.target, source=source, n_normal=self.n_normal,
            n_defect=self.n_defect, false_reject_rate=self.false_reject_rate,
            false_reject_ci=self.false_reject_ci, expected_false_reject_rate=self.expected_false_reject_rate,
            escape_rate=self.escape_rate, escape_ci=self.escape_ci, tail=self.tail, curve=self.curve)

    def summary(self) -> str:
        """The operating point in plain words (printed first by train, evaluate and auto)."""
        return describe_rates(self.false_reject_rate, self.false_reject_ci, self.n_normal,
                              self.escape_rate, self.escape_ci, self.n_defect, self.expected_false_reject_rate)

    def normalization(self) -> ScoreNormalization:
        return ScoreNormalization(threshold=self.threshold, min=self.min, max=self.max,
                                  pixel_threshold=self.pixel_threshold, pixel_min=self.pixel_min,
                                  pixel_max=self.pixel_max, method=self.method_label())


# -- pure threshold rules (numbers in, numbers out) ----------------------------------------------

def _step(value: float) -> float:
    """A visible step (0.1 % of the score), not one ulp: the daemon normalises in float32."""
    return max(abs(value) * 1e-3, 1e-6)


def _cut(accept: float | None, reject: float | None) -> float:
    """A threshold that accepts score ``accept`` and flags ``reject`` (score >= t flags): the
    midpoint, or a step beyond the one that exists."""
    if accept is not None and reject is not None and accept < reject:
        return float((accept + reject) / 2.0)
    if reject is None:
        return float(accept + _step(accept))
    return float(reject - _step(reject))


def threshold_for_fpr(normal_scores: np.ndarray, target: float = 0.01) -> float:
    """Threshold rejecting at most ``floor(target * n)`` of the normal scores (score >= t rejects);
    below 1/n, the upper-tail fit's answer (see ``fpr_threshold``)."""
    return fpr_threshold(normal_scores, target)[0]


def fpr_threshold(normal_scores: np.ndarray, target: float = 0.01) -> tuple[float, dict]:
    """(threshold, tail-fit record) for a target false-reject rate on normal scores."""
    s = np.sort(np.asarray(normal_scores, np.float64).ravel())[::-1]
    if s.size == 0:
        raise CalibrationError("fpr calibration needs at least one normal image")
    if not 0.0 <= target < 1.0:
        raise CalibrationError(f"target false-reject rate must be in [0, 1), got {target}")
    k = int(math.floor(target * s.size + 1e-9))  # how many normals may be rejected
    if k == 0 and target > 0:
        # the target is below 1/N: the empirical rule would put the cut just above the maximum
        # whatever the target; extrapolate from the fitted upper tail instead
        return tail_threshold(s, target)
    # s[k] must be accepted (and every score tied with it); the cut goes just below the next
    # higher distinct score, so at most k normals are rejected.
    above = s[s > s[k]]
    return _cut(float(s[k]), float(above.min()) if above.size else None), {"tail_fit": "none"}


def _sweep(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct scores (descending) with true and false positives when flagging score >= each."""
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    tp, fp = np.cumsum(y), np.cumsum(1 - y)
    last = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]  # last index of each distinct score
    return s[last], tp[last], fp[last]


def _check_labelled(scores: np.ndarray, labels: np.ndarray, method: str) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, np.float64).ravel()
    labels = (np.asarray(labels).ravel() > 0).astype(np.int64)
    if scores.shape != labels.shape:
        raise CalibrationError(f"{scores.size} scores but {labels.size} labels")
    if labels.sum() == 0:
        raise CalibrationError(f"{method} calibration needs labelled defective images; none given "
                               "(use --method fpr with normal images only)")
    return scores, labels


def _next_lower(distinct_desc: np.ndarray, i: int) -> float | None:
    return float(distinct_desc[i + 1]) if i + 1 < distinct_desc.size else None


def threshold_best_f1(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(threshold, F1) maximising image F1; ties go to the higher threshold (fewer rejects)."""
    scores, labels = _check_labelled(scores, labels, "f1")
    s, tp, fp = _sweep(scores, labels)
    positives = labels.sum()
    f1 = 2 * tp / (tp + fp + positives)
    i = int(np.argmax(f1))  # first maximum = highest threshold
    return _cut(_next_lower(s, i), float(s[i])), float(f1[i])


def threshold_min_recall(scores: np.ndarray, labels: np.ndarray, min_recall: float = 0.95) -> float:
    """The highest threshold whose recall on the labelled defects is at least ``min_recall``."""
    scores, labels = _check_labelled(scores, labels, "recall")
    if not 0.0 < min_recall <= 1.0:
        raise CalibrationError(f"minimum recall must be in (0, 1], got {min_recall}")
    s, tp, _ = _sweep(scores, labels)
    i = int(np.nonzero(tp >= min_recall * labels.sum() - 1e-9)[0][0])
    return _cut(_next_lower(s, i), float(s[i]))


def span_around(threshold: float, lo: float, hi: float) -> tuple[float, float]:
    """(min, max) centred on the threshold and wide enough that lo..hi map inside [0, 1]."""
    half = max(threshold - lo, hi - threshold, abs(threshold) * 1e-3, 1e-6)
    return threshold - half, threshold + half


def calibrate_scores(scores: np.ndarray, labels: np.ndarray | None = None, method: str = "auto",
                     target: float | None = None, maps: np.ndarray | None = None,
                     masks: np.ndarray | None = None, map_max: np.ndarray | None = None) -> Calibration:
    """Choose image (and, with masks, pixel) thresholds from raw scores.

    ``method="auto"`` is f1 when defective images are labelled, else fpr. ``maps``/``masks``
    ((N, h, w) raw anomaly maps and {0,1} masks at the same size) add a pixel threshold (best
    pixel F1) when at least one mask has defect pixels. Without such masks, ``map_max`` (each
    image's raw map maximum) sets the pixel threshold so that normal images' heatmaps stay below
    0.5 at the same false-reject budget: a model whose score is not its map's peak (top-k mean)
    would otherwise paint hot regions on parts it passes.
    """
    scores = np.asarray(scores, np.float64).ravel()
    labels = np.zeros(scores.size, np.int64) if labels is None else (np.asarray(labels).ravel() > 0).astype(np.int64)
    if scores.size == 0:
        raise CalibrationError("no images to calibrate on")
    if not np.all(np.isfinite(scores)):
        raise CalibrationError(f"{int((~np.isfinite(scores)).sum())} scores are NaN/inf: the model is broken")
    n_defect = int(labels.sum())
    if method == "auto":
        method = "f1" if n_defect else "fpr"
    if method not in METHODS:
        raise CalibrationError(f"unknown calibration method {method!r}; expected one of {METHODS} or 'auto'")
    if target is None:
        target = DEFAULT_TARGETS[method]
    normal = scores[labels == 0]
    f1_value = None
    tail: dict = {}
    if method == "fpr":
        if normal.size == 0:
            raise CalibrationError("fpr calibration needs normal images; all given images are defective")
        threshold, tail = fpr_threshold(normal, target)
    elif method == "f1":
        threshold, f1_value = threshold_best_f1(scores, labels)
    elif method == "cost":
        _check_labelled(scores, labels, "cost")
        try:
            threshold = threshold_for_cost(scores, labels, float(target))
        except ValueError as exc:
            raise CalibrationError(f"cost calibration: {exc} (--target is the cost of one escape in "
                                   "false rejects, e.g. 10)") from exc
    else:
        threshold = threshold_min_recall(scores, labels, target)
    lo, hi = span_around(threshold, float(scores.min()), float(scores.max()))
    flagged = scores >= threshold
    tp = int((flagged & (labels == 1)).sum())
    cal = Calibration(
        method=method, target=target, threshold=float(threshold), min=lo, max=hi,
        n_normal=int(normal.size), n_defect=n_defect,
        false_reject_rate=float(flagged[labels == 0].mean()) if normal.size else 0.0,
        false_reject_ci=rate_interval(int(flagged[labels == 0].sum()), int(normal.size)), tail=tail,
        expected_false_reject_rate=tail_rate(threshold, tail, int(normal.size)),
    )
    if n_defect:
        cal.escape_rate = 1.0 - tp / n_defect
        cal.escape_ci = rate_interval(n_defect - tp, n_defect)
        cal.curve = tradeoff_curve(scores, labels)
        cal.recall = tp / n_defect
        cal.precision = tp / max(int(flagged.sum()), 1)
        cal.f1 = f1_value if f1_value is not None else 2 * tp / (int(flagged.sum()) + n_defect)
    if maps is not None and masks is not None:
        _pixel_threshold(cal, np.asarray(maps, np.float32), np.asarray(masks))
    if cal.pixel_threshold is None and map_max is not None and normal.size:
        peaks = np.asarray(map_max, np.float64).ravel()
        if peaks.shape != scores.shape:
            raise CalibrationError(f"{peaks.size} map maxima but {scores.size} scores")
        budget = target if method == "fpr" else DEFAULT_TARGETS["fpr"]
        known = np.isfinite(peaks)  # NaN: an image whose map was not kept (scored out-of-fold)
        normal_peaks = peaks[(labels == 0) & known]
        if normal_peaks.size:
            cal.pixel_threshold = threshold_for_fpr(normal_peaks, budget)
            cal.pixel_min, cal.pixel_max = span_around(cal.pixel_threshold, float(peaks[known].min()),
                                                       float(peaks[known].max()))
    return cal


def _pixel_threshold(cal: Calibration, maps: np.ndarray, masks: np.ndarray) -> None:
    if maps.shape != masks.shape:
        raise CalibrationError(f"anomaly maps {maps.shape} and masks {masks.shape} differ in shape")
    values, truth = maps.ravel(), (masks.ravel() > 0).astype(np.int64)
    if truth.sum() == 0:
        return  # no defect pixels: the image threshold doubles as the pixel threshold
    if values.size > MAX_PIXELS:
        idx = np.random.default_rng(0).choice(values.size, MAX_PIXELS, replace=False)
        values, truth = values[idx], truth[idx]
    thr, f1 = threshold_best_f1(values, truth)
    cal.pixel_threshold = float(thr)
    cal.pixel_f1 = float(f1)
    lo, hi = np.quantile(values, [0.001, 0.999])
    cal.pixel_min, cal.pixel_max = span_around(float(thr), float(lo), float(hi))


# -- the model-level operation ---------------------------------------------------------------------

def describe_rates(false_reject: float, false_reject_ci: tuple[float, float] | None, n_normal: int,
                   escape: float | None, escape_ci: tuple[float, float] | None, n_defect: int,
                   expected_false_reject: float | None = None) -> str:
    """One plain sentence: how many good parts are rejected and how many defects pass, and how sure."""

    def pct(v: float) -> str:
        return f"{100 * v:.1f} %"

    def ci(c: tuple[float, float] | None) -> str:
        return f" (95 % interval {pct(c[0])} - {pct(c[1])})" if c else ""

    words = [f"rejects {pct(false_reject)} of good parts{ci(false_reject_ci)} on {n_normal} good images"]
    if expected_false_reject is not None:
        words.append(f"tail fit expects {pct(expected_false_reject)}")
    if escape is not None:
        words.append(f"lets {pct(escape)} of defective parts pass{ci(escape_ci)} on {n_defect} defective images")
    text = "; ".join(words) + "."
    if escape is not None and escape > ESCAPE_WARNING:
        text += (f" WARNING: more than {pct(ESCAPE_WARNING)} of defects pass at this threshold; lower it "
                 "(edge-inspector calibrate --method recall --target 0.95, or --method cost) or improve the model.")
    return text


def describe_operating_point(op: OperatingPoint | None) -> str:
    """The card's operating point in plain words, or what to do when it has none."""
    if op is None:
        return "no operating point recorded (run `edge-inspector calibrate`)"
    return (f"At its threshold ({op.method}{'' if op.target is None else f'={op.target:g}'}, {op.source}) the model "
            + describe_rates(op.false_reject_rate, op.false_reject_ci, op.n_normal, op.escape_rate, op.escape_ci,
                             op.n_defect, op.expected_false_reject_rate))


def calibrate_model(model_path: Path | str, samples: list[Sample], *, method: str = "auto",
                    target: float | None = None, calibration_dir: Path | str = Path("calibration"),
                    source: str = "", progress: bool = False, write_card: bool = True,
                    threads: int = 2, extra_normal_scores: np.ndarray | None = None,
                    extra_source: str = "", on_training_images: bool = False) -> Calibration:
    """Score ``samples`` with the ONNX model, choose thresholds, update the card, record the decision.

    ``on_training_images``: the normal ``samples`` are images the model was fitted on (recorded in the
    card's operating point so every report warns that its false-reject rate is optimistic).
    ``extra_normal_scores`` are raw scores of further normal images that the model did not see
    (``train_model`` passes the training images scored out-of-fold), pooled with ``samples``'
    normal scores for the image threshold. Writes the new ``card.normalization`` (threshold at
    0.5), ``card.operating_point`` and ``<calibration_dir>/<name>.json`` with the method, target,
    figures achieved and the scores' summary.
    """
    from ..evaluate.scoring import score_samples
    from ..inference import LoadedModel

    if not samples and extra_normal_scores is None:
        raise CalibrationError(f"{model_path}: no calibration images given")
    card_path = card_path_for(Path(model_path))
    model = LoadedModel.load(card_path, threads=threads)
    scores = np.zeros(0)
    labels = np.zeros(0, np.int64)
    maps = masks = peaks = None
    if samples:
        preds = score_samples(model, samples, progress=progress)
        scores, labels = preds.raw_scores, preds.labels
        if preds.raw_maps is not None:
            peaks = preds.raw_maps.reshape(len(samples), -1).max(axis=1)
            if any(s.mask_path is not None for s in samples):
                known = preds.has_mask
                maps, masks = preds.raw_maps[known], preds.masks[known]
    if extra_normal_scores is not None and len(extra_normal_scores):
        extra = np.asarray(extra_normal_scores, np.float64).ravel()
        scores = np.r_[scores, extra]
        labels = np.r_[labels, np.zeros(extra.size, np.int64)]
        if peaks is not None:  # the out-of-fold images' map peaks are not kept: the val peaks set the pixel rule
            peaks = np.r_[peaks, np.full(extra.size, np.nan)]
        source = f"{source} + {extra.size} {extra_source or 'extra normal'}".strip(" +")
    cal = calibrate_scores(scores, labels, method=method, target=target, maps=maps, masks=masks, map_max=peaks)
    if write_card:
        card = load_card(card_path)
        card.normalization = cal.normalization()
        card.operating_point = cal.operating_point(source).model_copy(
            update={"on_training_images": on_training_images})
        card.metrics.update({"calibration_false_reject_rate": cal.false_reject_rate,
                             "calibration_recall": cal.recall})
        card.save(card_path)
    out_dir = Path(calibration_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "model": model.name, "card": str(card_path), "model_sha256": model.card.model_sha256,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"), "source": source,
        "on_training_images": on_training_images, "n_images": int(scores.size), **asdict(cal),
        "scores": {"normal": _summary(scores[labels == 0]), "defect": _summary(scores[labels == 1])},
    }
    (out_dir / f"{model.name}.json").write_text(json.dumps(record, indent=2) + "\n")
    return cal


def _summary(values: np.ndarray) -> dict:
    if values.size == 0:
        return {"n": 0}
    q = np.quantile(values, [0.0, 0.5, 0.95, 1.0])
    return {"n": int(values.size), "min": float(q[0]), "median": float(q[1]), "p95": float(q[2]), "max": float(q[3])}


# -- fused pairs -------------------------------------------------------------------------------------
MEAN_RULES = ("soft_vote", "weighted")  # the fusion rules whose threshold is a setting (FusionConfig.threshold)


def calibrate_fusion(members: Sequence[Member], rule: str = "soft_vote", *, method: str = "fpr",
                     target: float | None = None) -> tuple[FusionConfig, Calibration]:
    """The ``fusion`` section whose threshold gives ``method``/``target`` on images the members never trained
    on (their ``Predictions`` on, e.g., the val split), and the figures it achieves there.

    Why: under rule 'any' a pair rejects whenever either member does, so two members calibrated for 1 %
    false rejects each reject up to 2 % together; a mean of the normalised scores ranks better (a
    defect one member half-sees adds to what the other sees) but its 0.5 default is nobody's
    calibrated point. The fused score is the daemon's (``runtime.decision.fuse`` over the members'
    clipped normalised scores), so the threshold means on the line what it meant here.
    """
    from ..config import FusionConfig
    from ..evaluate.fusion import fuse_predictions

    if rule not in MEAN_RULES:
        raise CalibrationError(f"fusion rule {rule!r} has no threshold of its own to calibrate; expected one of "
                               f"{list(MEAN_RULES)} ('any' and 'all' use each member's calibrated 0.5)")
    pred = fuse_predictions(members, FusionConfig(rule=rule))  # default threshold 0.5: scores are the means
    cal = calibrate_scores(pred.scores, pred.labels, method=method, target=target)
    if not 0.0 < cal.threshold < 1.0:
        raise CalibrationError(
            f"fusion {rule}: the calibrated threshold {cal.threshold:.4g} lies outside (0, 1): the members' "
            f"normalised scores cannot give {cal.method_label()} on these {cal.n_normal} normal images "
            "(recalibrate the members, or use more images)")
    return FusionConfig(rule=rule, threshold=round(float(cal.threshold), 6)), cal
