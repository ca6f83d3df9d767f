"""From per-model normalised scores to one verdict: fusion rules, defect type and regions.

Every score arriving here is normalised by the model's card (0.5 = its calibrated threshold), which
is what makes rules over models with unrelated raw scales meaningful. This module is pure (no
I/O, no threads): the pipeline calls ``decide`` once per frame.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from ..card import NORMALISED_THRESHOLD
from ..config import FusionConfig
from ..inference import ModelResult
from ..messages import ModelVote, Region, Verdict

MAX_REGIONS = 16


@dataclass
class ModelOutcome:
    """One model's result for one frame (or why it has none)."""

    name: str
    version: str
    kind: str
    result: ModelResult | None = None
    error: str | None = None
    role: str = "primary"
    weight: float = 1.0

    @property
    def is_classifier(self) -> bool:
        return self.kind == "classifier"


@dataclass
class FrameContext:
    """What the decision needs to know about the frame besides the model outputs."""

    line: str
    camera: str
    seq: int
    captured_at: str
    crop_size: tuple[int, int] | None  # (width, height) of the inspected crop
    roi_offset: tuple[int, int] = (0, 0)
    source: str | None = None
    error: str | None = None
    part_id: str | None = None  # from the trigger (edge_inspector/parts.py)
    triggered_at: str | None = None


@dataclass
class Fused:
    defect: bool
    score: float
    threshold: float
    confidence: float | None = None  # set by the ensemble rules (vote, soft_vote)


def member_confidence(score: float) -> float:
    """How sure one member is of its own vote: 0 at its threshold (0.5), 1 at a score of 0 or 1."""
    return float(min(1.0, abs(float(score) - NORMALISED_THRESHOLD) * 2.0))


# -- fusion rules ---------------------------------------------------------------------------------
# One function per value of ``config.FusionRule``, each given the primary models that have a result
# (at least one), their normalised scores and the fusion settings. Adding a rule = one function here,
# one entry in FUSION_RULES and one value in the Literal (tests/runtime/test_decision.py checks the
# table and the Literal agree).

FuseFn = Callable[[list[ModelOutcome], np.ndarray, FusionConfig], Fused]


def _any(used: list[ModelOutcome], scores: np.ndarray, fusion: FusionConfig) -> Fused:
    """Defect if any model >= 0.5; score = the highest."""
    return Fused(bool((scores >= NORMALISED_THRESHOLD).any()), float(scores.max()), NORMALISED_THRESHOLD)


def _all(used: list[ModelOutcome], scores: np.ndarray, fusion: FusionConfig) -> Fused:
    """Defect if every model >= 0.5; score = the lowest."""
    return Fused(bool((scores >= NORMALISED_THRESHOLD).all()), float(scores.min()), NORMALISED_THRESHOLD)


def _weighted(used: list[ModelOutcome], scores: np.ndarray, fusion: FusionConfig) -> Fused:
    """The weighted mean of the normalised scores against ``fusion.threshold``."""
    weights = np.array([o.weight for o in used], dtype=np.float64)
    total = weights.sum()
    score = float((weights * scores).sum() / total) if total > 0 else float(scores.mean())
    return Fused(score >= fusion.threshold, score, fusion.threshold)


def _classifier_then_detector(used: list[ModelOutcome], scores: np.ndarray, fusion: FusionConfig) -> Fused:
    """The classifier decides; with ``require_confirmation`` a detector (if present) must agree.
    Without a classifier the detectors decide as in 'any'."""
    classifiers = [o for o in used if o.is_classifier]
    detectors = [o for o in used if not o.is_classifier]
    if not classifiers:
        return _any(used, scores, fusion)
    score = max(o.result.score for o in classifiers)
    defect = score >= NORMALISED_THRESHOLD
    if defect and fusion.require_confirmation and detectors:
        defect = max(o.result.score for o in detectors) >= NORMALISED_THRESHOLD
    return Fused(defect, score, NORMALISED_THRESHOLD)


def _voter_weights(used: list[ModelOutcome]) -> np.ndarray:
    weights = np.array([o.weight for o in used], dtype=np.float64)
    return weights if weights.sum() > 0 else np.ones_like(weights)


def _vote(used: list[ModelOutcome], scores: np.ndarray, fusion: FusionConfig) -> Fused:
    """Each member votes defect when its score >= 0.5 (its weight = its number of votes); score = the
    weighted share of defect votes; defect when that share >= 0.5, so a tie is a defect: an
    inspection system that cannot decide rejects the part. confidence = the share of votes that agree
    with the verdict (0.5 on a tie, 1 when unanimous)."""
    weights = _voter_weights(used)
    share = float((weights * (scores >= NORMALISED_THRESHOLD)).sum() / weights.sum())
    defect = share >= 0.5
    return Fused(defect, share, 0.5, share if defect else 1.0 - share)


def _soft_vote(used: list[ModelOutcome], scores: np.ndarray, fusion: FusionConfig) -> Fused:
    """score = the weighted mean of the normalised scores, defect when >= ``fusion.threshold`` (a mean
    exactly at it is a defect); confidence = the distance of the mean from the threshold, scaled so
    0 = on it and 1 = at 0 or 1."""
    weights = _voter_weights(used)
    threshold = fusion.threshold
    mean = float((weights * scores).sum() / weights.sum())
    defect = mean >= threshold
    span = (1.0 - threshold) if defect else threshold
    return Fused(defect, mean, threshold, float(min(1.0, abs(mean - threshold) / span)) if span > 0 else 1.0)


FUSION_RULES: dict[str, FuseFn] = {
    "any": _any,
    "all": _all,
    "weighted": _weighted,
    "classifier_then_detector": _classifier_then_detector,
    "vote": _vote,
    "soft_vote": _soft_vote,
}
# Ensemble rules: every primary model is a voter, and the verdict carries each member's confidence.
VOTE_RULES = frozenset({"vote", "soft_vote"})


def fuse(outcomes: list[ModelOutcome], fusion: FusionConfig | str = "any") -> Fused:
    """Combine the primary models' normalised scores by ``fusion.rule`` (see FUSION_RULES).

    A bare rule name stands for that rule with the default settings (offline evaluation uses it).
    """
    if isinstance(fusion, str):
        fusion = FusionConfig(rule=fusion)
    used = [o for o in outcomes if o.role == "primary" and o.result is not None]
    if not used:
        raise ValueError("no primary model result to fuse")
    scores = np.array([o.result.score for o in used], dtype=np.float64)
    return FUSION_RULES[fusion.rule](used, scores, fusion)


def regions_from_map(anomaly_map: np.ndarray, crop_size: tuple[int, int], offset: tuple[int, int] = (0, 0),
                     level: float = NORMALISED_THRESHOLD, max_regions: int = MAX_REGIONS) -> list[Region]:
    """Bounding boxes of connected components of ``map >= level``, in frame pixels.

    The map (model resolution, normalised) is scaled to the crop size (width, height) and shifted by
    the ROI offset, so a region points at the right place on the full camera frame.
    """
    amap = np.asarray(anomaly_map, dtype=np.float32)
    if amap.ndim != 2 or amap.size == 0:
        return []
    mask = (amap >= level).astype(np.uint8)
    if not mask.any():
        return []
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    mh, mw = amap.shape
    sx, sy = crop_size[0] / mw, crop_size[1] / mh
    scattered = None
    if n > 1 + 4 * max_regions:  # a speckled map: one scatter pass, whatever the component count
        scattered = np.zeros(n, dtype=np.float32)
        np.maximum.at(scattered, labels.ravel(), amap.ravel())
    regions = []
    for label in range(1, n):
        x, y, w, h, _area = stats[label]
        if scattered is None:
            # a few components (the usual defect): the peak from the component's own bounding box,
            # ~30x cheaper on a 256 px map than the scatter over every pixel
            peak = float(amap[y:y + h, x:x + w][labels[y:y + h, x:x + w] == label].max())
        else:
            peak = float(scattered[label])
        x0, y0 = int(np.floor(x * sx)), int(np.floor(y * sy))
        x1, y1 = int(np.ceil((x + w) * sx)), int(np.ceil((y + h) * sy))
        regions.append(Region(x=x0 + offset[0], y=y0 + offset[1], w=x1 - x0, h=y1 - y0, score=round(peak, 4)))
    regions.sort(key=lambda r: r.score, reverse=True)
    return regions[:max_regions]


def best_map(outcomes: list[ModelOutcome]) -> np.ndarray | None:
    """The anomaly map of the most anomalous primary detector (used for regions and the overlay)."""
    with_maps = [o for o in outcomes if o.role == "primary" and o.result is not None
                 and o.result.anomaly_map is not None]
    if not with_maps:
        return None
    return max(with_maps, key=lambda o: o.result.score).result.anomaly_map


def _model_vote(o: ModelOutcome) -> ModelVote:
    if o.result is None:
        return ModelVote(name=o.name, version=o.version, score=0.0, verdict="error")
    return ModelVote(name=o.name, version=o.version, score=round(o.result.score, 6),
                     verdict="defect" if o.result.is_defect else "ok",
                     defect_type=o.result.defect_type)


def decide(ctx: FrameContext, outcomes: list[ModelOutcome],
           fusion: FusionConfig | None = None) -> tuple[Verdict, np.ndarray | None]:
    """The verdict for one frame and the anomaly map used (for the saved overlay), fused by
    ``fusion`` (the config's section; default: rule 'any').

    ``error`` when the frame could not be read or any primary model failed: an inspection system
    must never turn "could not look" into "ok".
    """
    base = dict(line=ctx.line, camera=ctx.camera, frame=ctx.seq, captured_at=ctx.captured_at,
                source=ctx.source, part_id=ctx.part_id, triggered_at=ctx.triggered_at,
                models=[_model_vote(o) for o in outcomes])
    if ctx.error:
        return Verdict(verdict="error", error=ctx.error, **base), None
    failed = [o for o in outcomes if o.role == "primary" and o.result is None]
    if failed or not outcomes:
        why = "; ".join(f"{o.name}: {o.error}" for o in failed) or "no model configured"
        return Verdict(verdict="error", error=why, **base), None
    fusion = fusion or FusionConfig()
    fused = fuse(outcomes, fusion)
    amap = best_map(outcomes)
    defect_type = confidence = None
    regions: list[Region] = []
    if fused.defect:
        typed = [o for o in outcomes if o.role == "primary" and o.result is not None and o.result.defect_type]
        if typed:
            best = max(typed, key=lambda o: o.result.score)
            defect_type = best.result.defect_type
            confidence = round(float(best.result.defect_confidence), 6)
        if amap is not None and ctx.crop_size is not None:
            regions = regions_from_map(amap, ctx.crop_size, ctx.roi_offset)
    if fusion.rule in VOTE_RULES:  # each member's vote with its own confidence
        base["models"] = [v.model_copy(update={"confidence": round(member_confidence(v.score), 6)})
                          if v.verdict in ("ok", "defect") else v for v in base["models"]]
    verdict = Verdict(verdict="defect" if fused.defect else "ok", score=round(fused.score, 6),
                      threshold=fused.threshold, defect_type=defect_type, defect_confidence=confidence,
                      regions=regions, confidence=None if fused.confidence is None else round(fused.confidence, 6),
                      **base)
    return verdict, amap
