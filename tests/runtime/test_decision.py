"""Fusion rules, regions from anomaly maps (incl. ROI offset), error verdicts."""

from __future__ import annotations

import typing

import numpy as np
import pytest

from edge_inspector.config import FusionConfig, FusionRule
from edge_inspector.inference import ModelResult
from edge_inspector.messages import Verdict
from edge_inspector.runtime.decision import (
    FUSION_RULES,
    VOTE_RULES,
    FrameContext,
    ModelOutcome,
    decide,
    fuse,
    regions_from_map,
)


def det(score: float, amap: np.ndarray | None = None, name: str = "det", role: str = "primary",
        weight: float = 1.0) -> ModelOutcome:
    return ModelOutcome(name, "1", "feature_memory", ModelResult(score=score, raw_score=score, anomaly_map=amap),
                        role=role, weight=weight)


def clf(score: float, defect_type: str = "scratch", confidence: float = 0.8, name: str = "clf") -> ModelOutcome:
    return ModelOutcome(name, "2", "classifier", ModelResult(score=score, raw_score=score, defect_type=defect_type,
                                                             defect_confidence=confidence))


def ctx(**kw) -> FrameContext:
    base = dict(line="l", camera="c", seq=7, captured_at="2026-01-01T00:00:00.000Z", crop_size=(64, 64))
    base.update(kw)
    return FrameContext(**base)


@pytest.mark.parametrize("rule,scores,defect,score", [
    ("any", [0.2, 0.6], True, 0.6),
    ("any", [0.2, 0.4], False, 0.4),
    ("all", [0.7, 0.6], True, 0.6),
    ("all", [0.7, 0.4], False, 0.4),
    ("weighted", [0.2, 0.9], True, 0.55),
    ("weighted", [0.2, 0.7], False, 0.45),
])
def test_basic_rules(rule, scores, defect, score):
    fused = fuse([det(s, name=f"m{i}") for i, s in enumerate(scores)], rule)
    assert fused.defect is defect
    assert fused.score == pytest.approx(score)


def test_weighted_uses_weights_and_threshold():
    outcomes = [det(0.9, name="a", weight=3.0), det(0.1, name="b", weight=1.0)]
    assert fuse(outcomes, "weighted").score == pytest.approx(0.7)
    assert fuse(outcomes, FusionConfig(rule="weighted", threshold=0.75)).defect is False


def test_shadow_models_do_not_vote():
    outcomes = [det(0.2, name="live"), det(0.99, name="shadow", role="shadow")]
    verdict, _ = decide(ctx(), outcomes, FusionConfig(rule="any"))
    assert verdict.verdict == "ok"
    assert [v.name for v in verdict.models] == ["live", "shadow"]
    assert verdict.models[1].verdict == "defect"


def test_classifier_then_detector():
    amap = np.zeros((16, 16), np.float32)
    amap[4:8, 4:8] = 0.9
    # classifier says defect: defect, typed by the classifier, localised by the detector
    rule = FusionConfig(rule="classifier_then_detector")
    verdict, used = decide(ctx(), [clf(0.8), det(0.3, amap)], rule)
    assert verdict.verdict == "defect" and verdict.score == pytest.approx(0.8)
    assert verdict.defect_type == "scratch" and verdict.defect_confidence == pytest.approx(0.8)
    assert verdict.regions == [verdict.regions[0]] and verdict.regions[0].x == 16 and verdict.regions[0].w == 16
    assert used is amap
    # classifier says ok: ok even though the detector is anomalous
    assert decide(ctx(), [clf(0.3), det(0.9, amap)], rule)[0].verdict == "ok"
    # confirmation required: the detector must agree
    confirmed = FusionConfig(rule="classifier_then_detector", require_confirmation=True)
    assert fuse([clf(0.8), det(0.3)], confirmed).defect is False
    assert fuse([clf(0.8), det(0.6)], confirmed).defect is True
    assert decide(ctx(), [clf(0.8), det(0.3, amap)], confirmed)[0].verdict == "ok"  # decide passes the settings on


def test_regions_scaled_to_crop_and_shifted_by_roi():
    amap = np.zeros((32, 32), np.float32)
    amap[8:16, 4:8] = 0.7  # a 4x8 blob
    amap[20:22, 20:30] = 0.95  # a 10x2 blob, the stronger one
    amap[0, 31] = 0.49  # below the 0.5 level: ignored
    regions = regions_from_map(amap, crop_size=(64, 128), offset=(100, 50))  # crop is 64 wide, 128 high
    assert len(regions) == 2
    strong, weak = regions
    assert (strong.x, strong.y, strong.w, strong.h) == (100 + 40, 50 + 80, 20, 8)
    assert strong.score == pytest.approx(0.95)
    assert (weak.x, weak.y, weak.w, weak.h) == (100 + 8, 50 + 32, 8, 32)
    assert weak.score == pytest.approx(0.7)
    assert regions_from_map(np.zeros((8, 8)), (8, 8)) == []


def test_decide_with_roi_offset_from_context():
    amap = np.zeros((8, 8), np.float32)
    amap[2:4, 2:4] = 1.0
    verdict, _ = decide(ctx(crop_size=(80, 80), roi_offset=(10, 20)), [det(0.9, amap)])
    assert [(r.x, r.y, r.w, r.h) for r in verdict.regions] == [(30, 40, 20, 20)]
    Verdict.model_validate_json(verdict.to_json())  # a valid schema-1 message


def test_error_verdicts_for_bad_frames_and_failed_models():
    verdict, _ = decide(ctx(error="frame_3.png: not a decodable image"), [])
    assert verdict.verdict == "error" and "decodable" in verdict.error and verdict.score is None
    failed = ModelOutcome("det", "1", "feature_memory", None, error="BackendError: boom")
    verdict, _ = decide(ctx(), [clf(0.1), failed])
    assert verdict.verdict == "error" and "boom" in verdict.error
    assert [v.verdict for v in verdict.models] == ["ok", "error"]
    # a failed *shadow* model does not make the frame an error
    failed.role = "shadow"
    assert decide(ctx(), [clf(0.1), failed])[0].verdict == "ok"


def test_fusion_table_and_config_literal_agree():
    """Every rule the config accepts has its function, and no function is unreachable from the config."""
    assert set(FUSION_RULES) == set(typing.get_args(FusionRule))
    assert VOTE_RULES <= set(FUSION_RULES)
    for rule in FUSION_RULES:  # each one runs through decide with the config's own section
        verdict, _ = decide(ctx(), [det(0.9, name="a"), clf(0.8)], FusionConfig(rule=rule))
        assert verdict.verdict == "defect", rule


def test_region_peaks_are_each_components_maximum_for_few_and_many_components() -> None:
    """Peaks come from each component's bounding box when there are few components, from one scatter
    over the map when it is speckled; both must equal the brute-force maximum per component."""
    import cv2

    from edge_inspector.runtime.decision import regions_from_map

    rng = np.random.default_rng(3)
    for sigma, expect_many in ((6.0, False), (0.7, True)):
        amap = cv2.GaussianBlur(rng.random((96, 128)).astype(np.float32), (0, 0), sigma)
        amap = (amap - amap.min()) / (amap.max() - amap.min()) * 1.6  # part of the map above level 1.0
        mask = (amap >= 1.0).astype(np.uint8)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        assert (n > 1 + 4 * 16) == expect_many, n
        want = sorted((round(float(amap[labels == k].max()), 4) for k in range(1, n)), reverse=True)[:16]
        got = regions_from_map(amap, (128, 96), level=1.0, max_regions=16)
        assert [r.score for r in got] == want
