"""The one small protocol every inference backend implements (ONNX Runtime, TensorRT, PyTorch)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import EdgeInspectorError


class BackendError(EdgeInspectorError, RuntimeError):
    """A backend could not load or run a model; the message names the file and the cause."""


def default_streams(threads: int) -> int:
    """Parallel inference streams for ``threads`` CPU threads: one single-threaded stream per thread.

    Why: a batch of frames spread over single-threaded streams (one frame per request) costs less CPU
    than the same batch on one stream whose threads meet at every layer. Measured on 2 shared cores,
    256 px EfficientNet-Lite0, batch 8: OpenVINO bf16 feature memory 9.4 CPU ms per frame on 2
    streams against 12.8 on one 2-thread stream, the classifier 10.4 against 12.4; ONNX Runtime fp32
    feature memory 17.8 against 25.4, the classifier 15.9 against 21.3 (chunks of 4 frames per
    thread gained little: 19.0 and 19.9). A lone frame on one thread would take about twice as
    long, so a lone frame (a live camera between parts) runs on a second copy of the model that uses
    every thread (OpenVINO: a LATENCY-hint compilation; ONNX Runtime: a session with ``threads``
    intra-op threads): spreading batches costs no single-frame latency, at the price of a second copy
    in memory. ``streams: 1`` keeps one copy and one stream; threads 0 (library default) keeps one.
    """
    return max(1, min(threads, 4))


class Pending(Protocol):
    """A batch a backend has started; ``result()`` waits for it and returns its outputs by name."""

    def result(self) -> dict[str, np.ndarray]: ...


class Finished:
    """A batch that was done when it was handed over (a backend without asynchronous runs)."""

    def __init__(self, outputs: dict[str, np.ndarray]):
        self.outputs = outputs

    def result(self) -> dict[str, np.ndarray]:
        return self.outputs


def submit(backend: Backend, batch: np.ndarray) -> Pending:
    """Start ``batch`` without waiting where the backend can (its ``submit`` method), else run it now.

    Why: the daemon's infer stage starts the next batch before it turns the previous one into results
    and hands them on, so the runtime's streams have work while that Python runs (and while a loaded
    machine has the infer thread waiting for a core). ``run`` stays the one required method.
    """
    start = getattr(backend, "submit", None)
    return start(batch) if start is not None else Finished(backend.run(batch))


@runtime_checkable
class Backend(Protocol):
    name: str
    output_names: list[str]
    #: the model's declared input (N, C, H, W); a dynamic axis is -1 or a name ("batch")
    input_shape: list[int | str]

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Run float32 (N, 3, H, W) through the model; return outputs by name, batch-first."""
        ...

    def describe(self) -> str:
        """Short human description (backend and device) for logs and metrics labels."""
        ...
