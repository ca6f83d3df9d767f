"""Import of ONNX models exported by anomalib, so the daemon runs them like its own.

anomalib's ONNX export has one float input [N, 3, H, W] (RGB, [0, 1]) and the outputs
``pred_score`` ([N] or [N, 1]), ``pred_label``, ``anomaly_map`` ([N, 1, H, W]) and ``pred_mask``.
Whether the ImageNet mean/std normalisation is inside the graph depends on how it was exported, and
the file does not say, so the user tells us (``input_normalization``):

* ``inside``   the graph normalises itself: it takes [0, 1] pixels as our contract wants;
* ``imagenet`` the graph expects ImageNet-normalised input: we prepend ``(x - mean) / std`` so the
               stored model takes [0, 1] pixels (the contract: normalisation inside the graph);
* ``none``     the graph takes [0, 1] pixels and normalises nothing.

The input is renamed to ``image`` (the contract's name) and every anomalib output is kept, so
``pred_label``/``pred_mask`` remain available to anyone reading the file. Scores: anomalib usually
exports normalised scores (threshold 0.5, range [0, 1]), which map 1:1 onto our card; for a model
exported with raw scores the user gives the raw threshold and range.

The card is written only after a check on sample images through the daemon's own inference path:
every output present, finite scores, a map of sane shape; the sample figures go into the card, so a
later reader can see what the import looked at.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .card import InputSpec, ModelCard, ScoreNormalization, card_path_for, sha256_file

InputNormalization = Literal["inside", "imagenet", "none"]
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
ANOMALIB_OUTPUTS = ("pred_score", "pred_label", "anomaly_map", "pred_mask")


class AnomalibImportError(ValueError):
    """The file is not an anomalib export we can run, or it failed the sample check."""


@dataclass
class ImportResult:
    card_path: Path
    sample_scores: list[float]
    label_agreement: float | None  # share of samples where pred_label == (score >= threshold)


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in value.type.tensor_type.shape.dim]


def inspect_model(model: onnx.ModelProto, path: Path, input_size: tuple[int, int] | None) -> tuple[str, int, int]:
    """(input name, H, W); AnomalibImportError naming the file when the layout is not anomalib's."""
    g = model.graph
    initializers = {i.name for i in g.initializer}
    inputs = [i for i in g.input if i.name not in initializers]
    if len(inputs) != 1:
        raise AnomalibImportError(f"{path}: expected one image input, found {[i.name for i in inputs]}")
    outputs = [o.name for o in g.output]
    if "pred_score" not in outputs:
        raise AnomalibImportError(f"{path}: no output 'pred_score' (outputs: {outputs}); expected anomalib's "
                                  f"{list(ANOMALIB_OUTPUTS)}")
    dims = _dims(inputs[0])
    if len(dims) != 4 or (isinstance(dims[1], int) and dims[1] != 3):
        raise AnomalibImportError(f"{path}: input {inputs[0].name!r} has shape {dims}; expected [N, 3, H, W]")
    h, w = dims[2], dims[3]
    if input_size is not None:
        if isinstance(h, int) and isinstance(w, int) and (h, w) != tuple(input_size):
            raise AnomalibImportError(f"{path}: --input-size {input_size[0]}x{input_size[1]} but the model input "
                                      f"is {h}x{w}")
        h, w = input_size
    if not (isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0):
        raise AnomalibImportError(f"{path}: input size is dynamic ({dims}); give it with --input-size HxW")
    return inputs[0].name, h, w


def adapt_graph(model: onnx.ModelProto, input_name: str, normalization: InputNormalization,
                h: int, w: int) -> onnx.ModelProto:
    """Rename the input to ``image`` ([N,3,H,W] float, [0,1]); prepend ImageNet normalisation if asked."""
    g = model.graph
    inner = input_name
    if input_name == "image":  # free the name: the graph's own input becomes an internal tensor
        inner = "anomalib_input"
        for node in g.node:
            node.input[:] = [inner if x == "image" else x for x in node.input]
        for out in g.output:
            if out.name == "image":
                raise AnomalibImportError("the graph outputs its input 'image'; not an anomalib model")
    old = next(i for i in g.input if i.name == input_name)
    g.input.remove(old)
    g.input.insert(0, helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, h, w]))
    if normalization == "imagenet":
        mean = numpy_helper.from_array(np.array(IMAGENET_MEAN, np.float32).reshape(1, 3, 1, 1), "import_mean")
        std = numpy_helper.from_array(np.array(IMAGENET_STD, np.float32).reshape(1, 3, 1, 1), "import_std")
        g.initializer.extend([mean, std])
        new = [helper.make_node("Sub", ["image", "import_mean"], ["import_centered"]),
               helper.make_node("Div", ["import_centered", "import_std"], [inner])]
    else:
        new = [helper.make_node("Identity", ["image"], [inner])]
    for i, node in enumerate(new):
        g.node.insert(i, node)
    return model


def import_anomalib(source: Path, out_dir: Path, *, name: str | None, samples: list[np.ndarray],
                    input_normalization: InputNormalization, threshold: float | None = None,
                    score_min: float | None = None, score_max: float | None = None,
                    input_size: tuple[int, int] | None = None, version: str = "1") -> ImportResult:
    """Adapt ``source``, write ``<out_dir>/<name>.onnx`` + card after the sample check; return the result.

    ``threshold``/``score_min``/``score_max``: raw score threshold and range when the export's
    scores are not normalised (None: anomalib's normalised scores, threshold 0.5 in [0, 1]).
    """
    from .inference import LoadedModel  # the daemon's own path checks the import

    source = Path(source)
    if not source.is_file():
        raise AnomalibImportError(f"{source}: model file not found")
    if not samples:
        raise AnomalibImportError("no sample images: the import checks the model on at least one")
    try:
        model = onnx.load(str(source))
    except Exception as exc:  # noqa: BLE001 - onnx raises several unrelated types for a bad file
        raise AnomalibImportError(f"{source}: not an ONNX model ({exc})") from exc
    input_name, h, w = inspect_model(model, source, input_size)
    model = adapt_graph(model, input_name, input_normalization, h, w)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise AnomalibImportError(f"{source}: adapted graph is invalid: {exc}") from exc
    if threshold is None:
        norm = ScoreNormalization(threshold=0.5, min=0.0, max=1.0, method="anomalib (normalised scores)")
    else:
        lo = score_min if score_min is not None else threshold - 0.5
        hi = score_max if score_max is not None else threshold + 0.5
        if hi <= lo:
            raise AnomalibImportError(f"score range [{lo}, {hi}] is empty; expected --score-min < --score-max")
        norm = ScoreNormalization(threshold=threshold, min=lo, max=hi, method="anomalib (raw threshold given)")
    name = name or source.stem
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / f"{name}.onnx"
    card_path = card_path_for(onnx_path)
    tmp = out_dir / f".{name}.importing"
    tmp.mkdir(exist_ok=True)
    try:
        tmp_onnx = tmp / onnx_path.name
        onnx.save(model, str(tmp_onnx))
        outputs = {o.name: "anomalib output" for o in model.graph.output}
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if input_normalization != "none" else ([0.0] * 3, [1.0] * 3)
        card = ModelCard(
            name=name, version=version, kind="anomalib", model_file=onnx_path.name,
            model_sha256=sha256_file(tmp_onnx), input=InputSpec(height=h, width=w, mean=mean, std=std),
            outputs=outputs, normalization=norm,
            extra={"anomalib": {"input_normalization": input_normalization, "original_input": input_name,
                                "source_file": source.name, "source_sha256": sha256_file(source)}},
        )
        card.save(card_path_for(tmp_onnx))
        result = check_samples(LoadedModel.load(card_path_for(tmp_onnx), threads=1), samples, source)
        card.extra["import_check"] = result
        card.save(card_path_for(tmp_onnx))
        shutil.move(str(tmp_onnx), onnx_path)
        shutil.move(str(card_path_for(tmp_onnx)), card_path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return ImportResult(card_path, result["scores"], result["label_agreement"])


def check_samples(model, samples: list[np.ndarray], source: Path) -> dict:
    """Run the imported model on the samples; AnomalibImportError when its outputs are unusable."""
    from .backends import BackendError

    batch = model.preprocess(samples)
    try:
        raw = model.backend.run(batch)
        results = model.run_batch(batch)
    except (BackendError, RuntimeError, ValueError) as exc:
        raise AnomalibImportError(f"{source}: failed on the sample images: {exc}") from exc
    scores = np.array([r.raw_score for r in results], np.float64)
    if not np.all(np.isfinite(scores)):
        raise AnomalibImportError(f"{source}: non-finite pred_score on sample images: {scores.tolist()}")
    amap = raw.get("anomaly_map")
    if amap is not None:
        amap = np.asarray(amap)
        if amap.ndim not in (3, 4) or amap.shape[0] != len(samples) or not np.all(np.isfinite(amap)):
            raise AnomalibImportError(f"{source}: anomaly_map has shape {amap.shape} or non-finite values; "
                                      f"expected [N, 1, h, w] with N = {len(samples)}")
    agreement = None
    labels = raw.get("pred_label")
    if labels is not None:
        labels = np.asarray(labels).reshape(len(samples), -1)[:, 0].astype(bool)
        ours = np.array([r.is_defect for r in results])
        agreement = float(np.mean(labels == ours))
    return {"n_samples": len(samples), "scores": [round(float(s), 6) for s in scores],
            "normalised": [round(r.score, 6) for r in results], "label_agreement": agreement,
            "outputs": sorted(raw)}
