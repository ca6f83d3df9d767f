"""Score a fused pair of models exactly as the daemon decides: each model through its own card, then the
daemon's fusion rule (``runtime.decision.fuse``) per image.

Why: a supervised model (the segmenter, the classifier) only knows the defect types it was shown; a
detector trained on good parts only flags whatever is unusual. On the line the two run side by side
under ``fusion: {rule: any}`` so that a defect type nobody labelled is still caught. This module gives
that pair the same figures one model gets (image AUROC, false-reject and escape rates at the
calibrated point, pixel AUROC), computed by the same metric code, from the same per-model
predictions ``evaluate_model`` made, so the benchmark's fused row and the daemon's verdicts agree.

The fused image score is the one ``fuse`` returns (``any``: the highest normalised score, so the pair
rejects exactly when one member does), shifted so that 0.5 is the rule's threshold: ``soft_vote`` and
``weighted`` compare their mean with ``fusion.threshold`` (calibrated by ``toolchain.calibrate.calibrate_fusion``),
and every figure here reads a verdict as "score >= 0.5". Ranking figures (AUROC) use the same rule over the members'
*unclipped* normalised scores, ``(raw - threshold) / (max - min) + 0.5``: the card clips to [0, 1],
and a confident model saturates most parts at 0 or 1, whose ties would hide the other member's
ranking. Clipping is monotone, so the verdict at 0.5 is the same either way. The fused map is the
per-pixel maximum (``any``), minimum (``all``) or weighted mean (``weighted``, ``soft_vote``) of the
members' normalised maps (unclipped alike), where the members' maps share one resolution.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..card import NORMALISED_THRESHOLD, ScoreNormalization
from ..config import FusionConfig
from ..data.types import DatasetError
from ..inference import ModelResult
from ..runtime.decision import ModelOutcome, fuse
from .errors import EvaluationError
from .metrics import image_metrics, pixel_metrics
from .scoring import Predictions

MAP_RULES = {"any": "max", "all": "min", "weighted": "mean", "soft_vote": "mean"}


@dataclass(frozen=True)
class Member:
    """One model of the fused set: its predictions on the shared samples and its card's identity."""

    name: str
    kind: str
    predictions: Predictions
    normalization: ScoreNormalization
    weight: float = 1.0

    def unclipped_scores(self) -> np.ndarray:
        return np.asarray(self.normalization.unclipped(self.predictions.raw_scores), np.float64)

    def unclipped_maps(self) -> np.ndarray | None:
        """The card's map normalisation (``ScoreNormalization.anomaly_map``) without its clip."""
        raw = self.predictions.raw_maps
        if raw is None:
            return None
        n = self.normalization
        thr = n.pixel_threshold if n.pixel_threshold is not None else n.threshold
        lo = n.pixel_min if n.pixel_min is not None else n.min
        hi = n.pixel_max if n.pixel_max is not None else n.max
        return (raw - thr) / max(hi - lo, 1e-12) + NORMALISED_THRESHOLD


@dataclass(frozen=True)
class FusedFigures:
    """The fused set's figures on one list of samples (None where undefined, e.g. no defect)."""

    rule: str
    threshold: float  # the rule's threshold on the fused mean ('weighted', 'soft_vote'); unused by the others
    members: tuple[str, ...]
    image_auroc: float | None
    pixel_auroc: float | None
    false_reject_rate: float | None
    escape_rate: float | None
    caught_only_by: dict[str, int]  # defective parts that only this member flagged


def fuse_predictions(members: Sequence[Member], fusion: FusionConfig | str = "any") -> Predictions:
    """One ``Predictions`` for the fused set: per image, the score ``runtime.decision.fuse`` gives (a bare rule
    name: that rule with its default threshold), minus the rule's threshold plus 0.5."""
    fusion = FusionConfig(rule=fusion) if isinstance(fusion, str) else fusion
    if len(members) < 2:
        raise EvaluationError(f"fusion needs at least two models, got {len(members)}")
    first = members[0].predictions
    paths = [s.path for s in first.samples]
    for m in members[1:]:
        if [s.path for s in m.predictions.samples] != paths:
            raise DatasetError(f"fusion: {m.name} was scored on other images than {members[0].name}; "
                               "score every member on the same samples, in the same order")
    unclipped = [m.unclipped_scores() for m in members]

    def fused_at(i: int, values: Sequence[np.ndarray]) -> float:
        outcomes = [ModelOutcome(name=m.name, version="", kind=m.kind, weight=m.weight,
                                 result=ModelResult(score=float(v[i]), raw_score=float(m.predictions.raw_scores[i])))
                    for m, v in zip(members, values, strict=True)]
        fused = fuse(outcomes, fusion)
        return fused.score - fused.threshold + NORMALISED_THRESHOLD

    scores = np.array([fused_at(i, [m.predictions.scores for m in members]) for i in range(len(paths))])
    ranking = np.array([fused_at(i, unclipped) for i in range(len(paths))])
    maps = _fused_maps(members, fusion.rule, [m.predictions.maps for m in members])
    raw_maps = _fused_maps(members, fusion.rule, [m.unclipped_maps() for m in members])
    return Predictions(samples=list(first.samples), scores=scores, raw_scores=ranking, maps=maps,
                       raw_maps=raw_maps if maps is not None else None,
                       masks=first.masks if maps is not None else None,
                       has_mask=first.has_mask if maps is not None else None,
                       wall_seconds=sum(m.predictions.wall_seconds for m in members))


def _fused_maps(members: Sequence[Member], rule: str, maps: Sequence[np.ndarray | None]) -> np.ndarray | None:
    """Members' maps combined per pixel, or None when a member has none or their shapes differ."""
    how = MAP_RULES.get(rule)
    if how is None or any(a is None for a in maps) or len({a.shape for a in maps}) != 1:
        return None
    stack = np.stack(maps)
    if how == "max":
        return stack.max(axis=0)
    if how == "min":
        return stack.min(axis=0)
    w = np.array([m.weight for m in members], np.float64).reshape(-1, 1, 1, 1)
    return ((stack * w).sum(axis=0) / max(float(w.sum()), 1e-12)).astype(np.float32)


def fused_figures(members: Sequence[Member], fusion: FusionConfig | str = "any") -> FusedFigures:
    """Image and pixel figures of the fused set, and how many defects each member alone caught."""
    fusion = FusionConfig(rule=fusion) if isinstance(fusion, str) else fusion
    pred = fuse_predictions(members, fusion)
    labels = pred.labels
    image = image_metrics(labels, pred.scores, raw_scores=pred.raw_scores)
    at = image.get("at_threshold") or {}
    pixel_auroc = None
    if pred.maps is not None and pred.has_mask is not None and pred.has_mask.any():
        known = pred.has_mask
        pixel_auroc = pixel_metrics(pred.maps[known], pred.masks[known], raw_maps=pred.raw_maps[known])["pixel_auroc"]
    flags = {m.name: np.asarray(m.predictions.scores) >= NORMALISED_THRESHOLD for m in members}
    only = {}
    for name, flagged in flags.items():
        others = np.zeros_like(flagged)
        for other, f in flags.items():
            if other != name:
                others |= f
        only[name] = int((flagged & ~others & (labels == 1)).sum())
    return FusedFigures(rule=fusion.rule, threshold=fusion.threshold, members=tuple(m.name for m in members),
                        image_auroc=image.get("auroc"),
                        pixel_auroc=pixel_auroc, false_reject_rate=at.get("false_reject_rate"),
                        escape_rate=at.get("escape_rate"), caught_only_by=only)
