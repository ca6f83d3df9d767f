"""Inference backends behind one protocol; ``BACKENDS`` is the registry (registry.py).

PyTorch is not a runtime backend: the toolchain's in-memory detector is the PyTorch reference,
and every export is checked against it (export/onnx.py), so the daemon never needs torch.
"""

from __future__ import annotations

from pathlib import Path

from ..registry import Registry
from .base import Backend, BackendError

# ``models[].backend`` -> implementation (see registry.py); each module imports its library only when a
# backend is built, so the daemon never needs torch, OpenVINO or TensorRT installed to start.
BACKENDS = Registry("backend", {
    "onnxruntime": "edge_inspector.backends.onnx:OnnxBackend",
    "openvino": "edge_inspector.backends.openvino:OpenVinoBackend",  # the [openvino] extra
    "tensorrt": "edge_inspector.backends.tensorrt:TensorRTBackend",  # the [tensorrt] extra, an NVIDIA GPU
}, BackendError)


def create_backend(kind: str, model_path: Path, *, threads: int = 0, providers: list[str] | None = None,
                   **options) -> Backend:
    """Build a backend by name; ``options`` are the backend's own (``ModelConfig.backend_options``)."""
    if providers is not None:  # ONNX Runtime execution providers
        options["providers"] = providers
    return BACKENDS.load(kind)(model_path, threads=threads, **options)


__all__ = ["Backend", "BackendError", "BACKENDS", "create_backend"]
