"""Backend parity on a REAL exported model: an EfficientNet-Lite0 feature-memory detector trained and
exported by the toolchain (torch -> ONNX, depthwise convs, the distance head), not a hand-built graph.

Tolerances (documented in backends/openvino.py): OpenVINO fp32 against ONNX Runtime within 1e-4 on
normalised scores and maps; spreading a batch over streams changes nothing beyond float noise (1e-5
relative), and every verdict is the same.
"""

from __future__ import annotations

import numpy as np
import pytest

from edge_inspector.data.readers import load_dataset
from edge_inspector.inference import LoadedModel
from edge_inspector.preprocess import decode_image

pytest.importorskip("torch", reason="training needs the [train] extra")

FP32_TOL = 1e-4


@pytest.fixture(scope="module")
def exported(demo_dataset, tmp_path_factory):
    from edge_inspector.toolchain.train import train_model

    dataset = load_dataset(demo_dataset, val_fraction=0.2, seed=0)
    card = train_model("feature_memory", dataset, tmp_path_factory.mktemp("exported"), name="fm-real", seed=0,
                       options={"input_size": 64, "threads": 2}, progress=False)
    images = [decode_image(s.path) for s in dataset.split("test")]
    return card, images


def _agree(a, b, tol: float, relative: bool = False) -> None:
    assert [r.is_defect for r in a] == [r.is_defect for r in b]
    for x, y in zip(a, b, strict=True):
        scale = max(1.0, abs(x.raw_score)) if relative else 1.0
        assert abs(x.score - y.score) <= tol and abs(x.raw_score - y.raw_score) <= tol * scale * 10
        assert np.max(np.abs(x.anomaly_map - y.anomaly_map)) <= tol


def test_streams_change_nothing_on_an_exported_model(exported):
    card, images = exported
    one = LoadedModel.load(card, threads=2, streams=1)
    two = LoadedModel.load(card, threads=2, streams=2)
    a, b = one.predict(images), two.predict(images)
    assert len({r.is_defect for r in a}) == 2  # good and defective parts: the comparison means something
    _agree(a, b, 1e-5, relative=True)


def test_openvino_fp32_matches_onnxruntime_on_an_exported_model(exported, tmp_path):
    pytest.importorskip("openvino", reason="the [openvino] extra is not installed")
    card, images = exported
    ort_model = LoadedModel.load(card, threads=2, streams=1)
    for streams in (1, 2):
        ov_model = LoadedModel.load(card, backend="openvino", threads=2, streams=streams, precision="fp32",
                                    cache_dir=tmp_path / "ov")
        _agree(ort_model.predict(images), ov_model.predict(images), FP32_TOL)
