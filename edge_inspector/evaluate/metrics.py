"""Evaluation metrics at three levels: image, defect type and pixel, plus the composite score.

Every function returns a JSON-ready dict. A metric that cannot be computed on the data given
(single-class test set, no masks, no predicted defect...) is ``None`` and its reason is recorded
under ``"unavailable"``: a report that silently shows 0.5 or 0.0 for an undefined figure misleads
the quality engineer reading it (anomalib's AUROC-0.5 trap), and a crash helps nobody either.

Scores are the *normalised* scores of ``inference.LoadedModel`` (0.5 = calibrated threshold), so
"at the calibrated threshold" means ``score >= 0.5``. Ranking metrics (AUROC, AP, best-F1 search,
pixel AUROC, PRO) take the *raw* scores and maps when given: normalisation clips to [0, 1], and
clipped values tie, so an uncalibrated or narrowly calibrated model would otherwise be scored on
ties (the trap that makes anomalib report AUROC 0.5). Normalisation is monotonic, so raw and
normalised agree wherever nothing is clipped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    precision_recall_curve,
    precision_recall_fscore_support,
    roc_auc_score,
)

from ..card import NORMALISED_THRESHOLD
from ..data.types import GOOD
from .errors import EvaluationError
from .pro import ProCurve, label_regions, normalised_aupro, pro_curve
from .types import EvaluationReport

CALIBRATED_THRESHOLD = NORMALISED_THRESHOLD  # the card's normalised threshold, under its toolchain name
DEFAULT_FPR_LIMIT = 0.3

# Composite score: weights of its components (missing ones are dropped and the rest re-weighted).
DEFAULT_WEIGHTS: dict[str, float] = {
    "image_auroc": 0.30,
    "f1": 0.20,
    "recall": 0.15,
    "pro": 0.25,
    "defect_type_auroc": 0.10,
}


def _ratio(num: float, den: float) -> float | None:
    return None if den == 0 else float(num) / float(den)


def binary_counts(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, Any]:
    """Confusion counts and the rates derived from them for ``score >= threshold`` = defective.

    false_reject_rate = good parts rejected / good parts (what scrap costs);
    escape_rate = defective parts passed / defective parts (what reaches the customer).
    """
    labels = np.asarray(labels, dtype=int)
    pred = (np.asarray(scores, dtype=np.float64) >= threshold).astype(int)
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(labels, pred, labels=[0, 1]).ravel())
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn) if (tp + fn) > 0 else None
    unavailable: dict[str, str] = {}
    if precision is None:
        unavailable["precision"] = "no part was predicted defective at this threshold"
    if recall is None:
        unavailable["recall"] = unavailable["f1"] = unavailable["escape_rate"] = "no defective part in the set"
    if tn + fp == 0:
        unavailable["false_reject_rate"] = "no good part in the set"
    return {
        "threshold": float(threshold),
        "tp": tp, "fp": fp, "tn": tn, "fn": fn,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "accuracy": _ratio(tp + tn, tp + tn + fp + fn),
        "false_reject_rate": _ratio(fp, tn + fp),
        "escape_rate": _ratio(fn, tp + fn),
        "unavailable": unavailable,
    }


def best_f1_threshold(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """The score threshold that maximises F1 (None without both classes)."""
    labels = np.asarray(labels, dtype=int)
    if labels.min(initial=1) == labels.max(initial=0):
        return None
    precision, recall, thresholds = precision_recall_curve(labels, np.asarray(scores, np.float64))
    p, r = precision[:-1], recall[:-1]  # the last PR point has no threshold
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(p + r > 0, 2 * p * r / (p + r), 0.0)
    return float(thresholds[int(np.argmax(f1))])


def image_metrics(labels: Sequence[int], scores: Sequence[float], threshold: float = CALIBRATED_THRESHOLD, *,
                  raw_scores: Sequence[float] | None = None,
                  to_normalised: Callable[[float], float] | None = None) -> dict[str, Any]:
    """Image-level figures: AUROC, average precision, and counts/rates at the calibrated and best-F1 thresholds.

    ``raw_scores`` (optional) are used for the ranking figures and the best-F1 search, whose
    threshold is then reported raw and, through ``to_normalised``, on the normalised scale.
    """
    y = np.asarray(labels, dtype=int)
    norm = np.asarray(scores, dtype=np.float64)
    s = norm if raw_scores is None else np.asarray(raw_scores, dtype=np.float64)
    if y.shape != s.shape or y.shape != norm.shape:
        raise ValueError(f"{y.size} labels but {norm.size} scores / {s.size} raw scores")
    n_def, n_good = int(y.sum()), int((y == 0).sum())
    out: dict[str, Any] = {"n": int(y.size), "n_good": n_good, "n_defective": n_def}
    unavailable: dict[str, str] = {}
    if n_def and n_good:
        out["auroc"] = float(roc_auc_score(y, s))
        out["average_precision"] = float(average_precision_score(y, s))
    else:
        reason = "the set has no defective part" if not n_def else "the set has no good part"
        out["auroc"] = out["average_precision"] = None
        unavailable["auroc"] = unavailable["average_precision"] = reason
    out["at_threshold"] = binary_counts(y, norm, threshold) if y.size else None
    best = best_f1_threshold(y, s) if y.size else None
    if best is None:
        out["best_f1"] = None
        unavailable["best_f1"] = "needs both good and defective parts"
    else:
        out["best_f1"] = binary_counts(y, s, best)
        if raw_scores is not None:
            out["best_f1"]["raw_threshold"] = best
            out["best_f1"]["threshold"] = None if to_normalised is None else float(to_normalised(best))
    out["unavailable"] = unavailable
    return out


def per_type_table(labels: Sequence[int], types: Sequence[str], scores: Sequence[float],
                   threshold: float = CALIBRATED_THRESHOLD, *,
                   raw_scores: Sequence[float] | None = None) -> list[dict[str, Any]]:
    """One row per true defect type (and "good"): count, mean score, detection rate, AUROC vs good.

    Works for every model kind (a detector knows no types, but its recall per type still tells the
    engineer which defects it misses).
    """
    y = np.asarray(labels, dtype=int)
    s = np.asarray(scores, dtype=np.float64)
    r = s if raw_scores is None else np.asarray(raw_scores, dtype=np.float64)
    t = np.asarray(list(types), dtype=object)
    good = y == 0
    rows = []
    for name in sorted(set(t.tolist()), key=lambda n: (n != GOOD, n)):
        sel = t == name
        row: dict[str, Any] = {"type": name, "n": int(sel.sum()), "mean_score": float(s[sel].mean())}
        flagged = float((s[sel] >= threshold).mean())
        if name == GOOD:
            row.update(false_reject_rate=flagged, detection_rate=None, auroc_vs_good=None)
        else:
            both = sel | good
            auroc = float(roc_auc_score(y[both], r[both])) if good.any() else None
            row.update(false_reject_rate=None, detection_rate=flagged, auroc_vs_good=auroc)
        rows.append(row)
    return rows


def predicted_types(scores: Sequence[float], type_names: Sequence[str | None],
                    threshold: float = CALIBRATED_THRESHOLD) -> list[str]:
    """The type the system would report: "good" below the threshold, else the classifier's type.

    This mirrors the daemon: a part passed as OK is reported as good whatever ``type_probs`` says.
    """
    return [GOOD if sc < threshold else (name or "defect") for sc, name in zip(scores, type_names, strict=True)]


def defect_type_metrics(true_types: Sequence[str], pred_types: Sequence[str] | None,
                        probs: np.ndarray | None = None, classes: Sequence[str] | None = None) -> dict[str, Any]:
    """Multi-class figures over the defect types (with "good" as one class).

    ``pred_types`` is None for models without a type head; then every figure is None with the
    reason. The defect-type AUROC is one-vs-rest per class from ``probs`` (columns = ``classes``),
    macro-averaged over the classes that have both positive and negative samples.
    """
    if pred_types is None:
        reason = "the model has no defect-type output (type_probs)"
        return {"macro_f1": None, "weighted_f1": None, "per_class": [], "confusion": None,
                "defect_type_auroc": None, "unavailable": {"macro_f1": reason, "weighted_f1": reason,
                                                            "defect_type_auroc": reason}}
    y_true = [str(t) for t in true_types]
    y_pred = [str(t) for t in pred_types]
    names = sorted(set(y_true) | set(y_pred), key=lambda n: (n != GOOD, n))
    unavailable: dict[str, str] = {}
    present = [n for n in names if n in set(y_true)]  # F1 over classes present in the ground truth
    p, r, f, support = precision_recall_fscore_support(y_true, y_pred, labels=names, zero_division=0)
    per_class = [{"type": n, "support": int(support[i]), "precision": float(p[i]), "recall": float(r[i]),
                  "f1": float(f[i])} for i, n in enumerate(names)]
    f_present = np.array([f[names.index(n)] for n in present])
    w_present = np.array([support[names.index(n)] for n in present], dtype=np.float64)
    out: dict[str, Any] = {
        "classes": names,
        "macro_f1": float(f_present.mean()) if present else None,
        "weighted_f1": float((f_present * w_present).sum() / w_present.sum()) if present else None,
        "per_class": per_class,
        "confusion": confusion_matrix(y_true, y_pred, labels=names).tolist(),
    }
    out["defect_type_auroc"], out["defect_type_auroc_per_class"] = None, {}
    if probs is None or not classes:
        unavailable["defect_type_auroc"] = "no type probabilities"
    else:
        probs = np.asarray(probs, dtype=np.float64)
        aucs = {}
        for k, name in enumerate(classes):
            pos = np.array([t == name for t in y_true])
            if pos.any() and (~pos).any():
                aucs[name] = float(roc_auc_score(pos.astype(int), probs[:, k]))
        out["defect_type_auroc_per_class"] = aucs
        if aucs:
            out["defect_type_auroc"] = float(np.mean(list(aucs.values())))
        else:
            unavailable["defect_type_auroc"] = "no model class has both positive and negative samples"
    if not present:
        unavailable["macro_f1"] = unavailable["weighted_f1"] = "no samples"
    out["unavailable"] = unavailable
    return out


def pixel_metrics(maps: np.ndarray | None, masks: np.ndarray | None, threshold: float = CALIBRATED_THRESHOLD,
                  fpr_limit: float = DEFAULT_FPR_LIMIT, *, raw_maps: np.ndarray | None = None) -> dict[str, Any]:
    """Pixel AUROC, PRO (AUPRO up to ``fpr_limit``, normalised), IoU and Dice at ``threshold``.

    ``maps`` (N, h, w) are normalised anomaly maps and ``masks`` (N, h, w) binary ground truth,
    already at one common resolution (the caller downsamples both, see ``scoring.py``). IoU and Dice
    are computed over all pixels of the set at once (not averaged per image), so good images
    count their false positives and images without defects never divide by zero. Pixel AUROC and
    PRO rank ``raw_maps`` when given (see the module docstring on clipping).
    """
    keys = ("pixel_auroc", "pro", "iou", "dice")
    out: dict[str, Any] = {k: None for k in keys}
    out["fpr_limit"] = fpr_limit
    if maps is None:
        out["unavailable"] = dict.fromkeys(keys, "the model produces no anomaly map")
        return out
    if masks is None or len(masks) == 0:
        out["unavailable"] = dict.fromkeys(keys, "no image with ground truth (good images or masked defects)")
        return out
    maps = np.asarray(maps, dtype=np.float32)
    gt = np.asarray(masks) > 0
    if maps.shape != gt.shape:
        raise ValueError(f"anomaly maps {maps.shape} and masks {gt.shape} differ in shape")
    unavailable: dict[str, str] = {}
    n_pos, n_neg = int(gt.sum()), int((~gt).sum())
    out.update(n_images=int(gt.shape[0]), resolution=[int(gt.shape[1]), int(gt.shape[2])],
               defect_pixel_fraction=n_pos / gt.size)
    out["n_regions"] = label_regions(gt)[1] if n_pos else 0
    if n_pos and n_neg:
        ranked = maps if raw_maps is None else np.asarray(raw_maps, dtype=np.float32)
        curve = pro_curve(ranked, gt)  # one sort gives both the pixel ROC and the PRO curve
        out["pixel_auroc"] = curve.pixel_auroc()
        out["pro"] = normalised_aupro(curve, fpr_limit)
        out["best_dice"] = best_dice(curve, n_pos, n_neg)
        # a decimated copy for plots and JSON readers: PRO reached at each FPR of a fixed grid
        grid = np.linspace(0.0, min(1.0, 2 * fpr_limit), 121)
        idx = np.searchsorted(curve.fpr, grid, side="right") - 1
        out["pro_curve"] = {"fpr": grid.round(5).tolist(), "pro": curve.pro[idx].round(5).tolist()}
    else:
        reason = "the masks contain no defect pixel" if not n_pos else "the masks contain no normal pixel"
        unavailable["pixel_auroc"] = unavailable["pro"] = reason
    pred = maps >= threshold
    inter, union = int((pred & gt).sum()), int((pred | gt).sum())
    denom = int(pred.sum()) + n_pos
    if union == 0:
        unavailable["iou"] = unavailable["dice"] = "no defect pixel in the masks and none predicted"
    else:
        out["iou"] = inter / union
        out["dice"] = 2 * inter / denom
    out["unavailable"] = unavailable
    return out


def best_dice(curve: ProCurve, n_pos: int, n_neg: int) -> dict[str, float]:
    """Dice and IoU at the map threshold that maximises Dice (an oracle: what a pixel calibration could reach).

    Shown next to IoU/Dice at the calibrated threshold, it tells "the map localises well but the
    pixel threshold is off" apart from "the map does not localise".
    """
    tp = curve.tpr * n_pos
    fp = curve.fpr * n_neg
    fn = n_pos - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        dice = np.where(tp > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
    k = int(np.argmax(dice))
    return {"dice": float(dice[k]), "iou": float(tp[k] / (tp[k] + fp[k] + fn[k])) if tp[k] > 0 else 0.0,
            "raw_threshold": float(curve.thresholds[k])}


def composite_score(figures: Mapping[str, float | None],
                    weights: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Weighted mean of the available components; missing ones are dropped and the rest re-weighted.

    ``figures`` maps component names (those of ``DEFAULT_WEIGHTS``) to values in [0, 1] or None.
    Returns the score, the weights actually used and the names of the missing components, so a
    report can say "PRO missing: re-weighted" instead of silently comparing unlike numbers.
    """
    weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
    if any(w < 0 for w in weights.values()):
        raise EvaluationError(f"composite weights must be >= 0, got {weights}")
    available = {k: w for k, w in weights.items() if w > 0 and figures.get(k) is not None}
    missing = sorted(k for k, w in weights.items() if w > 0 and figures.get(k) is None)
    total = sum(available.values())
    if total == 0:
        return {"score": None, "weights_used": {}, "missing": missing,
                "reason": "none of the weighted components is available"}
    used = {k: w / total for k, w in available.items()}
    score = sum(used[k] * float(figures[k]) for k in used)
    return {"score": float(score), "weights_used": used, "missing": missing}


def composite_inputs(report: EvaluationReport) -> dict[str, float | None]:
    """Pull the composite's components out of an evaluation report (see ``runner.evaluate_model``)."""
    at = report.image.at
    return {
        "image_auroc": report.image.auroc,
        "f1": at.f1,
        "recall": at.recall,
        "pro": report.pixel.pro,
        "defect_type_auroc": report.defect_type.defect_type_auroc,
    }


def parse_weights(text: str | None) -> dict[str, float]:
    """``"image_auroc=0.5,pro=0.5"`` -> weights (unnamed components get 0); None -> defaults."""
    if not text:
        return dict(DEFAULT_WEIGHTS)
    weights = dict.fromkeys(DEFAULT_WEIGHTS, 0.0)
    for part in text.split(","):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in DEFAULT_WEIGHTS:
            raise EvaluationError(f"--weights: expected NAME=VALUE with NAME in {', '.join(DEFAULT_WEIGHTS)}, "
                                  f"got {part!r}")
        try:
            weights[name] = float(value)
        except ValueError as exc:
            raise EvaluationError(f"--weights: {name} must be a number, got {value!r}") from exc
        if weights[name] < 0:
            raise EvaluationError(f"--weights: {name} must be >= 0, got {value!r}")
    return weights
