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
    assert "TensorRT backend unavailable" in proc.stdout


@gpu
def test_engine_build_and_parity_on_gpu():  # pragma: no cover - runs only where a GPU is present
    pytest.skip("run bench/gpu.py on the GPU machine; parity is measured there per precision")
