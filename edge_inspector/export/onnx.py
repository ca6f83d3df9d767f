"""Export a detector to ONNX and prove the file scores like the torch model.

The most common complaint about exported anomaly models is that they score differently from the
trained one. Here export is never trusted: the written file is run in ONNX Runtime on real images
and compared with torch, output by output, and a mismatch is an error (the file is removed so it
cannot be deployed by mistake).
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..card import sha256_file
from ..errors import EdgeInspectorError

log = logging.getLogger(__name__)


# Differences below this are float32 rounding at unit scale (~16 ulp of 1.0), never a real disagreement:
# a probability map saturated near 0 on good parts (range ~1e-5) differs by ~1e-7 between runtimes.
ABS_FLOOR = 1e-6


class ExportParityError(EdgeInspectorError, RuntimeError):
    """The ONNX file's outputs differ from the torch model's beyond tolerance."""


@dataclass
class ExportReport:
    path: Path
    sha256: str
    opset: int
    output_names: list[str]
    seconds: float
    max_abs_diff: dict[str, float] = field(default_factory=dict)
    output_range: dict[str, float] = field(default_factory=dict)
    tolerance: float = 1e-3

    def summary(self) -> str:
        diffs = ", ".join(f"{k} {v:.2e} (range {self.output_range[k]:.3g})" for k, v in self.max_abs_diff.items())
        return f"{self.path} (opset {self.opset}, {self.seconds:.1f} s): ORT vs torch max |diff|: {diffs}"


def _torch_outputs(module, batch: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    import torch

    with torch.no_grad():
        out = module(torch.from_numpy(batch))
    if not isinstance(out, (tuple, list)):
        out = (out,)
    if len(out) != len(names):
        raise ExportParityError(f"module returned {len(out)} outputs, detector declares {names}")
    return {n: o.detach().cpu().numpy() for n, o in zip(names, out, strict=True)}


def export_onnx(detector, path: Path | str, sample_batch: np.ndarray, opset: int = 17,
                tolerance: float = 1e-3) -> ExportReport:
    """Write ``detector.export_module()`` to ``path`` and check it against torch on ``sample_batch``.

    Input ``image`` float32 [N,3,H,W] RGB [0,1] with a dynamic batch axis; outputs named by
    ``detector.output_names``. Parity: for each output, max |ORT - torch| must not exceed
    ``tolerance`` times the output's range on the sample, or ``ABS_FLOOR`` (1e-6) absolute.
    Raises ExportParityError (and deletes the file) otherwise.
    """
    import onnx
    import onnxruntime as ort
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    batch = np.ascontiguousarray(sample_batch, dtype=np.float32)
    h, w = detector.input_size
    if batch.ndim != 4 or batch.shape[1:] != (3, h, w) or len(batch) == 0:
        raise ValueError(f"sample_batch must be float32 [N>=1, 3, {h}, {w}], got {batch.shape}")
    names = list(detector.output_names)
    module = detector.export_module().eval()
    started = time.perf_counter()
    dynamic = {"image": {0: "batch"}}
    dynamic.update({n: {0: "batch"} for n in names})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about fixed H/W are expected: H/W are fixed
        writer = getattr(detector, "write_onnx", None)  # graphs that are not pure torch (deep features + sklearn)
        if writer is not None:
            writer(path, batch[:1], opset)
        else:
            torch.onnx.export(module, (torch.from_numpy(batch[:1]),), str(path), input_names=["image"],
                              output_names=names, dynamic_axes=dynamic, opset_version=opset,
                              do_constant_folding=True, dynamo=False)
    onnx.checker.check_model(str(path))

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(getattr(detector, "threads", 1)))
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    ort_out = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"image": batch}), strict=True))
    ref = _torch_outputs(module, batch, names)
    report = ExportReport(path=path, sha256="", opset=opset, output_names=names,
                          seconds=time.perf_counter() - started, tolerance=tolerance)
    problems = []
    for name in names:
        a, b = ref[name], ort_out.get(name)
        if b is None or a.shape != b.shape:
            problems.append(f"{name}: torch shape {a.shape}, ONNX shape {None if b is None else b.shape}")
            continue
        span = float(a.max() - a.min()) if a.size else 0.0
        scale = max(span, float(np.abs(a).max(initial=0.0)) * 1e-3, 1e-6)
        diff = float(np.abs(a - b).max(initial=0.0))
        report.max_abs_diff[name] = diff
        report.output_range[name] = span
        if not np.isfinite(diff) or diff > max(tolerance * scale, ABS_FLOOR):
            problems.append(f"{name}: max |diff| {diff:.3g} > {tolerance:g} x range {scale:.3g}")
    if problems:
        path.unlink(missing_ok=True)
        raise ExportParityError(f"{path}: ONNX Runtime disagrees with torch on {len(batch)} images: "
                                + "; ".join(problems))
    report.sha256 = sha256_file(path)
    log.info(report.summary())
    return report


@dataclass
class ModelCheck:
    """What ``check_model`` found: output shapes and batch-size invariance of a deployed model."""

    path: Path
    n_images: int
    outputs: dict[str, list[int]]
    batch_max_diff: float
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_model(model_path: Path | str, batch: np.ndarray, threads: int = 2) -> ModelCheck:
    """Run a deployed model (card + ONNX, sha256 verified) on ``batch`` as the daemon would.

    Checks the I/O contract (``pred_score`` [N], ``anomaly_map`` [N,h,w], ``type_probs`` [N,K]
    matching the card's classes), finite outputs, and that scoring the batch at once equals
    scoring image by image (a graph that mixes images across the batch would fail here).
    """
    from ..inference import LoadedModel

    model = LoadedModel.load(model_path, threads=threads)
    n = len(batch)
    together = model.backend.run(batch)
    single = [model.backend.run(batch[i:i + 1]) for i in range(n)]
    problems: list[str] = []
    shapes = {k: list(np.asarray(v).shape) for k, v in together.items()}
    expected_rank = {"pred_score": 1, "anomaly_map": 3, "type_probs": 2}
    for name, value in together.items():
        value = np.asarray(value)
        if name in expected_rank and (value.ndim != expected_rank[name] or value.shape[0] != n):
            problems.append(f"{name}: shape {list(value.shape)}, expected rank {expected_rank[name]} with batch {n}")
        if not np.all(np.isfinite(value)):
            problems.append(f"{name}: NaN/inf in the output")
    if "type_probs" in together and model.card.classes and np.asarray(together["type_probs"]).shape[-1] != len(
            model.card.classes):
        problems.append(f"type_probs has {np.asarray(together['type_probs']).shape[-1]} columns, card lists "
                        f"{len(model.card.classes)} classes")
    diff = 0.0
    for name, value in together.items():
        stacked = np.concatenate([np.asarray(s[name]) for s in single])
        diff = max(diff, float(np.abs(stacked - np.asarray(value)).max(initial=0.0)))
    scale = max(float(np.ptp(np.asarray(together["pred_score"]))), 1e-6)
    if diff > 1e-3 * max(scale, 1.0):
        problems.append(f"batch of {n} differs from image-by-image scoring by {diff:.3g}")
    return ModelCheck(path=Path(model_path), n_images=n, outputs=shapes, batch_max_diff=diff, problems=problems)
