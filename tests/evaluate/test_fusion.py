"""The fused pair (segmenter + feature_memory, rule 'any'): a defect type absent from the segmenter's training
is still caught, because the feature-memory detector (good parts only) flags whatever is unusual.

Real models: both are trained by ``train_model`` (fit, ONNX export with parity, calibration), scored through
``inference.LoadedModel`` (ONNX Runtime), and fused by the daemon's own rule (``runtime.decision.fuse``).
64 px generated washers; the segmenter sees 'missing' pieces with masks, the test adds bright 'glare' discs
it has never seen.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("torch")

from edge_inspector.config import FusionConfig  # noqa: E402
from edge_inspector.data.synthetic import render_part  # noqa: E402
from edge_inspector.data.types import Dataset, DatasetError, Sample  # noqa: E402
from edge_inspector.evaluate.fusion import Member, fuse_predictions, fused_figures  # noqa: E402
from edge_inspector.evaluate.metrics import image_metrics  # noqa: E402
from edge_inspector.evaluate.scoring import score_samples  # noqa: E402
from edge_inspector.inference import LoadedModel, ModelResult  # noqa: E402
from edge_inspector.runtime.decision import ModelOutcome, fuse  # noqa: E402
from edge_inspector.toolchain.calibrate import CalibrationError, calibrate_fusion  # noqa: E402
from edge_inspector.toolchain.train import train_model  # noqa: E402

SIZE = 64
SEEN, NOVEL = "missing", "glare"


def _image(kind: str | None, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if kind != NOVEL:
        return render_part(rng, SIZE, kind)
    image, _ = render_part(rng, SIZE, None)
    mask = np.zeros((SIZE, SIZE), np.uint8)
    cx, cy = (int(v) for v in rng.integers(20, 44, 2))
    cv2.circle(mask, (cx, cy), 6, 1, -1)
    image[mask > 0] = (255, 255, 255)  # a reflection: bright, where training defects were dark
    return image, mask


@pytest.fixture(scope="module")
def line(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    root = tmp_path_factory.mktemp("fusion") / "line"
    samples = []
    plan = [("train", None, 40), ("train", SEEN, 12), ("val", None, 16), ("val", SEEN, 4),
            ("test", None, 16), ("test", SEEN, 8), ("test", NOVEL, 8)]
    for stream, (split, kind, count) in enumerate(plan):
        for i in range(count):
            image, mask = _image(kind, np.random.default_rng((stream, i)))
            path = root / split / (kind or "good") / f"{i:03d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), image)
            mask_path = None
            if kind:
                mask_path = root / "masks" / split / kind / f"{i:03d}.png"
                mask_path.parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(mask_path), mask * 255)
            samples.append(Sample(path, int(kind is not None), kind or "good", mask_path, split))
    return Dataset("line", root, samples)


@pytest.fixture(scope="module")
def cards(line: Dataset, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = tmp_path_factory.mktemp("fusion-models")
    seg = train_model("segmenter", line, out, name="seg", seed=0, progress=False,
                      options={"input_size": SIZE, "threads": 1, "epochs": 12, "augment_views": 1})
    fm = train_model("feature_memory", line, out, name="fm", seed=0, progress=False,
                     options={"input_size": SIZE, "threads": 1})
    return [seg, fm]


def _scored(cards: list[Path], samples: list[Sample]) -> list[Member]:
    result = []
    for card in cards:
        model = LoadedModel.load(card, threads=1)
        result.append(Member(model.name, model.card.kind, score_samples(model, samples), model.card.normalization))
    return result


@pytest.fixture(scope="module")
def members(line: Dataset, cards: list[Path]) -> list[Member]:
    return _scored(cards, line.split("test"))


def _flagged(member_or_scores, samples: list[Sample], defect_type: str) -> int:
    scores = np.asarray(member_or_scores)
    return int(sum(scores[i] >= 0.5 for i, s in enumerate(samples) if s.defect_type == defect_type))


def test_fused_pair_catches_a_defect_type_the_segmenter_never_saw(line: Dataset, members: list[Member]) -> None:
    seg, fm = members
    test = line.split("test")
    assert NOVEL not in {s.defect_type for s in line.split("train") + line.split("val")}
    assert _flagged(seg.predictions.scores, test, NOVEL) <= 2  # the segmenter knows only what it was shown
    fused = fuse_predictions(members, "any")
    assert _flagged(fused.scores, test, NOVEL) >= 6, fused.scores
    for kind in (SEEN, NOVEL):  # on every type the pair catches at least what its better member catches
        best = max(_flagged(m.predictions.scores, test, kind) for m in members)
        assert _flagged(fused.scores, test, kind) >= max(best, 5), (kind, fused.scores)
    assert _flagged(fused.scores, test, "good") <= 2, fused.scores  # and it does not reject the line's good parts
    # the verdict is the daemon's: 'any' rejects exactly when one member does
    either = (seg.predictions.scores >= 0.5) | (fm.predictions.scores >= 0.5)
    assert np.array_equal(fused.scores >= 0.5, either)

    figures = fused_figures(members, "any")
    assert figures.members == ("seg", "fm") and figures.caught_only_by["fm"] >= 4
    escapes = [image_metrics(m.predictions.labels, m.predictions.scores)["at_threshold"]["escape_rate"]
               for m in members]  # each member alone
    assert figures.escape_rate is not None and figures.escape_rate < min(escapes), (figures, escapes)
    assert figures.image_auroc is not None and figures.image_auroc >= 0.9  # chance is 0.5
    assert figures.pixel_auroc is not None and figures.pixel_auroc > 0.8


def test_members_scored_on_other_images_are_refused(members: list[Member]) -> None:
    from dataclasses import replace

    seg, fm = members
    shorter = replace(fm, predictions=replace(fm.predictions, samples=fm.predictions.samples[:-1]))
    with pytest.raises(DatasetError, match="fm was scored on other images than seg"):
        fuse_predictions([seg, shorter])
    from edge_inspector.evaluate.errors import EvaluationError

    with pytest.raises(EvaluationError, match="at least two models"):
        fuse_predictions([seg])


def test_soft_vote_threshold_calibrated_on_val_gives_its_target_and_the_daemons_verdicts(
        line: Dataset, cards: list[Path], members: list[Member]) -> None:
    """The mean rule's threshold comes from the val split (never the test split): at most the target share of
    val good parts are rejected, and on the test split a part is flagged exactly when the daemon's
    ``fuse`` under that ``fusion`` section says defect."""
    val = _scored(cards, line.split("val"))
    fusion, cal = calibrate_fusion(val, "soft_vote", method="fpr", target=0.1)
    assert fusion.rule == "soft_vote" and 0.0 < fusion.threshold < 1.0
    assert cal.n_normal == 16 and cal.n_defect == 4
    val_fused = fuse_predictions(val, fusion)
    good = val_fused.labels == 0
    assert (val_fused.scores[good] >= 0.5).mean() <= 0.1 + 1e-9  # floor(0.1 * 16) = 1 good part may be rejected
    assert cal.false_reject_rate == (val_fused.scores[good] >= 0.5).mean()
    FusionConfig.model_validate(fusion.model_dump())  # a valid config section

    test_fused = fuse_predictions(members, fusion)
    for i in range(len(test_fused.samples)):
        outcomes = [ModelOutcome(name=m.name, version="", kind=m.kind,
                                 result=ModelResult(score=float(m.predictions.scores[i]),
                                                    raw_score=float(m.predictions.raw_scores[i])))
                    for m in members]
        assert fuse(outcomes, fusion).defect == bool(test_fused.scores[i] >= 0.5), i
    figures = fused_figures(members, fusion)
    assert figures.rule == "soft_vote" and figures.threshold == fusion.threshold
    test = line.split("test")  # the defect type the segmenter never saw is still caught, the good parts pass
    assert _flagged(test_fused.scores, test, NOVEL) >= 6 and _flagged(test_fused.scores, test, "good") <= 2
    # the fused mean ranks the test parts at least as well as the weaker member alone
    aurocs = [image_metrics(m.predictions.labels, m.predictions.scores,
                            raw_scores=m.unclipped_scores())["auroc"] for m in members]
    assert figures.image_auroc >= min(aurocs) - 1e-9, (figures, aurocs)


def test_rules_without_a_threshold_of_their_own_are_refused(members: list[Member]) -> None:
    with pytest.raises(CalibrationError, match="'any' has no threshold of its own"):
        calibrate_fusion(members, "any")


def test_calibrate_fusion_command_prints_the_config_section(line: Dataset, cards: list[Path], tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI on an MVTec-layout copy of the val parts: the printed ``fusion:`` section is the function's."""
    import shutil
    from dataclasses import replace

    import yaml

    from edge_inspector.cli import main

    root = tmp_path / "val-line"
    for s in line.split("val"):
        folder = root / "test" / s.defect_type
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(s.path, folder / s.path.name)
        if s.mask_path is not None:
            gt = root / "ground_truth" / s.defect_type
            gt.mkdir(parents=True, exist_ok=True)
            shutil.copy(s.mask_path, gt / f"{s.path.stem}_mask.png")
    (root / "train" / "good").mkdir(parents=True)
    shutil.copy(line.split("train")[0].path, root / "train" / "good" / "000.png")

    assert main(["calibrate-fusion", str(root), *map(str, cards), "--split", "test", "--target", "0.1", "-q",
                 "--threads", "1"]) == 0
    out = capsys.readouterr().out
    section = yaml.safe_load(out[out.index("fusion:"):])["fusion"]
    expected, _ = calibrate_fusion(_scored(cards, line.split("val")), "soft_vote", method="fpr", target=0.1)
    assert section == {"rule": "soft_vote", "threshold": expected.threshold}, out
    assert "16 normal + 4 defective images (test)" in out and "the fusion of seg + fm rejects" in out

    assert main(["calibrate-fusion", str(root), str(cards[0]), "-q"]) == 1  # one model: a clear error
    assert "at least two models" in capsys.readouterr().err
    assert main(["calibrate-fusion", str(root), *map(str, cards), "--weights", "1", "-q"]) == 1
    assert "expected 2 weights >= 0" in capsys.readouterr().err

    # the config's weights weigh the mean as the daemon does: the threshold is the weighted members' one
    assert main(["calibrate-fusion", str(root), *map(str, cards), "--split", "test", "--target", "0.1", "-q",
                 "--threads", "1", "--weights", "3", "1"]) == 0
    out = capsys.readouterr().out
    weighted = [replace(m, weight=w) for m, w in zip(_scored(cards, line.split("val")), (3.0, 1.0), strict=True)]
    expected, _ = calibrate_fusion(weighted, "soft_vote", method="fpr", target=0.1)
    assert yaml.safe_load(out[out.index("fusion:"):])["fusion"]["threshold"] == expected.threshold
    assert expected.threshold != section["threshold"]  # the weights did change the mean
    assert "with these weights on its models: seg 3, fm 1" in out
