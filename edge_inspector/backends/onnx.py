"""ONNX Runtime backend: CPU by default, CUDA when the provider is installed and asked for."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .base import BackendError, Finished, Pending, default_streams


def session_options(threads: int) -> ort.SessionOptions:
    """The daemon's ONNX Runtime session settings (also used by the fit-time feature pass)."""
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    # No busy-waiting between runs: the daemon's decode threads need those cores, and on a
    # shared CPU a spinning pool burns half its time. Measured on 2 shared cores, Lite0 at 256 px,
    # batch 1: spinning 6.4-7.0 img/s at 33 CPU-ms per image, without 12.6-14.2 at 18 CPU-ms.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


class _Streams:
    """Frames of one batch running on the stream threads; ``result()`` puts their outputs in frame order."""

    def __init__(self, futures: list[Future], names: list[str]):
        self.futures, self.names = futures, names

    def result(self) -> dict[str, np.ndarray]:
        parts = [f.result() for f in self.futures]
        return {name: np.concatenate([p[k] for p in parts]) for k, name in enumerate(self.names)}


class OnnxBackend:
    """One session for lone frames (``threads`` intra-op threads) and, on the CPU with ``streams`` > 1,
    a single-threaded session that ``streams`` threads run frame by frame (base.default_streams)."""

    name = "onnxruntime"

    def __init__(self, model_path: Path, providers: list[str] | None = None, threads: int = 0,
                 streams: int | None = None):
        model_path = Path(model_path)
        if not model_path.is_file():
            raise BackendError(f"{model_path}: ONNX model not found")
        available = ort.get_available_providers()
        wanted = providers or ["CPUExecutionProvider"]
        missing = [p for p in wanted if p not in available]
        if missing:
            raise BackendError(f"{model_path}: execution provider(s) {missing} not available here ({available})")
        cpu_only = wanted == ["CPUExecutionProvider"]
        self.streams = (default_streams(threads) if streams is None else max(1, int(streams))) if cpu_only else 1
        try:
            self.session = ort.InferenceSession(str(model_path), session_options(threads), providers=wanted)
            self._parallel = None if self.streams == 1 else ort.InferenceSession(
                str(model_path), session_options(1), providers=wanted)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise BackendError(f"{model_path}: ONNX Runtime cannot load the model ({exc})") from exc
        self._pool = None if self._parallel is None else ThreadPoolExecutor(self.streams, "ort-stream")
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise BackendError(f"{model_path}: expected exactly one input, found {[i.name for i in inputs]}")
        self.input_name = inputs[0].name
        self.input_shape = list(inputs[0].shape)
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.providers = self.session.get_providers()

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        return self.submit(batch).result()

    def submit(self, batch: np.ndarray) -> Pending:
        """Start ``batch`` on the streams and return at once (``base.submit`` says why); a lone frame
        (or one stream) runs here, on every thread, and is ready when this returns."""
        data = np.ascontiguousarray(batch, dtype=np.float32)
        if self._pool is None or len(data) == 1:
            outputs = self.session.run(None, {self.input_name: data})
            return Finished(dict(zip(self.output_names, outputs, strict=True)))
        # sessions are thread-safe for run(); ONNX Runtime releases the GIL while it computes
        futures = [self._pool.submit(self._parallel.run, None, {self.input_name: data[i:i + 1]})
                   for i in range(len(data))]
        return _Streams(futures, self.output_names)

    def __del__(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=False)

    def describe(self) -> str:
        return f"onnxruntime {ort.__version__} ({self.providers[0]})"
