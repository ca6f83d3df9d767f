"""Inference backends behind one protocol; ``create_backend`` is the explicit registry.

PyTorch is not a runtime backend: the toolchain's in-memory detector is the PyTorch reference,
and every export is checked against it (export/onnx.py), so the daemon never needs torch.
"""

from __future__ import annotations

from pathlib import Path

from .base import Backend, BackendError

BACKENDS = ("onnxruntime", "openvino", "tensorrt")


def create_backend(kind: str, model_path: Path, *, threads: int = 0, providers: list[str] | None = None,
                   **options) -> Backend:
    """Build a backend by name. Imports lazily so the daemon never needs torch or TensorRT installed."""
    if kind == "onnxruntime":
        from .onnx import OnnxBackend

        return OnnxBackend(model_path, providers=providers, threads=threads, streams=options.get("streams"))
    if kind == "openvino":
        from .openvino import OpenVinoBackend  # noqa: PLC0415 - optional dependency

        return OpenVinoBackend(model_path, threads=threads, **options)
    if kind == "tensorrt":
        from .tensorrt import TensorRTBackend  # noqa: PLC0415 - optional dependency

        return TensorRTBackend(model_path, **options)
    raise BackendError(f"unknown backend {kind!r}; expected one of {', '.join(BACKENDS)}")


__all__ = ["Backend", "BackendError", "BACKENDS", "create_backend"]
