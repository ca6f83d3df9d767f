"""EfficientNet-Lite classifier: binary and defect-type heads learn from a handful of labelled parts,
frozen blocks stay frozen, export is faithful, seeds reproduce. 64 px images, a few epochs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edge_inspector.card import load_card  # noqa: E402
from edge_inspector.data.types import Dataset, Sample  # noqa: E402
from edge_inspector.export.onnx import export_onnx  # noqa: E402
from edge_inspector.inference import LoadedModel  # noqa: E402
from edge_inspector.models import DetectorError, create_detector  # noqa: E402
from edge_inspector.models.classifier import ClassifierDetector  # noqa: E402
from edge_inspector.models.training import binary_auroc  # noqa: E402
from edge_inspector.preprocess import decode_image  # noqa: E402

from .helpers import SIZE, TYPES, labelled_dataset  # noqa: E402

FAST = dict(input_size=SIZE, threads=1, epochs=4, augment=False)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    return labelled_dataset(tmp_path_factory.mktemp("cls"), blob_radius=(5, 8))


@pytest.fixture(scope="module")
def fitted(labelled: Dataset) -> tuple[ClassifierDetector, dict]:
    det = create_detector("classifier", seed=0, **FAST)
    return det, det.fit(labelled.split("train"), labelled.split("val"), progress=False)


def _scores(det: ClassifierDetector, samples: list[Sample]) -> dict[str, np.ndarray]:
    return det.predict(det.load(samples))


def test_binary_head_separates_defects_from_good_parts(labelled: Dataset, fitted) -> None:
    det, report = fitted
    test = labelled.split("test")
    out = _scores(det, test)
    assert det.output_names == ["pred_score", "anomaly_map", "type_probs"]
    assert out["pred_score"].shape == (len(test),) and out["anomaly_map"].shape == (len(test), SIZE, SIZE)
    assert np.all((out["pred_score"] > 0) & (out["pred_score"] < 1))  # sigmoid of the binary logit
    assert binary_auroc(out["pred_score"], [s.label for s in test]) >= 0.85
    assert report.extra["monitor"] == "val_loss" and report.extra["feature_cache"] is True
    assert report.extra["n_synthetic"] == 0 and report.extra["n_defects"] == 12


def test_type_head_knows_the_training_classes(labelled: Dataset, fitted) -> None:
    det, _ = fitted
    assert det.classes == sorted(TYPES) and det.card_info().classes == sorted(TYPES)
    defective = [s for s in labelled.split("test") if s.label == 1]
    probs = _scores(det, defective)["type_probs"]
    assert probs.shape == (len(defective), len(TYPES))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    predicted = [det.classes[k] for k in probs.argmax(axis=1)]
    accuracy = np.mean([p == s.defect_type for p, s in zip(predicted, defective, strict=True)])
    assert accuracy >= 0.75, predicted


def test_swapped_labels_invert_the_scores(labelled: Dataset, fitted) -> None:
    """The detection test above can fail: the same recipe with good/defect swapped ranks the other way."""
    swapped = [Sample(s.path, 1 - s.label, "good" if s.label else "flipped", split=s.split)
               for s in labelled.split("train")]
    det = create_detector("classifier", seed=0, **FAST)
    det.fit(swapped, progress=False)
    test = labelled.split("test")
    assert binary_auroc(_scores(det, test)["pred_score"], [s.label for s in test]) <= 0.3


def test_frozen_blocks_stay_frozen(labelled: Dataset) -> None:
    det = create_detector("classifier", seed=0, **{**FAST, "epochs": 2, "freeze_blocks": 8})
    from edge_inspector.models.backbone import load_backbone

    before = load_backbone("lite0").state_dict()
    det.fit(labelled.split("train"), progress=False)
    after = det.export_module().net.backbone.state_dict()
    frozen = ("_conv_stem.", "_bn0.") + tuple(f"_blocks.{i}." for i in range(8))
    frozen_keys = [k for k in before if k.startswith(frozen)]
    assert len(frozen_keys) > 40
    for key in frozen_keys:  # parameters AND batch-norm statistics, bit for bit
        assert torch.equal(before[key], after[key]), key
    trained = [k for k in before if k.startswith("_blocks.15.") and "weight" in k]
    assert any(not torch.equal(before[k], after[k]) for k in trained), "the unfrozen top did not train"
    assert det.card_info().extra["freeze_blocks"] == 8


def test_class_activation_map_averages_to_the_image_logit(labelled: Dataset, fitted) -> None:
    det, _ = fitted
    graph = det.export_module()
    x = torch.from_numpy(det.load(labelled.split("test")[:3]))
    with torch.no_grad():
        fmap = graph.net.top(graph.net.front(x))
        w, b = graph.net.binary.weight.view(1, -1, 1, 1), graph.net.binary.bias
        cam = (fmap * w).sum(dim=1) + b
        logit, _ = graph.net.logits(fmap)
    np.testing.assert_allclose(cam.mean(dim=(1, 2)).numpy(), logit.numpy(), rtol=1e-4, atol=1e-5)


def test_onnx_export_matches_torch(labelled: Dataset, fitted, tmp_path: Path) -> None:
    import onnxruntime as ort

    det, _ = fitted
    batch = det.load(labelled.split("test")[::3])
    report = export_onnx(det, tmp_path / "cls.onnx", batch[:2])
    assert report.output_names == ["pred_score", "anomaly_map", "type_probs"]
    sess = ort.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    got = dict(zip(report.output_names, sess.run(None, {"image": batch}), strict=True))
    ref = det.predict(batch)
    for name in report.output_names:
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-3, atol=1e-5, err_msg=name)


def test_same_seed_same_model(labelled: Dataset, fitted) -> None:
    det, _ = fitted
    batch = det.load(labelled.split("test")[:4])
    again = create_detector("classifier", seed=0, **FAST)
    again.fit(labelled.split("train"), labelled.split("val"), progress=False)
    np.testing.assert_array_equal(again.predict(batch)["pred_score"], det.predict(batch)["pred_score"])


def test_augmentation_oversampling_and_seeds(labelled: Dataset) -> None:
    """Both augmented paths train (cached views; fresh per batch with oversampling), and another seed
    gives another model."""
    views = create_detector("classifier", seed=1, **{**FAST, "epochs": 1, "augment": True, "augment_views": 1})
    report = views.fit(labelled.split("train"), progress=False)
    assert report.extra["feature_cache"] is True and report.extra["augmented_views"] == 1
    opts = {**FAST, "epochs": 1, "augment": True, "augment_views": 0, "balance": "oversample"}
    a = create_detector("classifier", seed=1, **opts)
    report = a.fit(labelled.split("train"), progress=False)
    assert report.extra["feature_cache"] is False and report.extra["monitor"] == "train_loss"
    b = create_detector("classifier", seed=2, **opts)
    b.fit(labelled.split("train"), progress=False)
    batch = a.load(labelled.split("test")[:4])
    assert not np.allclose(a.predict(batch)["pred_score"], b.predict(batch)["pred_score"])


def test_no_defects_synthesizes_them_without_a_type_head(labelled: Dataset) -> None:
    good = [s for s in labelled.split("train") if s.label == 0]
    det = create_detector("classifier", seed=0, **{**FAST, "epochs": 1})
    report = det.fit(good, progress=False)
    assert report.extra["n_synthetic"] == len(good) and det.classes == []
    assert det.output_names == ["pred_score", "anomaly_map"]
    out = _scores(det, labelled.split("test")[:2])
    assert set(out) == {"pred_score", "anomaly_map"}
    with pytest.raises(DetectorError, match="both good and defective"):
        create_detector("classifier", **{**FAST, "synthetic_defects": False}).fit(good, progress=False)


@pytest.mark.parametrize("options, message", [
    ({"balance": "smote"}, "balance"),
    ({"monitor": "f1"}, "monitor"),
    ({"dropout": 1.5}, "dropout"),
    ({"augment_views": -1}, "augment_views"),
    ({"lr_typo": 1}, "unknown option"),
])
def test_bad_options_are_named(options: dict, message: str) -> None:
    with pytest.raises(DetectorError, match=message):
        ClassifierDetector(input_size=SIZE, **options)


def test_train_model_writes_a_card_with_classes(labelled: Dataset, tmp_path: Path) -> None:
    card_path = train_model_quick(labelled, tmp_path)
    card = load_card(card_path)
    assert card.kind == "classifier" and card.classes == sorted(TYPES)
    assert set(card.outputs) == {"pred_score", "anomaly_map", "type_probs"}
    model = LoadedModel.load(card_path)
    defective = [s for s in labelled.split("test") if s.label == 1]
    results = model.predict([decode_image(s.path) for s in defective])
    assert all(r.defect_type in TYPES and r.type_probs.shape == (2,) for r in results)


def train_model_quick(dataset: Dataset, out: Path) -> Path:
    from edge_inspector.toolchain.train import train_model

    return train_model("classifier", dataset, out / "models", name="cls", progress=False,
                       options={**FAST, "epochs": 2})
