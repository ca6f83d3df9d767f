"""Evaluate one model on one list of samples: score, compute every metric, assemble the report.

The report (``types.EvaluationReport``) is the single source for report.json, report.html,
``compare`` and ``auto``: they read its attributes and never recompute a figure differently.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..card import ModelCard
from ..data.types import GOOD, Sample
from ..inference import LoadedModel
from .energy import training_energy_from_card
from .metrics import (
    CALIBRATED_THRESHOLD,
    DEFAULT_FPR_LIMIT,
    composite_inputs,
    composite_score,
    defect_type_metrics,
    image_metrics,
    per_type_table,
    pixel_metrics,
    predicted_types,
)
from .pro import normalised_aupro, pro_curve
from .scoring import DEFAULT_PIXEL_SIZE, Predictions, score_samples
from .types import Composite, EvaluationReport

REPORT_SCHEMA = 1


def count_parameters(model_path: Path) -> int | None:
    """Number of weights in an ONNX file: the sum of its initializers' sizes (None if unreadable)."""
    try:
        import onnx  # noqa: PLC0415 - only the toolchain needs the onnx package

        graph = onnx.load(str(model_path), load_external_data=False).graph
    except Exception:  # noqa: BLE001 - a non-ONNX model (TensorRT engine) simply has no count here
        return None
    return int(sum(int(np.prod(init.dims)) if init.dims else 1 for init in graph.initializer))


def card_summary(card: ModelCard, card_path: Path) -> dict[str, Any]:
    """What a reader of a report needs to know about the model, taken from its card and file."""
    model_file = card.model_path(card_path)
    params = card.parameters if card.parameters is not None else count_parameters(model_file)
    return {
        "name": card.name,
        "version": card.version,
        "kind": card.kind,
        "card": str(card_path),
        "model_file": str(model_file),
        "model_sha256": card.model_sha256,
        "size_bytes": model_file.stat().st_size if model_file.is_file() else None,
        "parameters": params,
        "parameters_source": "card" if card.parameters is not None else "onnx initializers",
        "input": f"{card.input.width}x{card.input.height} RGB",
        "outputs": dict(card.outputs),
        "classes": list(card.classes),
        "threshold_method": card.normalization.method,
        "raw_threshold": card.normalization.threshold,
        "training": card.training.model_dump(),
        "created_at": card.created_at,
    }


def _gallery(pred: Predictions, n: int) -> dict[str, list[dict[str, Any]]]:
    """The worst false positives (good parts, highest scores) and false negatives (defects, lowest).

    When a side has fewer errors than ``n`` the closest correct calls fill it, flagged ``error=False``,
    so the gallery still shows where the margin is thin.
    """
    labels, scores, raw = pred.labels, pred.scores, pred.raw_scores

    def pick(idx: np.ndarray, descending: bool) -> list[dict[str, Any]]:
        # order by raw score: normalised scores tie where they clip at 0 or 1
        order = idx[np.argsort(-raw[idx] if descending else raw[idx], kind="stable")][:n]
        rows = []
        for i in order:
            s = pred.samples[int(i)]
            wrong = (scores[i] >= CALIBRATED_THRESHOLD) != bool(s.label)
            rows.append({"index": int(i), "path": str(s.path), "defect_type": s.defect_type,
                         "score": float(scores[i]), "error": bool(wrong),
                         "predicted_type": pred.type_names[i] if pred.type_names else None})
        return rows

    return {"false_positives": pick(np.nonzero(labels == 0)[0], True),
            "false_negatives": pick(np.nonzero(labels == 1)[0], False)}


def build_report(pred: Predictions, model: LoadedModel, *, dataset: Mapping[str, Any],
                 fpr_limit: float = DEFAULT_FPR_LIMIT, weights: Mapping[str, float] | None = None,
                 gallery_size: int = 6) -> EvaluationReport:
    """All figures for ``pred`` as one typed report (see module docstring)."""
    labels, scores = pred.labels, pred.scores
    has_types = bool(model.card.classes) and any(t is not None for t in pred.type_names)
    pixel_in, raw_maps = (None, None), None
    if pred.maps is not None:
        known = pred.has_mask
        pixel_in = (pred.maps[known], pred.masks[known]) if known.any() else (pred.maps, None)
        raw_maps = pred.raw_maps[known] if known.any() and pred.raw_maps is not None else None
    report: dict[str, Any] = {
        "schema": REPORT_SCHEMA,
        "kind": "evaluation",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": card_summary(model.card, model.card_path),
        "backend": model.backend.describe(),
        "dataset": {
            **dict(dataset),
            "n": len(pred.samples),
            "n_good": int((labels == 0).sum()),
            "n_defective": int(labels.sum()),
            "defect_types": sorted({s.defect_type for s in pred.samples if s.label == 1}),
        },
        "image": image_metrics(labels, scores, raw_scores=pred.raw_scores,
                               to_normalised=model.card.normalization.unclipped),
        "per_type": per_type_table(labels, pred.true_types, scores, raw_scores=pred.raw_scores),
        "defect_type": defect_type_metrics(
            pred.true_types,
            predicted_types(scores, pred.type_names) if has_types else None,
            pred.type_probs if has_types else None,
            model.card.classes if has_types else None,
        ),
        "pixel": pixel_metrics(*pixel_in, fpr_limit=fpr_limit, raw_maps=raw_maps),
        "timing": {
            "wall_seconds": pred.wall_seconds,
            "ms_per_image": 1000.0 * pred.wall_seconds / len(pred.samples),
            "includes": "decode + preprocess + inference, batched",
        },
        "energy": {"inference_per_1000_parts": pred.energy, "training": training_energy_from_card(model.card)},
        "gallery": _gallery(pred, gallery_size),
        # every image's verdict, for audits and for re-plotting without re-scoring
        "samples": [{"path": str(smp.path), "label": smp.label, "defect_type": smp.defect_type,
                     "score": round(float(sc), 6), "raw_score": float(raw),
                     "predicted_type": pred.type_names[i] if has_types else None}
                    for i, (smp, sc, raw) in enumerate(zip(pred.samples, scores, pred.raw_scores, strict=True))],
    }
    if pred.maps is not None and pred.has_mask is not None:
        missing = int((~pred.has_mask).sum())
        if missing:
            report["pixel"]["excluded_images"] = missing
            report["pixel"]["excluded_reason"] = "defective images without a ground-truth mask"
    _add_per_type_pixel(report["per_type"], pred, fpr_limit)
    result = EvaluationReport.model_validate(report)
    result.composite = Composite.model_validate(composite_score(composite_inputs(result), weights))
    result.metrics = headline_metrics(result)
    result.warnings = sanity_warnings(result, model.card)
    return result


def sanity_warnings(report: EvaluationReport, card: ModelCard) -> list[str]:
    """Plain-language flags for figures that look good but are not (shown first in every report).

    The composite and F1 reward a model that rejects everything when most test parts are defective;
    an uncalibrated card makes every threshold figure meaningless. Say so rather than let a
    high number pass unread.
    """
    out = []
    at = report.image.at
    if card.normalization.method == "uncalibrated":
        out.append("the model is uncalibrated (card normalization.method): figures at the threshold are "
                   "meaningless until it is calibrated; AUROC, AP and PRO are still valid")
    if card.operating_point is not None and card.operating_point.on_training_images:
        out.append("the threshold was calibrated on images the model was trained on "
                   f"({card.operating_point.source}): the false-reject rate it promises is optimistic; "
                   "recalibrate on held-out good parts (edge-inspector calibrate --split val)")
    frr, esc = at.false_reject_rate, at.escape_rate
    if frr is not None and frr >= 0.5:
        out.append(f"{frr:.0%} of good parts are rejected at the calibrated threshold: F1, recall and the composite "
                   "are inflated by rejecting nearly everything; recalibrate")
    if esc is not None and esc >= 0.5:
        out.append(f"{esc:.0%} of defective parts pass at the calibrated threshold")
    auroc = report.image.auroc
    if auroc is not None and auroc < 0.6:
        out.append(f"image AUROC {auroc:.3f}: the scores barely separate good from defective parts")
    return out


def _add_per_type_pixel(rows: list[dict[str, Any]], pred: Predictions, fpr_limit: float) -> None:
    """Pixel AUROC and PRO per defect type (that type's masked images + all good images).

    A detector can localise blowholes well and cracks badly; the overall PRO hides which.
    """
    if pred.maps is None or pred.has_mask is None:
        return
    types = np.array(pred.true_types, dtype=object)
    good = (pred.labels == 0) & pred.has_mask
    ranked = pred.raw_maps if pred.raw_maps is not None else pred.maps
    for row in rows:
        row["pixel_auroc"] = row["pro"] = None
        if row["type"] == GOOD:
            continue
        sel = good | ((types == row["type"]) & pred.has_mask)
        masks = pred.masks[sel]
        if not masks.any() or masks.all():
            continue
        curve = pro_curve(ranked[sel], masks)
        row["pixel_auroc"] = curve.pixel_auroc()
        row["pro"] = normalised_aupro(curve, fpr_limit)


def headline_metrics(report: EvaluationReport) -> dict[str, Any]:
    """The figures a model registry shows, nested shallowly (the console flattens this to ``image.auroc``...)."""
    image, at, px, dt = report.image, report.image.at, report.pixel, report.defect_type
    return {
        "image": {"auroc": image.auroc, "average_precision": image.average_precision, "f1": at.f1,
                  "precision": at.precision, "recall": at.recall, "accuracy": at.accuracy,
                  "false_reject_rate": at.false_reject_rate, "escape_rate": at.escape_rate,
                  "best_f1": image.best_f1.f1 if image.best_f1 else None},
        "pixel": {"auroc": px.pixel_auroc, "pro": px.pro, "iou": px.iou, "dice": px.dice},
        "defect_type": {"macro_f1": dt.macro_f1, "weighted_f1": dt.weighted_f1, "auroc": dt.defect_type_auroc},
        "composite": report.composite.score,
    }


def evaluate_model(model: LoadedModel | Path | str, samples: Sequence[Sample], *, dataset: Mapping[str, Any],
                   backend: str = "onnxruntime", threads: int = 2, batch_size: int = 16,
                   pixel_size: int = DEFAULT_PIXEL_SIZE, fpr_limit: float = DEFAULT_FPR_LIMIT,
                   weights: Mapping[str, float] | None = None, progress: bool = False,
                   ) -> tuple[EvaluationReport, Predictions]:
    """Load (if needed) and score ``model`` on ``samples``; return (report, predictions)."""
    if not isinstance(model, LoadedModel):
        model = LoadedModel.load(model, backend=backend, threads=threads)
    pred = score_samples(model, samples, batch_size=batch_size, pixel_size=pixel_size, progress=progress)
    return build_report(pred, model, dataset=dataset, fpr_limit=fpr_limit, weights=weights), pred


def dataset_info(name: str, root: Path | str, split: str, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "root": str(root), "split": split, **dict(extra or {})}
