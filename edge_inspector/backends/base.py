"""The one small protocol every inference backend implements (ONNX Runtime, TensorRT, PyTorch)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


class BackendError(RuntimeError):
    """A backend could not load or run a model; the message names the file and the cause."""


@runtime_checkable
class Backend(Protocol):
    name: str
    output_names: list[str]

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Run float32 (N, 3, H, W) through the model; return outputs by name, batch-first."""
        ...

    def describe(self) -> str:
        """Short human description (backend and device) for logs and metrics labels."""
        ...
