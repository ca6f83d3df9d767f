"""OpenVINO backend: the same ONNX files on Intel (and AMD) CPUs, integrated GPUs and NPUs.

Why a second CPU runtime: on CPUs with AVX-512 VNNI/BF16 or AMX, OpenVINO's CPU plugin runs the
exported graphs 1.2-2.5x faster than ONNX Runtime (TARGETS.md "Speed"), and it is the only runtime
for the iGPU/NPU of an industrial PC.

Choices:
* ``precision`` is explicit and checked against the device's ``OPTIMIZATION_CAPABILITIES``; the CPU
  plugin would otherwise silently pick bf16 on AMX machines, and a reduced precision must be an
  accuracy-checked decision (``edge-inspector quantize --precision bf16`` records it in the card),
  never a side effect of the hardware. ``int8`` runs a QDQ-quantized model (``edge-inspector
  quantize``); asking for it with a float model is an error, not a silent fp32 run.
* A compiled-model cache (``CACHE_DIR``) makes a restart or a SIGHUP reload cost a file read
  instead of a graph compilation. A cache folder that cannot be written is a warning, not a failure.
* Parallel streams (``default_streams``): with ``threads`` >= 2 the batch the daemon formed is spread
  frame by frame over one single-threaded stream per thread (THROUGHPUT hint), which costs ~25 %
  less CPU per frame than one multi-threaded stream; ``streams: 1`` is the LATENCY hint. The frames'
  requests are waited on, not called back (``_run_streams`` says why). Those compilations are fixed at
  batch 1 (``single_frame``), the one shape their requests carry.

Tolerance against ONNX Runtime (tests/backends/test_openvino.py): fp32 outputs agree within 1e-4
absolute on the normalised scores (1e-3 relative on raw feature distances); bf16 and int8 are not
held to a fixed tolerance here, they are measured per model on its validation images and the card
records the change (edge_inspector/export/quantize.py).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import numpy as np

from .base import BackendError, Finished, Pending, default_streams

log = logging.getLogger(__name__)

#: config spelling -> OpenVINO INFERENCE_PRECISION_HINT, and the device capability it needs
PRECISIONS: dict[str, tuple[str, str]] = {
    "fp32": ("f32", "FP32"),
    "bf16": ("bf16", "BF16"),
    "fp16": ("f16", "FP16"),
    "int8": ("f32", "INT8"),  # int8 kernels come from the model's Q/DQ nodes; the rest stays f32
}
QUANTIZED_OPS = {"FakeQuantize", "QuantizeLinear", "DequantizeLinear"}
CONTRACT_OUTPUTS = ("pred_score", "anomaly_map", "type_probs")  # card.py's ONNX I/O contract


def import_openvino():
    try:
        import openvino as ov  # noqa: PLC0415 - optional dependency
    except ImportError as exc:
        raise BackendError(
            f"OpenVINO backend unavailable ({exc}): pip install 'edge-inspector[openvino]', "
            "or set backend: onnxruntime"
        ) from exc
    return ov


def default_cache_dir(model_path: Path) -> Path:
    """``$XDG_CACHE_HOME/edge-inspector/openvino`` (``~/.cache/...``), shared by all models: the cache
    key includes the model's content and the compile options, so models never collide."""
    base = os.environ.get("XDG_CACHE_HOME") or (Path.home() / ".cache")
    return Path(base) / "edge-inspector" / "openvino"


def output_name(output) -> str:
    """The output's contract name: a tensor carries every name it had in the ONNX graph (a QDQ model's
    ``pred_score`` is also ``/Gather_output_0``), and ``get_any_name`` may return either."""
    names = output.get_names()
    for name in CONTRACT_OUTPUTS:
        if name in names:
            return name
    return output.get_any_name()


def is_quantized(model) -> bool:
    """True when the graph carries quantize/dequantize nodes (a QDQ ONNX model)."""
    return any(op.get_type_name() in QUANTIZED_OPS for op in model.get_ops())


def _find_card(model_path: Path) -> Path:
    """The card of ``model_path``: ``<stem>.card.json``, else any card in the folder naming this file."""
    from ..card import CardError, card_path_for, load_card

    card_path = card_path_for(model_path)
    if not card_path.is_file():  # a card named differently from its model file
        for other in sorted(model_path.parent.glob("*.card.json")):
            try:
                if load_card(other, verify=False).model_file == model_path.name:
                    card_path = other
                    break
            except CardError:
                continue
    return card_path


#: what ``precision: auto`` tries, fastest first (int8 only applies to a quantized file)
AUTO_ORDER = ("int8", "bf16")


def auto_precision(model_path: Path, quantized: bool, capabilities: list[str]) -> tuple[str, str]:
    """(precision, why) for ``precision: auto``: the fastest precision this device runs that the card
    holds a passing accuracy check for on exactly this file; fp32 otherwise.

    Why a default that may be reduced: a reduced precision is safe exactly when it was measured on
    this model (precision.py), and the card says so; making the operator repeat that in the config
    left bf16's 1.5-2x on the table for every model that passed its check. fp16 is never picked
    automatically (on CPUs it emulates; on GPUs it is a deliberate choice).
    """
    from ..card import CardError, load_card, sha256_file
    from .precision import passing_check

    try:
        card = load_card(_find_card(model_path), verify=False)
    except CardError as exc:
        return "fp32", f"no readable card ({exc})"
    digest = sha256_file(model_path)
    for precision in AUTO_ORDER:
        if (precision == "int8") != quantized or PRECISIONS[precision][1] not in capabilities:
            continue
        check = passing_check(card, "openvino", precision, digest)
        if check is not None:
            return precision, f"passing {precision} check in the card ({check.summary()})"
    if quantized:  # an int8 file without a passing OpenVINO check: refuse it, as an explicit int8 would be
        return "int8", "quantized model"
    return "fp32", "no passing bf16 check in the card for this file"


def require_precision_check(model_path: Path, precision: str) -> None:
    """Refuse a reduced precision the model's card has no passing accuracy check for (see precision.py)."""
    from ..card import CardError, load_card, sha256_file
    from .precision import check_key, passing_check, read_checks

    card_path = _find_card(model_path)
    try:
        card = load_card(card_path, verify=False)
    except CardError as exc:
        raise BackendError(f"{model_path}: precision {precision} needs the model card's accuracy "
                           f"check ({exc})") from exc
    digest = sha256_file(model_path)
    if passing_check(card, "openvino", precision, digest) is None:
        recorded = read_checks(card).get(check_key("openvino", precision))
        if recorded is not None and recorded.model_sha256 == digest:
            raise BackendError(f"{model_path}: precision {precision} failed its accuracy check on this model "
                               f"({recorded.summary()}); use precision fp32 or backend onnxruntime")
        raise BackendError(
            f"{model_path}: precision {precision} was never checked for accuracy on this model ({card_path} "
            f"holds no passing {precision} check for this file); measure it with `edge-inspector quantize "
            f"{card_path} --precision {precision} --data DATASET`, or use precision fp32")


def single_frame(model):
    """A copy of ``model`` with its batch axis fixed at 1, or None when that is not the only dynamic
    dimension (a model with a free image size stays as it is)."""
    shape = model.inputs[0].get_partial_shape()
    if shape.rank.is_dynamic or len(shape) < 1 or not shape[0].is_dynamic or any(d.is_dynamic for d in list(shape)[1:]):
        return None
    fixed = model.clone()
    fixed.reshape({fixed.inputs[0]: [1, *(d.get_length() for d in list(shape)[1:])]})
    return fixed


class _StreamRun:
    """A batch started on the streams; ``result()`` waits for it and gives its outputs (once)."""

    def __init__(self, backend: OpenVinoBackend, requests: list, data: np.ndarray):
        self.backend, self.requests, self.data = backend, requests, data  # data: the requests read it
        self._outputs: dict[str, np.ndarray] | None = None

    def result(self) -> dict[str, np.ndarray]:
        if self._outputs is None:
            self._outputs = self.backend._collect(self)
            self.data = None
        return self._outputs


class OpenVinoBackend:
    name = "openvino"

    def __init__(self, model_path: Path, device: str = "CPU", precision: str = "fp32", threads: int = 0,
                 cache_dir: Path | None = None, require_check: bool = True, streams: int | None = None):
        ov = import_openvino()
        model_path = Path(model_path)
        if not model_path.is_file():
            raise BackendError(f"{model_path}: ONNX model not found")
        if precision not in PRECISIONS and precision != "auto":
            raise BackendError(f"{model_path}: precision {precision!r} is not one of "
                               f"{', '.join(PRECISIONS)} or auto")
        core = ov.Core()
        available = core.available_devices  # e.g. ['CPU', 'GPU.0', 'GPU.1', 'NPU']
        family = device.split(".")[0]
        if device not in available and not (device == family and any(d.split(".")[0] == family for d in available)):
            raise BackendError(f"{model_path}: OpenVINO device {device!r} is not available here "
                               f"(available: {', '.join(available) or 'none'})")
        caps = core.get_property(device, "OPTIMIZATION_CAPABILITIES")
        try:
            model = core.read_model(str(model_path))
        except Exception as exc:  # openvino raises RuntimeError subclasses with long messages
            raise BackendError(f"{model_path}: OpenVINO cannot read the model ({exc})") from exc
        quantized = is_quantized(model)
        self.requested_precision = precision
        if precision == "auto":
            precision, why = auto_precision(model_path, quantized, list(caps))
            log.info("%s: OpenVINO precision auto -> %s (%s)", model_path, precision, why)
        hint, capability = PRECISIONS[precision]
        if capability not in caps:
            raise BackendError(
                f"{model_path}: precision {precision} is not supported by OpenVINO device {device} "
                f"({core.get_property(device, 'FULL_DEVICE_NAME')}: {', '.join(caps)})")
        if precision != "fp32" and require_check:
            require_precision_check(model_path, precision)
        if precision == "int8" and not quantized:
            raise BackendError(f"{model_path}: precision int8 needs a quantized model; make one with "
                               f"`edge-inspector quantize {model_path} --data DATASET`")
        if len(model.inputs) != 1:
            raise BackendError(f"{model_path}: expected exactly one input, found {len(model.inputs)}")
        # CPU only by default: on a GPU/NPU a second (latency) compilation costs seconds and device memory
        default = default_streams(threads) if family == "CPU" else 1
        self.streams = default if streams is None else max(1, int(streams))
        config: dict[str, str] = {"INFERENCE_PRECISION_HINT": hint}
        if self.streams > 1:
            config.update(PERFORMANCE_HINT="THROUGHPUT", NUM_STREAMS=str(self.streams))
        else:
            config["PERFORMANCE_HINT"] = "LATENCY"
        if threads and family == "CPU":
            config["INFERENCE_NUM_THREADS"] = str(threads)
        cache = Path(cache_dir) if cache_dir else default_cache_dir(model_path)
        try:
            cache.mkdir(parents=True, exist_ok=True)
            probe = cache / f".write-test-{os.getpid()}"
            probe.touch()
            probe.unlink()
            config["CACHE_DIR"] = str(cache)
            self.cache_dir: Path | None = cache
        except OSError as exc:
            log.warning("%s: OpenVINO model cache %s not writable (%s); compiling without a cache",
                        model_path, cache, exc.strerror or exc)
            self.cache_dir = None
        # with streams every request carries one frame (``submit``): fixed at batch 1, the plugin picks
        # kernels for the known shape (AMX Xeon, bf16: feature memory 175 -> 204 frames/s, classifier
        # 432 -> 461). One stream runs the daemon's whole batches and keeps the dynamic axis, compiled
        # from the path so the cache key is the file (a cached restart skips reading it too).
        source = single_frame(model) if self.streams > 1 else None
        source = source if source is not None else str(model_path)
        try:
            self.compiled = core.compile_model(source, device, config)
            # a lone frame (a live camera between parts) gets every thread on one stream, not one thread
            self._latency = self.compiled if self.streams == 1 else core.compile_model(
                source, device,
                {**{k: v for k, v in config.items() if k != "NUM_STREAMS"}, "PERFORMANCE_HINT": "LATENCY"})
        except Exception as exc:  # noqa: BLE001
            raise BackendError(f"{model_path}: OpenVINO cannot compile the model for {device} "
                               f"at {precision} ({exc})") from exc
        self.device, self.precision, self.quantized = device, precision, quantized
        self.version = ov.__version__.split("-")[0]
        self.input_shape = [d.get_length() if d.is_static else -1 for d in model.inputs[0].get_partial_shape()]
        self.output_names = [output_name(out) for out in self.compiled.outputs]
        self._request = self._latency.create_infer_request()
        self._idle: list = []  # stream requests not in use (``_start_streams``)
        self.requests_created = 0
        self._lock = threading.Lock()
        self.execution_devices = list(self.compiled.get_property("EXECUTION_DEVICES"))

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        return self.submit(batch).result()

    def submit(self, batch: np.ndarray) -> Pending:
        """Start ``batch`` and return at once; ``result()`` waits for it (``base.submit`` says why).

        A lone frame (or ``streams: 1``) runs on the latency compilation right here, so its result is
        ready when this returns."""
        data = np.ascontiguousarray(batch, dtype=np.float32)
        if self.streams == 1 or len(data) == 1:
            with self._lock:  # one latency request: the infer stage and a reload's warm-up take turns
                results = self._request.infer({0: data}, share_inputs=True, share_outputs=False)
                return Finished({name: np.asarray(results[out], dtype=np.float32)
                                 for name, out in zip(self.output_names, self._latency.outputs, strict=True)})
        return self._start_streams(data)

    def _start_streams(self, data: np.ndarray) -> _StreamRun:
        """One request per frame, all started at once (the plugin runs ``streams`` of them at a time).

        Why requests without a completion callback (``AsyncInferQueue``): a callback runs on the
        plugin's stream thread and needs the GIL, so a stream sat idle while the decode, decide and
        publish threads held it; waiting on each request from the infer thread keeps the streams in
        native code. Measured on 2 shared cores, batch 8, bf16: classifier 8.57 -> 8.11 CPU ms and
        7.09 -> 6.53 ms wall per frame, feature memory 10.71 -> 10.34 and 9.35 -> 8.52 (median of 6).
        Requests come from a free list, so a second batch can start while the first is collected.
        """
        with self._lock:
            while len(self._idle) < len(data):
                self._idle.append(self.compiled.create_infer_request())
                self.requests_created += 1
            requests = [self._idle.pop() for _ in range(len(data))]
        for i, request in enumerate(requests):  # views of the batch: no copy (it stays referenced below)
            request.start_async({0: data[i:i + 1]}, share_inputs=True)
        return _StreamRun(self, requests, data)

    def _collect(self, run: _StreamRun) -> dict[str, np.ndarray]:
        try:
            parts = []
            for request in run.requests:
                request.wait()
                parts.append([request.get_output_tensor(k).data for k in range(len(self.output_names))])
            # concatenate copies out of the requests' buffers, which their next frame overwrites
            return {name: np.concatenate([p[k] for p in parts]).astype(np.float32, copy=False)
                    for k, name in enumerate(self.output_names)}
        finally:
            with self._lock:
                self._idle.extend(run.requests)

    def describe(self) -> str:
        auto = " (auto)" if self.requested_precision == "auto" else ""
        return f"openvino {self.version} ({self.device} {self.precision}{auto})"
