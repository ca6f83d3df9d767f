"""Ensemble fusion rules (vote, soft_vote): the arithmetic, ties, confidences in the verdict, config,
and one real daemon replay with three tiny ONNX models that disagree."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_inspector.config import FusionConfig
from edge_inspector.inference import ModelResult
from edge_inspector.messages import Verdict
from edge_inspector.runtime.decision import FrameContext, ModelOutcome, decide, fuse, member_confidence
from tests.fixtures.models import make_model, write_frames
from tests.runtime.test_daemon import DaemonProc, read_jsonl, write_config


def member(score: float, name: str = "m", weight: float = 1.0, role: str = "primary") -> ModelOutcome:
    return ModelOutcome(name, "1", "feature_memory", ModelResult(score=score, raw_score=score), role=role,
                        weight=weight)


def members(*scores: float) -> list[ModelOutcome]:
    return [member(s, name=f"m{i}") for i, s in enumerate(scores)]


def ctx() -> FrameContext:
    return FrameContext(line="l", camera="c", seq=1, captured_at="2026-01-01T00:00:00.000Z", crop_size=(64, 64))


@pytest.mark.parametrize("scores,defect,share,confidence", [
    ((0.9, 0.8, 0.1), True, 2 / 3, 2 / 3),  # 2 of 3 defect
    ((0.9, 0.2, 0.1), False, 1 / 3, 2 / 3),  # 2 of 3 ok
    ((0.9, 0.6, 0.51), True, 1.0, 1.0),  # unanimous, however weakly
    ((0.49, 0.0, 0.3), False, 0.0, 1.0),
    ((0.5, 0.4), True, 0.5, 0.5),  # a score of exactly 0.5 votes defect; a tie is a defect
    ((0.9, 0.1, 0.2, 0.7), True, 0.5, 0.5),  # 2:2 tie -> defect (fail safe)
])
def test_vote_majority_and_ties(scores, defect, share, confidence):
    fused = fuse(members(*scores), "vote")
    assert fused.defect is defect
    assert fused.score == pytest.approx(share)
    assert fused.confidence == pytest.approx(confidence)
    assert fused.threshold == 0.5


def test_vote_weights_count_as_votes_and_shadows_do_not_vote():
    outcomes = [member(0.9, "a", weight=3.0), member(0.1, "b"), member(0.2, "c")]
    fused = fuse(outcomes, "vote")
    assert fused.defect and fused.score == pytest.approx(0.6)
    shadowed = members(0.1, 0.2) + [member(0.99, "shadow", role="shadow")]
    assert fuse(shadowed, "vote").defect is False


@pytest.mark.parametrize("scores,threshold,defect,mean,confidence", [
    ((0.9, 0.6, 0.0), 0.5, True, 0.5, 0.0),  # mean exactly at the threshold: defect, no confidence
    ((0.2, 0.4, 0.3), 0.5, False, 0.3, 0.4),  # (0.5 - 0.3) / 0.5
    ((1.0, 1.0, 0.7), 0.5, True, 0.9, 0.8),  # (0.9 - 0.5) / 0.5
    ((0.8, 0.8, 0.8), 0.6, True, 0.8, 0.5),  # (0.8 - 0.6) / 0.4
    ((0.9, 0.2, 0.1), 0.5, False, 0.4, 0.2),  # a confident member cannot outvote two sure ones
])
def test_soft_vote_mean_threshold_and_confidence(scores, threshold, defect, mean, confidence):
    fused = fuse(members(*scores), FusionConfig(rule="soft_vote", threshold=threshold))
    assert fused.defect is defect
    assert fused.score == pytest.approx(mean)
    assert fused.confidence == pytest.approx(confidence)


def test_vote_and_soft_vote_can_disagree():
    outcomes = members(0.55, 0.55, 0.0)  # two lukewarm defect votes against one sure ok
    assert fuse(outcomes, "vote").defect is True
    assert fuse(outcomes, "soft_vote").defect is False


def test_verdict_carries_global_and_member_confidence():
    verdict, _ = decide(ctx(), members(0.9, 0.75, 0.2), FusionConfig(rule="vote"))
    assert verdict.verdict == "defect" and verdict.confidence == pytest.approx(2 / 3, abs=1e-6)
    assert [m.verdict for m in verdict.models] == ["defect", "defect", "ok"]
    assert [m.confidence for m in verdict.models] == pytest.approx([0.8, 0.5, 0.6])
    # other rules leave both fields empty (the message stays as it was)
    plain, _ = decide(ctx(), members(0.9, 0.2), FusionConfig(rule="any"))
    assert plain.confidence is None and all(m.confidence is None for m in plain.models)
    roundtrip = Verdict.model_validate_json(verdict.to_json())
    assert roundtrip.confidence == verdict.confidence and roundtrip.models[2].confidence == pytest.approx(0.6)


def test_member_confidence_scale():
    assert member_confidence(0.5) == 0.0 and member_confidence(1.0) == 1.0 and member_confidence(0.0) == 1.0
    assert member_confidence(0.65) == pytest.approx(0.3)


def test_config_accepts_the_ensemble_rules():
    assert FusionConfig(rule="vote").rule == "vote"
    assert FusionConfig(rule="soft_vote", threshold=0.6).threshold == 0.6
    with pytest.raises(ValueError):
        FusionConfig(rule="majority")


def test_daemon_replay_with_three_tiny_models_votes(tmp_path: Path):
    """Two strict detectors and one trigger-happy one (its threshold is below the dark background):
    'any' would reject every frame; 'vote' follows the majority and reports the dissent."""
    models = tmp_path / "models"
    cards = [make_model(models, "detector", name="strict-a", threshold=0.3),
             make_model(models, "detector", name="strict-b", threshold=0.3),
             make_model(models, "classifier", name="jumpy", threshold=0.05)]
    frames = write_frames(tmp_path / "rec", n=8, defect_every=4)  # frames 3 and 7 are defects
    out_path = tmp_path / "verdicts.jsonl"
    cfg = write_config(tmp_path / "config.yaml", camera="{type: camera, device: 0}", models=cards,
                       publishers=f"- {{type: jsonl, path: {out_path}}}\n", extra="fusion: {rule: vote}\n",
                       line="ensemble-test")
    daemon = DaemonProc(["replay", str(frames), "--config", str(cfg)], tmp_path)
    assert daemon.wait(60) == 0, daemon.output()[-3000:]
    out = [Verdict.model_validate(v) for v in read_jsonl(out_path)]
    assert [v.frame for v in out] == list(range(8))
    assert [v.verdict for v in out] == ["ok", "ok", "ok", "defect"] * 2
    for v in out:
        votes = {m.name: m for m in v.models}
        assert set(votes) == {"strict-a", "strict-b", "jumpy"}
        assert votes["jumpy"].verdict == "defect"  # the dissenter on good frames is visible
        assert all(m.confidence is not None and 0.0 <= m.confidence <= 1.0 for m in v.models)
        if v.verdict == "ok":
            assert v.score == pytest.approx(1 / 3, abs=1e-6) and v.confidence == pytest.approx(2 / 3, abs=1e-6)
        else:
            assert v.score == 1.0 and v.confidence == 1.0
            assert v.defect_type in ("red_spot", "blue_spot")
