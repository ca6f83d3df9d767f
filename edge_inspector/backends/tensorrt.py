"""TensorRT backend (pycuda): page-locked host buffers, one CUDA stream per backend instance
(the daemon creates one backend per camera pipeline), async copies, batched execution.

Only imported when a config asks for ``backend: tensorrt``; needs the ``[tensorrt]`` extra on a
desktop GPU, or JetPack's system TensorRT + pycuda on a Jetson.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..card import sha256_file
from .base import BackendError
from .engine_meta import EngineMeta


def import_tensorrt():
    """Import TensorRT and pycuda or explain what to install."""
    try:
        import pycuda.driver as cuda  # noqa: PLC0415
        import tensorrt as trt  # noqa: PLC0415
    except ImportError as exc:
        raise BackendError(
            f"TensorRT backend unavailable ({exc}). On a desktop NVIDIA GPU: pip install "
            "'edge-inspector[tensorrt]'; on a Jetson: use JetPack's python3-libnvinfer and "
            "pip install pycuda. Or set backend: onnxruntime."
        ) from exc
    return trt, cuda


def gpu_name(cuda) -> str:
    cuda.init()
    if cuda.Device.count() == 0:
        raise BackendError("TensorRT backend: no CUDA device found")
    return cuda.Device(0).name()


def engine_path_for(onnx_path: Path, precision: str) -> Path:
    onnx_path = Path(onnx_path)
    return onnx_path.with_name(f"{onnx_path.stem}.{precision}.engine")


class TensorRTBackend:
    name = "tensorrt"

    def __init__(self, model_path: Path, precision: str = "fp16", engine: Path | None = None, device: int = 0,
                 threads: int = 0):  # threads: CPU threads, which a GPU engine does not use
        trt, cuda = import_tensorrt()
        model_path = Path(model_path)
        engine_path = Path(engine) if engine else (
            model_path if model_path.suffix == ".engine" else engine_path_for(model_path, precision))
        if not engine_path.is_file():
            raise BackendError(f"{engine_path}: TensorRT engine not found; build it with "
                               f"`edge-inspector build-engine {model_path} --precision {precision}`")
        meta = EngineMeta.load(engine_path)
        cuda.init()
        self._ctx = cuda.Device(device).make_context()
        try:
            onnx_sha = sha256_file(model_path) if model_path.suffix == ".onnx" else None
            meta.check_compatible(trt.__version__, cuda.Device(device).name(), onnx_sha)
            self._trt, self._cuda, self.meta = trt, cuda, meta
            logger = trt.Logger(trt.Logger.WARNING)
            self.engine = trt.Runtime(logger).deserialize_cuda_engine(engine_path.read_bytes())
            if self.engine is None:
                raise BackendError(f"{engine_path}: TensorRT could not deserialize the engine")
            self.context = self.engine.create_execution_context()
            self.stream = cuda.Stream()
            names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
            self.input_name = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
            self.output_names = [n for n in names if n != self.input_name]
            self.input_shape = [-1, *meta.input_shape]
            self._allocate(meta.max_batch)
        finally:
            self._ctx.pop()

    def _allocate(self, batch: int) -> None:
        """Page-locked host + device buffers sized for the engine's largest batch, allocated once."""
        trt, cuda = self._trt, self._cuda
        self._host, self._device = {}, {}
        self.context.set_input_shape(self.input_name, (batch, *self.meta.input_shape))
        for name in [self.input_name, *self.output_names]:
            shape = tuple(self.context.get_tensor_shape(name))
            dtype = trt.nptype(self.engine.get_tensor_dtype(name))
            self._host[name] = cuda.pagelocked_empty(shape, dtype)
            self._device[name] = cuda.mem_alloc(self._host[name].nbytes)
            self.context.set_tensor_address(name, int(self._device[name]))

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        n = len(batch)
        if n > self.meta.max_batch:
            parts = [self.run(batch[i:i + self.meta.max_batch]) for i in range(0, n, self.meta.max_batch)]
            return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        cuda = self._cuda
        self._ctx.push()
        try:
            host_in = self._host[self.input_name]
            host_in[:n] = batch
            self.context.set_input_shape(self.input_name, (n, *self.meta.input_shape))
            cuda.memcpy_htod_async(self._device[self.input_name], host_in[:n], self.stream)
            if not self.context.execute_async_v3(self.stream.handle):
                raise BackendError("TensorRT execution failed")
            for name in self.output_names:
                cuda.memcpy_dtoh_async(self._host[name][:n], self._device[name], self.stream)
            self.stream.synchronize()
            return {name: np.array(self._host[name][:n], dtype=np.float32) for name in self.output_names}
        finally:
            self._ctx.pop()

    def describe(self) -> str:
        return f"tensorrt {self.meta.tensorrt_version} {self.meta.precision} on {self.meta.gpu_name}"
