"""ONNX export: names, dynamic batch, and a parity check that really catches a diverging export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from torch import nn  # noqa: E402

from edge_inspector.export.onnx import ExportParityError, export_onnx  # noqa: E402
from edge_inspector.models.base import Detector  # noqa: E402


class _Heads(nn.Module):
    """Tiny conv net with the detector I/O: score [N], map [N,H,W]; normalisation inside."""

    def __init__(self, branchy: bool = False):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 1, 3, padding=1)
        self.branchy = branchy

    def forward(self, x: torch.Tensor):
        m = self.conv((x - 0.5) / 0.5)[:, 0]
        if self.branchy and bool(x.mean() > 0.5):  # data-dependent Python branch: tracing freezes one side
            m = m * 3.0
        return m.flatten(1).max(1).values, m


class TinyDetector(Detector):
    kind = "tiny"

    def __init__(self, branchy: bool = False, **kw):
        super().__init__(**kw)
        self.output_names = ["pred_score", "anomaly_map"]
        self.module = _Heads(branchy).eval()

    def fit(self, train, val=None, progress=True) -> dict:
        return {"seconds": 0.0, "n_images": 0}

    def export_module(self) -> nn.Module:
        return self.module


def _batch(n: int, lo: float = 0.0, hi: float = 1.0, size: int = 48) -> np.ndarray:
    return np.random.default_rng(n).uniform(lo, hi, (n, 3, size, size)).astype(np.float32)


def test_export_names_dynamic_batch_and_parity(tmp_path: Path) -> None:
    det = TinyDetector(input_size=(48, 48))
    report = export_onnx(det, tmp_path / "tiny.onnx", _batch(3))
    assert report.output_names == ["pred_score", "anomaly_map"] and report.opset == 17
    assert max(report.max_abs_diff.values()) < 1e-4 and len(report.sha256) == 64
    session = ort.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert [o.name for o in session.get_outputs()] == ["pred_score", "anomaly_map"]
    assert session.get_inputs()[0].shape[1:] == [3, 48, 48] and isinstance(session.get_inputs()[0].shape[0], str)
    for n in (1, 5):  # any batch size runs, and matches torch
        x = _batch(n)
        score, amap = session.run(None, {"image": x})
        ref = det.predict(x)
        assert score.shape == (n,) and amap.shape == (n, 48, 48)
        np.testing.assert_allclose(score, ref["pred_score"], rtol=1e-4, atol=1e-5)
    assert "pred_score" in report.summary()


def test_diverging_export_is_refused_and_removed(tmp_path: Path) -> None:
    det = TinyDetector(branchy=True, input_size=(48, 48))
    # traced on the first (dark) image; the bright ones take the other branch in torch only
    batch = np.concatenate([_batch(1, 0.0, 0.2), _batch(2, 0.8, 1.0)])
    path = tmp_path / "bad.onnx"
    with pytest.raises(ExportParityError, match=r"bad\.onnx.*(pred_score|anomaly_map).*max \|diff\|"):
        export_onnx(det, path, batch)
    assert not path.exists()


def test_sample_batch_shape_is_checked(tmp_path: Path) -> None:
    det = TinyDetector(input_size=(48, 48))
    with pytest.raises(ValueError, match=r"\[N>=1, 3, 48, 48\]"):
        export_onnx(det, tmp_path / "x.onnx", _batch(2, size=32))
