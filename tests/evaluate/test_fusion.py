"""The fused pair (segmenter + feature_memory, rule 'any'): a defect type absent from the segmenter's training
is still caught, because the feature-memory detector (good parts only) flags whatever is unusual.

Real models: both are trained by ``train_model`` (fit, ONNX export with parity, calibration), scored through
``inference.LoadedModel`` (ONNX Runtime), and fused by the daemon's own rule (``runtime.decision.fuse``).
64 px generated washers; the segmenter sees 'missing' pieces with masks, the test adds bright 'glare' discs
it has never seen.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

pytest.importorskip("torch")

from edge_inspector.data.synthetic import render_part  # noqa: E402
from edge_inspector.data.types import Dataset, DatasetError, Sample  # noqa: E402
from edge_inspector.evaluate.fusion import Member, fuse_predictions, fused_figures  # noqa: E402
from edge_inspector.evaluate.metrics import image_metrics  # noqa: E402
from edge_inspector.evaluate.scoring import score_samples  # noqa: E402
from edge_inspector.inference import LoadedModel  # noqa: E402
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
def members(line: Dataset, tmp_path_factory: pytest.TempPathFactory) -> list[Member]:
    out = tmp_path_factory.mktemp("fusion-models")
    seg = train_model("segmenter", line, out, name="seg", seed=0, progress=False,
                      options={"input_size": SIZE, "threads": 1, "epochs": 12, "augment_views": 1})
    fm = train_model("feature_memory", line, out, name="fm", seed=0, progress=False,
                     options={"input_size": SIZE, "threads": 1})
    result = []
    for card in (seg, fm):
        model = LoadedModel.load(card, threads=1)
        result.append(Member(model.name, model.card.kind, score_samples(model, line.split("test")),
                             model.card.normalization))
    return result


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
