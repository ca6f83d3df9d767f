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

What anomalib's own exporter produces under torch's dynamo exporter is handled too (integrators'
check, 2026-12): an input ``[2, 3, 'height', 'width']`` -- a *fixed* batch (the example batch of
the export) and a dynamic size, with that batch baked into the graph's Reshape/Resize constants,
so no other batch size runs. The size is taken from ``--input-size``, the export's metadata, or the
model's own pre-processor (a Resize with constant sizes on the input: anomalib's 224x224); the
fixed batch is kept and the graph is wrapped in an ONNX ``Loop`` that pads any batch to a multiple
of it and runs it chunk by chunk (:func:`wrap_fixed_batch`), so the stored model has the dynamic
batch of our contract and scores exactly as the original does chunk by chunk.

The card is written only after a check on sample images through the daemon's own inference path:
every output present, finite scores, a map of sane shape; the sample figures go into the card, so a
later reader can see what the import looked at.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..card import InputSpec, ModelCard, ScoreNormalization, card_path_for, sha256_file
from ..errors import EdgeInspectorError

InputNormalization = Literal["inside", "imagenet", "none"]
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
ANOMALIB_OUTPUTS = ("pred_score", "pred_label", "anomaly_map", "pred_mask")


class AnomalibImportError(EdgeInspectorError, ValueError):
    """The file is not an anomalib export we can run, or it failed the sample check."""


@dataclass
class ImportResult:
    card_path: Path
    sample_scores: list[float]
    label_agreement: float | None  # share of samples where pred_label == (score >= threshold)
    notes: list[str] = field(default_factory=list)  # what the import decided for the user (size, batch)


@dataclass(frozen=True)
class InputLayout:
    """The export's image input as the import resolved it."""

    name: str
    height: int
    width: int
    fixed_batch: int | None  # the batch the graph is built for, None when dynamic
    size_from: str  # "model", "--input-size", "metadata", "the model's own pre-processor (Resize)"


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in value.type.tensor_type.shape.dim]


def _constants(g: onnx.GraphProto) -> dict[str, np.ndarray]:
    out = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    for node in g.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            out[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return out


def preprocessor_size(model: onnx.ModelProto, input_name: str) -> tuple[int, int] | None:
    """H, W of a Resize with constant ``sizes`` applied to the input itself (anomalib's pre-processor)."""
    consts = _constants(model.graph)
    for node in model.graph.node:
        if node.op_type == "Resize" and node.input and node.input[0] == input_name and len(node.input) >= 4:
            sizes = consts.get(node.input[3]) if node.input[3] else None
            if sizes is not None and sizes.size == 4 and int(sizes[2]) > 0 and int(sizes[3]) > 0:
                return int(sizes[2]), int(sizes[3])
    return None


def metadata_size(model: onnx.ModelProto) -> tuple[int, int] | None:
    """An input size the exporter wrote into the ONNX metadata (``input_size``/``image_size``, e.g. "224x224")."""
    import re

    for prop in model.metadata_props:
        if prop.key.lower() in ("input_size", "image_size"):
            numbers = [int(x) for x in re.findall(r"\d+", prop.value)]
            if len(numbers) == 1:
                return numbers[0], numbers[0]
            if len(numbers) >= 2:
                return numbers[-2], numbers[-1]
    return None


def inspect_model(model: onnx.ModelProto, path: Path, input_size: tuple[int, int] | None) -> InputLayout:
    """The image input's name, size and batch; AnomalibImportError naming the file when not anomalib's layout."""
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
    batch = dims[0] if isinstance(dims[0], int) and dims[0] > 0 else None
    h, w = dims[2], dims[3]
    size_from = "model"
    if input_size is not None:
        if isinstance(h, int) and isinstance(w, int) and (h, w) != tuple(input_size):
            raise AnomalibImportError(f"{path}: --input-size {input_size[0]}x{input_size[1]} but the model input "
                                      f"is {h}x{w}")
        (h, w), size_from = input_size, "--input-size"
    if not (isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0):
        found = metadata_size(model)
        if found is not None:
            (h, w), size_from = found, "the export's metadata"
        elif (found := preprocessor_size(model, inputs[0].name)) is not None:
            (h, w), size_from = found, "the model's own pre-processor (Resize)"
        else:
            raise AnomalibImportError(f"{path}: input size is dynamic ({dims}) and the export does not say which "
                                      "size it was trained at; give it with --input-size HxW")
    return InputLayout(inputs[0].name, int(h), int(w), batch, size_from)


def wrap_fixed_batch(model: onnx.ModelProto, layout: InputLayout, path: Path) -> onnx.ModelProto:
    """Run a graph built for a fixed batch B on any batch N: pad N up to a multiple of B (repeating the
    last frame), loop over the chunks of B with the original graph as the Loop body, concatenate and cut
    the outputs back to N. Everything stays inside the ONNX file, so every runtime gets a dynamic batch."""
    b = layout.fixed_batch
    assert b is not None
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 13:
        raise AnomalibImportError(f"{path}: fixed batch {b} in an opset {opset} graph; re-export with opset >= 13 "
                                  "or with a dynamic batch axis (torch.onnx.export(..., dynamic_axes={'input': "
                                  "{0: 'batch'}}) / dynamic_shapes)")
    g = model.graph
    produced = {o for n in g.node for o in n.output if o}
    rename = {x: f"ei_body/{x}" for x in produced}

    def inner(x: str) -> str:
        if x == layout.name:
            return "ei_chunk"
        return rename.get(x, x)

    body_nodes = [
        helper.make_node("Mul", ["ei_iter", "ei_batch"], ["ei_start"]),
        helper.make_node("Add", ["ei_start", "ei_batch"], ["ei_end"]),
        helper.make_node("Unsqueeze", ["ei_start", "ei_axis0"], ["ei_starts"]),
        helper.make_node("Unsqueeze", ["ei_end", "ei_axis0"], ["ei_ends"]),
        helper.make_node("Slice", ["ei_padded", "ei_starts", "ei_ends", "ei_axis0"], ["ei_chunk"]),
    ]
    for node in g.node:
        new = onnx.NodeProto()
        new.CopyFrom(node)
        new.input[:] = [inner(x) if x else x for x in node.input]
        new.output[:] = [rename.get(x, x) if x else x for x in node.output]
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            raise AnomalibImportError(f"{path}: fixed batch {b} with control flow ({node.op_type}) inside; re-export "
                                      "with a dynamic batch axis")
        body_nodes.append(new)
    body_nodes.append(helper.make_node("Identity", ["ei_cond_in"], ["ei_cond_out"]))
    out_types = {o.name: o.type.tensor_type.elem_type for o in g.output}
    out_dims = {o.name: _dims(o) for o in g.output}
    body = helper.make_graph(
        body_nodes, "fixed_batch_chunk",
        [helper.make_tensor_value_info("ei_iter", TensorProto.INT64, []),
         helper.make_tensor_value_info("ei_cond_in", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("ei_cond_out", TensorProto.BOOL, [])]
        + [helper.make_tensor_value_info(rename.get(o, o), out_types[o], None) for o in out_types])
    consts = [numpy_helper.from_array(np.array(b, np.int64), "ei_batch"),
              numpy_helper.from_array(np.array(b - 1, np.int64), "ei_batch_minus_1"),
              numpy_helper.from_array(np.array(0, np.int64), "ei_zero"),
              numpy_helper.from_array(np.array([0], np.int64), "ei_axis0"),
              numpy_helper.from_array(np.array([2], np.int64), "ei_two"),
              numpy_helper.from_array(np.array([np.iinfo(np.int64).max], np.int64), "ei_end_all"),
              numpy_helper.from_array(np.array([-1], np.int64), "ei_minus_1"),
              numpy_helper.from_array(np.zeros(4, np.int64), "ei_zeros4"),
              numpy_helper.from_array(np.zeros(3, np.int64), "ei_zeros3")]
    x = layout.name
    outer = [
        helper.make_node("Shape", [x], ["ei_shape"]),
        helper.make_node("Gather", ["ei_shape", "ei_zero"], ["ei_n"], axis=0),
        helper.make_node("Add", ["ei_n", "ei_batch_minus_1"], ["ei_n_up"]),
        helper.make_node("Div", ["ei_n_up", "ei_batch"], ["ei_iters"]),
        helper.make_node("Mul", ["ei_iters", "ei_batch"], ["ei_padded_n"]),
        helper.make_node("Sub", ["ei_padded_n", "ei_n"], ["ei_pad"]),
        helper.make_node("Unsqueeze", ["ei_pad", "ei_axis0"], ["ei_pad1"]),
        helper.make_node("Concat", ["ei_zeros4", "ei_pad1", "ei_zeros3"], ["ei_pads"], axis=0),
        helper.make_node("Pad", [x, "ei_pads"], ["ei_padded"], mode="edge"),
        helper.make_node("Unsqueeze", ["ei_n", "ei_axis0"], ["ei_n1"]),
        helper.make_node("Loop", ["ei_iters", ""], [f"ei_stacked/{o}" for o in out_types], body=body),
    ]
    for o in out_types:
        outer += [
            helper.make_node("Shape", [f"ei_stacked/{o}"], [f"ei_shape/{o}"]),
            helper.make_node("Slice", [f"ei_shape/{o}", "ei_two", "ei_end_all"], [f"ei_rest/{o}"]),
            helper.make_node("Concat", ["ei_minus_1", f"ei_rest/{o}"], [f"ei_flat_shape/{o}"], axis=0),
            helper.make_node("Reshape", [f"ei_stacked/{o}", f"ei_flat_shape/{o}"], [f"ei_flat/{o}"]),
            # the first N rows: starts [0] (ei_axis0 doubles as it), ends [N], axes [0]
            helper.make_node("Slice", [f"ei_flat/{o}", "ei_axis0", "ei_n1", "ei_axis0"], [o]),
        ]
    new_graph = helper.make_graph(
        outer, g.name or "anomalib", [helper.make_tensor_value_info(x, TensorProto.FLOAT,
                                                                     ["N", 3, layout.height, layout.width])],
        [helper.make_tensor_value_info(o, out_types[o], ["N", *[d if isinstance(d, int) else None
                                                                for d in out_dims[o][1:]]])
         for o in out_types],
        initializer=list(g.initializer) + consts)
    wrapped = helper.make_model(new_graph, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    wrapped.metadata_props.extend(model.metadata_props)
    return wrapped


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
    from ..inference import LoadedModel  # the daemon's own path checks the import

    source = Path(source)
    if not source.is_file():
        raise AnomalibImportError(f"{source}: model file not found")
    if not samples:
        raise AnomalibImportError("no sample images: the import checks the model on at least one")
    try:
        model = onnx.load(str(source))
    except Exception as exc:  # noqa: BLE001 - onnx raises several unrelated types for a bad file
        raise AnomalibImportError(f"{source}: not an ONNX model ({exc})") from exc
    layout = inspect_model(model, source, input_size)
    input_name, h, w = layout.name, layout.height, layout.width
    notes = []
    if layout.size_from != "model":
        notes.append(f"input size {h}x{w} from {layout.size_from}")
    if layout.fixed_batch is not None:
        model = wrap_fixed_batch(model, layout, source)
        notes.append(f"the export has a fixed batch of {layout.fixed_batch}: any batch now runs in padded chunks "
                     f"of {layout.fixed_batch} inside the graph")
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
                                "source_file": source.name, "source_sha256": sha256_file(source),
                                "fixed_batch": layout.fixed_batch, "input_size_from": layout.size_from}},
        )
        card.save(card_path_for(tmp_onnx))
        result = check_samples(LoadedModel.load(card_path_for(tmp_onnx), threads=1), samples, source)
        card.extra["import_check"] = result
        card.save(card_path_for(tmp_onnx))
        shutil.move(str(tmp_onnx), onnx_path)
        shutil.move(str(card_path_for(tmp_onnx)), card_path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return ImportResult(card_path, result["scores"], result["label_agreement"], notes)


def check_samples(model, samples: list[np.ndarray], source: Path) -> dict:
    """Run the imported model on the samples; AnomalibImportError when its outputs are unusable."""
    from ..backends import BackendError

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
