"""What a TensorRT engine was built from and for, stored beside the engine as JSON.

A serialized engine is valid for exactly one TensorRT version and one GPU model, so a cached
engine is keyed by (ONNX sha256, TensorRT version, GPU name, precision) and refused at load
with a clear message when any of them differs. Torch- and TensorRT-free so the checks are
testable on any machine.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from ..errors import EdgeInspectorError

Precision = Literal["fp32", "fp16", "int8"]
META_SUFFIX = ".engine.json"


class EngineMismatchError(EdgeInspectorError, RuntimeError):
    """The engine was built for another GPU, TensorRT version or ONNX model."""


@dataclass(frozen=True)
class EngineMeta:
    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    precision: Precision
    max_batch: int
    input_shape: tuple[int, int, int]  # C, H, W
    workspace_mb: int = 1024
    calibration_cache: str | None = None

    def cache_key(self) -> str:
        """Stable short key: engines built from the same inputs on the same stack share a file name."""
        raw = f"{self.onnx_sha256}|{self.tensorrt_version}|{self.gpu_name}|{self.precision}|{self.max_batch}"
        return hashlib.sha256(raw.encode()).hexdigest()[:16]

    def save(self, engine_path: Path) -> Path:
        path = meta_path_for(engine_path)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, engine_path: Path) -> EngineMeta:
        path = meta_path_for(engine_path)
        if not path.is_file():
            raise EngineMismatchError(f"{engine_path}: no {path.name} beside the engine; rebuild it with "
                                      "`edge-inspector build-engine` so its GPU and TensorRT version are known")
        data = json.loads(path.read_text())
        data["input_shape"] = tuple(data["input_shape"])
        return cls(**data)

    def check_compatible(self, tensorrt_version: str, gpu_name: str, onnx_sha256: str | None = None) -> None:
        problems = []
        if self.tensorrt_version != tensorrt_version:
            problems.append(f"built with TensorRT {self.tensorrt_version}, this machine has {tensorrt_version}")
        if self.gpu_name != gpu_name:
            problems.append(f"built for GPU '{self.gpu_name}', this machine has '{gpu_name}'")
        if onnx_sha256 is not None and self.onnx_sha256 != onnx_sha256:
            problems.append("built from a different ONNX file than the model card names")
        if problems:
            raise EngineMismatchError("engine cannot run here: " + "; ".join(problems)
                                      + ". Rebuild it: edge-inspector build-engine MODEL.onnx")


def meta_path_for(engine_path: Path) -> Path:
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.stem + META_SUFFIX)
