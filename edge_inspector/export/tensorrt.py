"""Build TensorRT engines from our ONNX models: FP32/FP16/INT8, dynamic batch profile, workspace
limit; INT8 calibrated on normal images with the cache kept under ``calibration/``.

The engine's metadata (TensorRT version, GPU, precision, ONNX sha256) is written beside it and
into the model card, so the backend can refuse an engine built for another machine.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..backends.base import BackendError
from ..backends.engine_meta import EngineMeta, Precision
from ..backends.tensorrt import engine_path_for, gpu_name, import_tensorrt
from ..card import load_card, sha256_file
from ..preprocess import decode_image, to_batch

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


@dataclass
class EngineBuild:
    engine_path: Path
    meta: EngineMeta
    seconds: float


def calibration_batches(folder: Path, height: int, width: int, batch: int, limit: int = 512):
    """Yield float32 (batch, 3, H, W) arrays of normal images through the shared preprocessing."""
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    if not files:
        raise BackendError(f"{folder}: no images for INT8 calibration (expected normal images)")
    for i in range(0, len(files) - batch + 1, batch):
        yield to_batch([decode_image(f) for f in files[i:i + batch]], height, width)


def _make_calibrator(trt, cuda, batches: list[np.ndarray], cache_path: Path):
    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            super().__init__()
            self._batches = iter(batches)
            self._device = cuda.mem_alloc(batches[0].nbytes)

        def get_batch_size(self):
            return len(batches[0])

        def get_batch(self, names):
            try:
                data = next(self._batches)
            except StopIteration:
                return None
            cuda.memcpy_htod(self._device, np.ascontiguousarray(data))
            return [int(self._device)]

        def read_calibration_cache(self):
            return cache_path.read_bytes() if cache_path.is_file() else None

        def write_calibration_cache(self, cache):
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            cache_path.write_bytes(bytes(cache))

    return EntropyCalibrator()


def build_engine(model: Path, *, precision: Precision = "fp16", max_batch: int = 32, workspace_mb: int = 2048,
                 calibration_images: Path | None = None, calibration_dir: Path = Path("calibration"),
                 out: Path | None = None) -> EngineBuild:
    import time

    trt, cuda = import_tensorrt()
    card_path = Path(model)
    card = load_card(card_path)
    onnx_path = card.model_path(card_path if card_path.name.endswith(".card.json")
                                else card_path.with_name(card_path.stem + ".card.json"))
    c, h, w = 3, card.input.height, card.input.width
    meta = EngineMeta(onnx_sha256=sha256_file(onnx_path), tensorrt_version=trt.__version__,
                      gpu_name=gpu_name(cuda), precision=precision, max_batch=max_batch,
                      input_shape=(c, h, w), workspace_mb=workspace_mb)
    started = time.perf_counter()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"{onnx_path}: TensorRT cannot parse the ONNX model: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    profile = builder.create_optimization_profile()
    profile.set_shape("image", (1, c, h, w), (max(1, max_batch // 2), c, h, w), (max_batch, c, h, w))
    config.add_optimization_profile(profile)
    ctx = cuda.Device(0).make_context()
    try:
        if precision in ("fp16", "int8"):
            config.set_flag(trt.BuilderFlag.FP16)
        if precision == "int8":
            if calibration_images is None:
                raise BackendError("INT8 needs --calibration-images: a folder of normal images")
            cache = Path(calibration_dir) / f"{card.name}.int8.cache"
            batches = list(calibration_batches(calibration_images, h, w, batch=8))
            config.set_flag(trt.BuilderFlag.INT8)
            config.int8_calibrator = _make_calibrator(trt, cuda, batches, cache)
            config.set_calibration_profile(profile)
            meta = EngineMeta(**{**meta.__dict__, "calibration_cache": str(cache)})
        serialized = builder.build_serialized_network(network, config)
    finally:
        ctx.pop()
    if serialized is None:
        raise BackendError(f"{onnx_path}: TensorRT engine build failed (see the log above)")
    engine_path = Path(out) if out else engine_path_for(onnx_path, precision)
    engine_path.write_bytes(bytes(serialized))
    meta.save(engine_path)
    seconds = time.perf_counter() - started
    log.info("built %s (%s, %s) in %.1f s", engine_path, precision, meta.gpu_name, seconds)
    return EngineBuild(engine_path, meta, seconds)
