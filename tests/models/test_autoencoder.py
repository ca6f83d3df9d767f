"""Autoencoder detector, both targets: it learns normal parts, flags defects, exports faithfully, and
is reproducible. 64 px images and a few epochs keep it to seconds on two contended cores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edge_inspector.card import load_card  # noqa: E402
from edge_inspector.data.loading import load_masks  # noqa: E402
from edge_inspector.data.readers import load_dataset  # noqa: E402
from edge_inspector.data.types import Dataset  # noqa: E402
from edge_inspector.export.onnx import export_onnx  # noqa: E402
from edge_inspector.inference import LoadedModel  # noqa: E402
from edge_inspector.models import DetectorError, create_detector  # noqa: E402
from edge_inspector.models.autoencoder import AutoencoderDetector  # noqa: E402
from edge_inspector.models.training import binary_auroc  # noqa: E402
from edge_inspector.toolchain.train import train_model  # noqa: E402

SIZE = 64
PIXEL_OPTS = dict(target="pixels", base_channels=16, epochs=4)


@pytest.fixture(scope="module")
def parts(demo_dataset: Path) -> Dataset:
    return load_dataset(demo_dataset)  # 16 train / 4 val good, 8 good + 9 defective test images


@pytest.fixture(scope="module")
def features_ae(parts: Dataset) -> tuple[AutoencoderDetector, dict]:
    det = create_detector("autoencoder", input_size=SIZE, threads=1, seed=0)
    return det, det.fit(parts.split("train"), parts.split("val"), progress=False)


@pytest.fixture(scope="module")
def pixels_ae(parts: Dataset) -> tuple[AutoencoderDetector, dict]:
    det = create_detector("autoencoder", input_size=SIZE, threads=1, seed=0, **PIXEL_OPTS)
    return det, det.fit(parts.split("train"), parts.split("val"), progress=False)


def _with_black_square(batch: np.ndarray) -> np.ndarray:
    """Paste a 12x12 black square on the part (a gross defect every mode must see)."""
    out = batch.copy()
    out[:, :, 14:26, 20:32] = 0.0
    return out


def test_features_mode_finds_and_locates_defects(parts: Dataset, features_ae) -> None:
    det, report = features_ae
    test = parts.split("test")
    labels = np.array([s.label for s in test])
    out = det.predict(det.load(test))
    assert out["pred_score"].shape == (len(test),)
    assert out["anomaly_map"].shape == (len(test), SIZE, SIZE)
    # an untrained AE scores ~0.5 here (checked: 0.51 image, 0.70 pixel AUROC), so these can fail
    assert binary_auroc(out["pred_score"], labels) >= 0.8
    masks = load_masks([s for s in test if s.label == 1], SIZE, SIZE)
    assert binary_auroc(out["anomaly_map"][labels == 1].ravel(), masks.ravel()) >= 0.9
    # image score = mean of the top 1 % of the map (41 of 4096 pixels)
    top = np.sort(out["anomaly_map"].reshape(len(test), -1), axis=1)[:, -41:].mean(axis=1)
    np.testing.assert_allclose(out["pred_score"], top, rtol=1e-4)
    assert report.extra["monitor"] == "val_loss" and report.n_images == 16
    assert report.extra["history"][-1]["train_loss"] < report.extra["history"][0]["train_loss"]


@pytest.mark.parametrize("mode", ["features", "pixels"])
def test_both_modes_flag_a_gross_defect(parts: Dataset, features_ae, pixels_ae, mode: str) -> None:
    det, _ = features_ae if mode == "features" else pixels_ae
    good = det.load([s for s in parts.split("test") if s.label == 0])
    clean = det.predict(good)["pred_score"]
    broken = det.predict(_with_black_square(good))["pred_score"]
    assert np.all(broken > clean), (mode, clean, broken)


def test_pixels_mode_learns_with_mse_and_ssim(pixels_ae) -> None:
    det, report = pixels_ae
    assert det.cfg.ssim_weight == 0.5
    history = report.extra["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    info = det.card_info()
    assert info.extra["target"] == "pixels" and info.backbone is None
    assert info.parameters < 200_000  # a small AE, no backbone inside


@pytest.mark.parametrize("mode", ["features", "pixels"])
def test_onnx_export_matches_torch(parts: Dataset, features_ae, pixels_ae, tmp_path: Path, mode: str) -> None:
    import onnxruntime as ort

    det, _ = features_ae if mode == "features" else pixels_ae
    batch = det.load(parts.split("test")[:3] + parts.split("test")[-2:])
    report = export_onnx(det, tmp_path / f"ae-{mode}.onnx", batch[:2])
    assert report.output_names == ["pred_score", "anomaly_map"]
    sess = ort.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    score, amap = sess.run(None, {"image": batch})  # other images and batch size than at export
    ref = det.predict(batch)
    np.testing.assert_allclose(score, ref["pred_score"], rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(amap, ref["anomaly_map"], rtol=1e-3, atol=1e-5)


def test_same_seed_same_model_other_seed_other_model(parts: Dataset, features_ae) -> None:
    det, _ = features_ae
    batch = det.load(parts.split("test")[:4])
    again = create_detector("autoencoder", input_size=SIZE, threads=1, seed=0)
    again.fit(parts.split("train"), parts.split("val"), progress=False)
    np.testing.assert_array_equal(again.predict(batch)["pred_score"], det.predict(batch)["pred_score"])
    other = create_detector("autoencoder", input_size=SIZE, threads=1, seed=1, epochs=3)
    other.fit(parts.split("train"), parts.split("val"), progress=False)
    assert not np.allclose(other.predict(batch)["pred_score"], det.predict(batch)["pred_score"])


def test_trains_on_normal_images_only(parts: Dataset) -> None:
    defective = [s for s in parts.split("test") if s.label == 1]
    det = create_detector("autoencoder", input_size=SIZE, threads=1, epochs=1)
    report = det.fit(parts.split("train")[:4] + defective[:2], progress=False)
    assert report.n_images == 4 and report.extra["skipped_defective"] == 2
    with pytest.raises(DetectorError, match="no normal images"):
        create_detector("autoencoder", input_size=SIZE).fit(defective, progress=False)


@pytest.mark.parametrize("options, message", [
    ({"target": "voxels"}, "target"),
    ({"ssim_weight": 0.5}, "ssim_weight applies to target='pixels'"),
    ({"score": "mean"}, "score"),
    ({"topk_ratio": 0}, "topk_ratio"),
    ({"epochz": 3}, "unknown option"),
])
def test_bad_options_are_named(options: dict, message: str) -> None:
    with pytest.raises(DetectorError, match=message):
        AutoencoderDetector(input_size=SIZE, **options)


def test_predict_before_fit_is_an_error() -> None:
    with pytest.raises(DetectorError, match="fit"):
        AutoencoderDetector(input_size=SIZE).predict(np.zeros((1, 3, SIZE, SIZE), np.float32))


def test_train_model_writes_a_card_the_daemon_path_loads(parts: Dataset, tmp_path: Path) -> None:
    card_path = train_model("autoencoder", parts, tmp_path / "models", name="ae", progress=False,
                            options={"input_size": SIZE, "threads": 1, "epochs": 5})
    card = load_card(card_path)
    assert card.kind == "autoencoder" and card.input.height == SIZE
    assert set(card.outputs) == {"pred_score", "anomaly_map"} and card.extra["target"] == "features"
    model = LoadedModel.load(card_path)
    test = parts.split("test")
    from edge_inspector.preprocess import decode_image

    results = model.predict([decode_image(s.path) for s in test])
    assert all(r.anomaly_map is not None and r.anomaly_map.shape == (SIZE, SIZE) for r in results)
    assert binary_auroc([r.raw_score for r in results], [s.label for s in test]) > 0.6
