"""Custom CNN baseline: learns from scratch on 64 px parts, keeps the classifier's outputs, exports
with ONNX parity and deploys through train_model like any other kind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edge_inspector.card import load_card  # noqa: E402
from edge_inspector.data.types import Dataset  # noqa: E402
from edge_inspector.inference import LoadedModel  # noqa: E402
from edge_inspector.models import DETECTORS, DetectorError, create_detector  # noqa: E402
from edge_inspector.models.training import binary_auroc  # noqa: E402
from edge_inspector.preprocess import decode_image  # noqa: E402
from edge_inspector.toolchain.train import train_model  # noqa: E402

from .helpers import SIZE, TYPES, labelled_dataset  # noqa: E402

FAST = dict(input_size=SIZE, threads=1, epochs=12, augment=False, blocks=3, width=8, lr=1e-2)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    return labelled_dataset(tmp_path_factory.mktemp("cnn"), train=(16, 8))


def test_registered_and_options_checked() -> None:
    assert "custom_cnn" in DETECTORS
    with pytest.raises(DetectorError, match="blocks=7"):
        create_detector("custom_cnn", input_size=SIZE, blocks=7)
    with pytest.raises(DetectorError, match="unknown option"):
        create_detector("custom_cnn", input_size=SIZE, freeze_blocks=2)
    with pytest.raises(DetectorError, match="fit"):
        create_detector("custom_cnn", input_size=SIZE).export_module()


def test_learns_from_scratch_and_deploys_with_parity(labelled: Dataset, tmp_path: Path) -> None:
    card_path = train_model("custom_cnn", labelled, tmp_path / "models", name="cnn", seed=0,
                            options=FAST, progress=False)
    card = load_card(card_path)
    assert card.kind == "classifier" and card.extra["family"] == "custom_cnn"
    assert card.classes == list(TYPES)
    assert set(card.outputs) == {"pred_score", "anomaly_map", "type_probs"}
    assert card.training.export["max_abs_diff"]["pred_score"] < 1e-4

    test = labelled.split("test")
    model = LoadedModel.load(card_path, threads=1)
    results = model.predict([decode_image(s.path) for s in test])
    labels = np.array([s.label for s in test])
    assert binary_auroc(np.array([r.raw_score for r in results]), labels) >= 0.8
    typed = [(r.defect_type, s.defect_type) for r, s in zip(results, test, strict=True) if s.label == 1]
    assert sum(a == b for a, b in typed) >= len(typed) // 2  # type head better than chance (2 types)
    assert results[0].anomaly_map is not None and results[0].anomaly_map.shape == (SIZE, SIZE)


def test_seed_reproduces(labelled: Dataset) -> None:
    train = labelled.split("train")[:12] + labelled.split("train")[-6:]
    outs = []
    for _ in range(2):
        det = create_detector("custom_cnn", seed=3, **dict(FAST, epochs=2))
        det.fit(train, None, progress=False)
        outs.append(det.predict(det.load(train[:4]))["pred_score"])
    np.testing.assert_allclose(outs[0], outs[1], atol=1e-6)
