"""TensorRT path: metadata checks run everywhere; engine build/run need an NVIDIA GPU."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys

import pytest

from edge_inspector.backends import BackendError, create_backend
from edge_inspector.backends.engine_meta import EngineMeta, EngineMismatchError

HAS_TRT = importlib.util.find_spec("tensorrt") is not None and importlib.util.find_spec("pycuda") is not None
HAS_GPU = shutil.which("nvidia-smi") is not None
gpu = pytest.mark.skipif(not (HAS_TRT and HAS_GPU),
                         reason="needs an NVIDIA GPU with TensorRT + pycuda (pip install 'edge-inspector[tensorrt]')")


def meta(**kw) -> EngineMeta:
    base = dict(onnx_sha256="a" * 64, tensorrt_version="10.3.0", gpu_name="NVIDIA H100", precision="fp16",
                max_batch=32, input_shape=(3, 224, 224))
    return EngineMeta(**{**base, **kw})


def test_meta_round_trip_and_cache_key(tmp_path):
    engine = tmp_path / "m.fp16.engine"
    meta().save(engine)
    loaded = EngineMeta.load(engine)
    assert loaded == meta()
    assert loaded.cache_key() == meta().cache_key()
    assert meta(precision="int8").cache_key() != meta().cache_key()
    assert meta(gpu_name="Orin").cache_key() != meta().cache_key()


def test_engine_from_other_gpu_or_version_is_refused():
    meta().check_compatible("10.3.0", "NVIDIA H100", "a" * 64)
    with pytest.raises(EngineMismatchError, match="built for GPU 'NVIDIA H100'.*'Orin'"):
        meta().check_compatible("10.3.0", "Orin", None)
    with pytest.raises(EngineMismatchError, match="TensorRT 10.3.0, this machine has 8.6.1"):
        meta().check_compatible("8.6.1", "NVIDIA H100", None)
    with pytest.raises(EngineMismatchError, match="different ONNX"):
        meta().check_compatible("10.3.0", "NVIDIA H100", "b" * 64)


def test_engine_without_metadata_is_refused(tmp_path):
    with pytest.raises(EngineMismatchError, match="no m.engine.json"):
        EngineMeta.load(tmp_path / "m.engine")


@pytest.mark.skipif(HAS_TRT, reason="checks the message shown when TensorRT is absent")
def test_backend_without_tensorrt_explains_what_to_install(tmp_path):
    with pytest.raises(BackendError, match=r"edge-inspector\[tensorrt\]"):
        create_backend("tensorrt", tmp_path / "m.onnx")


@pytest.mark.skipif(HAS_TRT, reason="checks the message shown when TensorRT is absent")
def test_build_engine_cli_fails_cleanly_without_tensorrt(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "edge_inspector", "build-engine", str(tmp_path / "m.onnx")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.startswith("build-engine: TensorRT backend unavailable") and "Traceback" not in proc.stderr


@gpu
def test_engine_build_and_parity_on_gpu(tmp_path):
    """Build an FP16 engine of a small conv model and run it through the daemon's loading path: scores and
    maps within 0.02 of ONNX Runtime's (FP16 keeps about three significant digits; the model's outputs are
    mean brightness values in [0, 1]). bench/gpu.py measures the speed and INT8 on real models."""
    import numpy as np

    from edge_inspector.export.tensorrt import build_engine
    from edge_inspector.inference import LoadedModel
    from tests.fixtures.conv_models import make_conv_model
    from tests.fixtures.models import make_frame

    card = make_conv_model(tmp_path)
    built = build_engine(card, precision="fp16", max_batch=4, workspace_mb=256)
    assert built.engine_path.is_file() and built.meta.precision == "fp16" and built.meta.max_batch == 4
    frames = [make_frame(i % 2 == 0) for i in range(4)]
    reference = LoadedModel.load(card).predict(frames)
    engine = LoadedModel.load(card, backend="tensorrt", precision="fp16")
    assert engine.backend.name == "tensorrt"
    for ref, got in zip(reference, engine.predict(frames), strict=True):
        assert abs(got.raw_score - ref.raw_score) <= 0.02, (got.raw_score, ref.raw_score)
        assert ref.anomaly_map is not None and got.anomaly_map is not None
        np.testing.assert_allclose(got.anomaly_map, ref.anomaly_map, atol=0.02)
    assert [r.is_defect for r in engine.predict(frames)] == [r.is_defect for r in reference]
