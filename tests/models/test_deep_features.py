"""Deep features + SVM / random forest / XGBoost: one merged ONNX file per model that scores like the
in-memory scikit-learn pipeline on real images, deployed through train_model and LoadedModel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("skl2onnx")

from edge_inspector.card import load_card  # noqa: E402
from edge_inspector.data.types import Dataset  # noqa: E402
from edge_inspector.inference import LoadedModel  # noqa: E402
from edge_inspector.models import DETECTORS, DetectorError, create_detector  # noqa: E402
from edge_inspector.models.training import binary_auroc  # noqa: E402
from edge_inspector.preprocess import decode_image  # noqa: E402
from edge_inspector.toolchain.train import train_model  # noqa: E402

from .helpers import SIZE, labelled_dataset  # noqa: E402

KINDS = ["features_svm", "features_rf", "features_xgb"]


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    return labelled_dataset(tmp_path_factory.mktemp("feat"))


@pytest.mark.parametrize("kind", KINDS)
def test_merged_onnx_matches_in_memory_model(kind: str, labelled: Dataset, tmp_path: Path) -> None:
    if kind == "features_xgb":
        pytest.importorskip("xgboost")
        pytest.importorskip("onnxmltools")
    options = dict(input_size=SIZE, threads=1, cv_folds=3)
    card_path = train_model(kind, labelled, tmp_path / "models", name=kind, options=options, progress=False,
                            calibration="none")
    card = load_card(card_path)
    assert card.kind == "classifier" and card.extra["family"] == kind
    assert list(card.outputs) == ["pred_score"]
    assert 0.0 <= card.extra["cv_auroc"] <= 1.0 and card.extra["cv_folds"] == 3

    model_file = card_path.parent / card.model_file
    graph = onnx.load(str(model_file)).graph
    assert [i.name for i in graph.input] == ["image"] and [o.name for o in graph.output] == ["pred_score"]
    ops = {n.op_type for n in graph.node}
    assert "Conv" in ops and ops & {"SVMClassifier", "TreeEnsembleClassifier", "TreeEnsemble"}, ops

    # the same detector, refitted with the same seed, is the in-memory reference on unseen images
    det = create_detector(kind, seed=0, **options)
    det.fit(labelled.split("train"), progress=False)
    test = labelled.split("test")
    batch = det.load(test)
    reference = det.predict(batch)["pred_score"]
    loaded = LoadedModel.load(card_path, threads=1)
    onnx_scores = np.array([r.raw_score for r in loaded.predict([decode_image(s.path) for s in test])])
    np.testing.assert_allclose(onnx_scores, reference, atol=2e-3)
    labels = np.array([s.label for s in test])
    assert binary_auroc(onnx_scores, labels) >= 0.8


def test_options_and_errors(labelled: Dataset) -> None:
    assert set(KINDS) <= set(DETECTORS)
    with pytest.raises(DetectorError, match="unknown option"):
        create_detector("features_svm", input_size=SIZE, n_estimators=5)
    with pytest.raises(DetectorError, match="cv_folds"):
        create_detector("features_rf", input_size=SIZE, cv_folds=1)
    with pytest.raises(DetectorError, match="fit"):
        create_detector("features_rf", input_size=SIZE).export_module()
    det = create_detector("features_svm", input_size=SIZE, threads=1, synthetic_defects=False)
    good_only = [s for s in labelled.split("train") if s.label == 0]
    with pytest.raises(DetectorError, match="2 defective"):
        det.fit(good_only, progress=False)


def test_good_only_training_uses_synthetic_defects(labelled: Dataset) -> None:
    det = create_detector("features_rf", input_size=SIZE, threads=1, cv_folds=2, n_estimators=20)
    report = det.fit([s for s in labelled.split("train") if s.label == 0], progress=False)
    assert report.extra["n_synthetic"] == 12 and report.extra["n_defects"] == 0
