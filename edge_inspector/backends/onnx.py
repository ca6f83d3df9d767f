"""ONNX Runtime backend: CPU by default, CUDA when the provider is installed and asked for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from .base import BackendError


class OnnxBackend:
    name = "onnxruntime"

    def __init__(self, model_path: Path, providers: list[str] | None = None, threads: int = 0):
        model_path = Path(model_path)
        if not model_path.is_file():
            raise BackendError(f"{model_path}: ONNX model not found")
        available = ort.get_available_providers()
        wanted = providers or ["CPUExecutionProvider"]
        missing = [p for p in wanted if p not in available]
        if missing:
            raise BackendError(f"{model_path}: execution provider(s) {missing} not available here ({available})")
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
        try:
            self.session = ort.InferenceSession(str(model_path), options, providers=wanted)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise BackendError(f"{model_path}: ONNX Runtime cannot load the model ({exc})") from exc
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise BackendError(f"{model_path}: expected exactly one input, found {[i.name for i in inputs]}")
        self.input_name = inputs[0].name
        self.input_shape = list(inputs[0].shape)
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.providers = self.session.get_providers()

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        outputs = self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})
        return dict(zip(self.output_names, outputs, strict=True))

    def describe(self) -> str:
        return f"onnxruntime {ort.__version__} ({self.providers[0]})"
