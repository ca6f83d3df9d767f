"""Tiny real ONNX models (built with onnx.helper, no torch) and a tiny generated dataset on disk.

Helpers, importable by other test folders (tests/toolchain/test_auto.py). The "detector" outputs the
per-pixel channel mean as its anomaly map and the map's maximum as its score, so bright squares
(the generated defects) are found and the figures are predictable. The "classifier" adds a type
head: softmax over the image's mean R, G, B, so red and blue defects are told apart by colour.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
from onnx import TensorProto, helper

from edge_inspector.card import InputSpec, ModelCard, ScoreNormalization, sha256_file
from edge_inspector.data.types import Sample

SIZE = 32


def _save(model: onnx.ModelProto, out_dir: Path, name: str, kind: str, classes: list[str],
          norm: ScoreNormalization) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx.checker.check_model(model)
    model_path = out_dir / f"{name}.onnx"
    onnx.save(model, str(model_path))
    outputs = {o.name: o.name for o in model.graph.output}
    card = ModelCard(name=name, kind=kind, model_file=model_path.name, model_sha256=sha256_file(model_path),
                     input=InputSpec(height=SIZE, width=SIZE), outputs=outputs, classes=classes,
                     normalization=norm)
    return card.save(out_dir / f"{name}.card.json")


def build_detector(out_dir: Path, name: str = "tiny-detector", pool: int = 1, gain: float = 1.0,
                   span: float = 1.0) -> Path:
    """image -> anomaly_map = gain * mean over channels (optionally average-pooled) -> pred_score = max.

    ``span`` < 1 narrows the card's normalisation so that normalised scores clip at 0 and 1.
    """
    nodes = [helper.make_node("ReduceMean", ["image"], ["m4"], axes=[1], keepdims=1)]
    src = "m4"
    if pool > 1:
        nodes.append(helper.make_node("AveragePool", ["m4"], ["p4"], kernel_shape=[pool, pool], strides=[pool, pool]))
        src = "p4"
    nodes += [
        helper.make_node("Mul", [src, "gain"], ["g4"]),
        helper.make_node("Squeeze", ["g4", "axis1"], ["anomaly_map"]),
        helper.make_node("ReduceMax", ["anomaly_map"], ["pred_score"], axes=[1, 2], keepdims=0),
    ]
    h = SIZE // pool
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("pred_score", TensorProto.FLOAT, ["N"]),
         helper.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, ["N", h, h])],
        [helper.make_tensor("gain", TensorProto.FLOAT, [], [gain]),
         helper.make_tensor("axis1", TensorProto.INT64, [1], [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    norm = ScoreNormalization(threshold=0.5 * gain, min=(0.5 - span / 2) * gain, max=(0.5 + span / 2) * gain,
                              method="fixed for tests")
    return _save(model, out_dir, name, "feature_memory", [], norm)


def build_classifier(out_dir: Path, name: str = "tiny-classifier") -> Path:
    """image -> pred_score = max brightness; type_probs = softmax(40 * (mean R, mean G, mean B))."""
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["bright"], axes=[1], keepdims=0),
        helper.make_node("ReduceMax", ["bright"], ["pred_score"], axes=[1, 2], keepdims=0),
        helper.make_node("ReduceMean", ["image"], ["rgb"], axes=[2, 3], keepdims=0),
        helper.make_node("Mul", ["rgb", "k"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["type_probs"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("pred_score", TensorProto.FLOAT, ["N"]),
         helper.make_tensor_value_info("type_probs", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor("k", TensorProto.FLOAT, [], [40.0])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    norm = ScoreNormalization(threshold=0.5, min=0.0, max=1.0, method="fixed for tests")
    return _save(model, out_dir, name, "classifier", ["red", "green", "blue"], norm)


def make_samples(root: Path, *, n_good: int = 8, n_red: int = 4, n_blue: int = 4, seed: int = 0,
                 split: str = "test", hard: bool = True) -> list[Sample]:
    """Grey parts; defects are 6x6 bright squares (red or blue tint) with exact masks.

    With ``hard``: one good part carries an unmasked bright spot (a false positive for the detector)
    and one red defect is faint (a false negative), so galleries and rates are not trivially perfect.
    """
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    samples = []
    kinds = ["good"] * n_good + ["red"] * n_red + ["blue"] * n_blue
    for i, kind in enumerate(kinds):
        im = np.full((SIZE, SIZE, 3), 60, np.uint8) + rng.integers(0, 10, (SIZE, SIZE, 3), dtype=np.uint8)
        mask = np.zeros((SIZE, SIZE), np.uint8)
        y, x = rng.integers(2, SIZE - 8, 2)
        if kind != "good":
            faint = hard and kind == "red" and i == n_good
            colour = (200, 220, 255) if kind == "red" else (255, 220, 200)  # BGR
            if faint:
                colour = (90, 90, 110)
            im[y:y + 6, x:x + 6] = colour
            mask[y:y + 6, x:x + 6] = 255
        elif hard and i == 0:
            im[y:y + 4, x:x + 4] = 230
        path = root / f"{split}_{i:03d}_{kind}.png"
        cv2.imwrite(str(path), im)
        mask_path = None
        if kind != "good":
            mask_path = root / f"{split}_{i:03d}_{kind}_mask.png"
            cv2.imwrite(str(mask_path), mask)
        samples.append(Sample(path=path, label=int(kind != "good"), defect_type=kind, mask_path=mask_path,
                              split=split))
    return samples
