"""anomalib import: a model built here in anomalib's export layout (no anomalib install) is imported
through the CLI, checked on samples, and then runs end to end in the real daemon."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge_inspector.card import load_card
from edge_inspector.cli import main
from edge_inspector.inference import LoadedModel
from edge_inspector.toolchain.anomalib_import import IMAGENET_MEAN, IMAGENET_STD
from tests.fixtures.models import make_frame, write_frames
from tests.lineops.util import run_daemon, write_config


def build_anomalib_onnx(path: Path, size: int = 32, expects_imagenet: bool = False, input_name: str = "input",
                        dynamic: bool = False) -> Path:
    """anomalib's export layout: input [N,3,H,W]; pred_score [N,1] = max of the map; pred_label bool;
    anomaly_map [N,1,H,W] = per-pixel brightness; pred_mask bool. Scores are 'normalised' (0.5 threshold).

    ``expects_imagenet``: the graph takes ImageNet-normalised input and undoes it (x * std + mean) first,
    like an export without the normalisation inside.
    """
    nodes, inits = [], []
    x = input_name
    if expects_imagenet:
        inits += [numpy_helper.from_array(np.array(IMAGENET_STD, np.float32).reshape(1, 3, 1, 1), "s"),
                  numpy_helper.from_array(np.array(IMAGENET_MEAN, np.float32).reshape(1, 3, 1, 1), "m")]
        nodes += [helper.make_node("Mul", [x, "s"], ["xs"]), helper.make_node("Add", ["xs", "m"], ["pixels"])]
        x = "pixels"
    inits.append(numpy_helper.from_array(np.array(0.5, np.float32), "half"))
    nodes += [
        helper.make_node("ReduceMean", [x], ["anomaly_map"], axes=[1], keepdims=1),
        helper.make_node("ReduceMax", ["anomaly_map"], ["pred_score"], axes=[2, 3], keepdims=0),
        helper.make_node("GreaterOrEqual", ["pred_score", "half"], ["pred_label"]),
        helper.make_node("GreaterOrEqual", ["anomaly_map", "half"], ["pred_mask"]),
    ]
    hw = ["H", "W"] if dynamic else [size, size]
    graph = helper.make_graph(
        nodes, "anomalib_like", [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", 3, *hw])],
        [helper.make_tensor_value_info("pred_score", TensorProto.FLOAT, ["N", 1]),
         helper.make_tensor_value_info("pred_label", TensorProto.BOOL, ["N", 1]),
         helper.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, ["N", 1, *hw]),
         helper.make_tensor_value_info("pred_mask", TensorProto.BOOL, ["N", 1, *hw])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture
def samples(tmp_path) -> Path:
    return write_frames(tmp_path / "samples", n=4, defect_every=2)


@pytest.mark.parametrize("normalization", ["none", "imagenet"])
def test_import_then_daemon_runs_it_end_to_end(tmp_path, samples, normalization):
    src = build_anomalib_onnx(tmp_path / "model.onnx", expects_imagenet=normalization == "imagenet")
    models = tmp_path / "models"
    assert main(["import-anomalib", str(src), "--samples", str(samples), "--input-normalization", normalization,
                 "--name", "padim-test", "--out", str(models)]) == 0
    card = load_card(models / "padim-test.card.json")
    assert card.kind == "anomalib" and card.input.height == 32
    assert card.extra["anomalib"]["input_normalization"] == normalization
    check = card.extra["import_check"]
    assert check["n_samples"] == 4 and check["label_agreement"] == 1.0
    assert check["scores"][1] == pytest.approx(1.0) and check["scores"][0] < 0.2  # sample 1 carries the square
    # the same scores through the daemon's inference path, [0,1] input whatever the export expected
    model = LoadedModel.load(models / "padim-test.card.json")
    res = model.predict([make_frame(False), make_frame(True)])
    assert not res[0].is_defect and res[1].is_defect
    # end to end in the daemon: a replay, verdicts in a JSONL file, regions from the anomaly map
    replay = write_frames(tmp_path / "replay", n=6, defect_every=3)
    cfg = write_config(tmp_path / "config.yaml", replay=replay, models=f"- path: {models}/padim-test.card.json",
                       publishers=f"- {{type: jsonl, path: {tmp_path}/v.jsonl}}")
    run_daemon(cfg)
    verdicts = sorted((json.loads(line) for line in (tmp_path / "v.jsonl").read_text().splitlines()),
                      key=lambda v: v["frame"])
    assert [v["verdict"] for v in verdicts] == ["ok", "ok", "defect"] * 2
    assert verdicts[2]["models"][0]["name"] == "padim-test" and verdicts[2]["regions"]
    r = verdicts[2]["regions"][0]  # the white square is at 12..52 of the 64 px frame
    assert abs(r["x"] - 12) <= 3 and abs(r["w"] - 40) <= 4


def test_input_named_image_and_dynamic_size(tmp_path, samples):
    src = build_anomalib_onnx(tmp_path / "m.onnx", input_name="image", dynamic=True)
    out = tmp_path / "models"
    assert main(["import-anomalib", str(src), "--samples", str(samples), "--input-normalization", "inside",
                 "--out", str(out)]) == 1  # dynamic size without --input-size
    assert not list(out.glob("*.card.json"))
    assert main(["import-anomalib", str(src), "--samples", str(samples), "--input-normalization", "inside",
                 "--out", str(out), "--input-size", "48"]) == 0
    card = load_card(out / "m.card.json")
    assert (card.input.height, card.input.width) == (48, 48)
    assert LoadedModel.load(out / "m.card.json").predict([make_frame(True)])[0].is_defect


def test_raw_scores_with_a_given_threshold(tmp_path, samples):
    src = build_anomalib_onnx(tmp_path / "raw.onnx")
    out = tmp_path / "models"
    assert main(["import-anomalib", str(src), "--samples", str(samples), "--input-normalization", "none",
                 "--out", str(out), "--threshold", "0.1", "--score-min", "0", "--score-max", "1"]) == 0
    model = LoadedModel.load(out / "raw.card.json")
    assert model.card.normalization.threshold == 0.1
    assert model.predict([make_frame(False)])[0].is_defect  # brightness ~0.12 > raw threshold 0.1


def test_not_an_anomalib_export_is_refused_with_the_file_named(tmp_path, samples, detector_card, capsys):
    onnx_path = detector_card.parent / "tiny-classifier.onnx"  # outputs pred_score + type_probs but map missing
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    assert main(["import-anomalib", str(bad), "--samples", str(samples), "--input-normalization", "none",
                 "--out", str(tmp_path / "o")]) == 1
    assert "bad.onnx: not an ONNX model" in capsys.readouterr().err
    g = onnx.load(str(onnx_path))
    g.graph.output.pop(0)  # drop pred_score
    onnx.save(g, str(tmp_path / "nopred.onnx"))
    assert main(["import-anomalib", str(tmp_path / "nopred.onnx"), "--samples", str(samples),
                 "--input-normalization", "none", "--out", str(tmp_path / "o")]) == 1
    assert "nopred.onnx: no output 'pred_score'" in capsys.readouterr().err


ANOMALIB_LIKE = Path(__file__).with_name("data") / "anomalib_like_b2_dynamic_hw.onnx"


def test_fixed_batch_dynamic_size_export_imports_and_matches_the_original(tmp_path, capsys):
    """What anomalib 2.7's exporter gave the integrators: input [2, 3, 'height', 'width'], the
    pre-processor's Resize to 224x224 inside, the batch of 2 baked into Reshape/Resize constants
    (tests/lineops/data/make_anomalib_like.py). The import finds 224x224 itself, runs any
    number of frames in padded chunks of 2 inside the graph, and scores exactly like the original."""
    import onnxruntime as ort

    samples = write_frames(tmp_path / "samples", n=5, defect_every=2, size=96)  # 5: not a multiple of 2
    out = tmp_path / "models"
    assert main(["import-anomalib", str(ANOMALIB_LIKE), "--samples", str(samples), "--input-normalization",
                 "inside", "--name", "patchcore-b2", "--out", str(out)]) == 0, capsys.readouterr().out
    printed = capsys.readouterr().out
    assert "fixed batch of 2" in printed and "224x224" in printed, printed
    card = load_card(out / "patchcore-b2.card.json")
    assert (card.input.height, card.input.width) == (224, 224)
    assert card.extra["anomalib"]["fixed_batch"] == 2 and card.extra["import_check"]["n_samples"] == 5
    model = LoadedModel.load(out / "patchcore-b2.card.json")
    frames = [make_frame(i % 2 == 1, size=96, seed=i) for i in range(3)]
    ours = model.predict(frames)
    original = ort.InferenceSession(str(ANOMALIB_LIKE))
    batch = model.preprocess(frames)  # 3 frames: chunks [0, 1] and [2, 2 (padding)]
    expected = np.concatenate([original.run(["pred_score"], {"input": batch[0:2]})[0],
                               original.run(["pred_score"], {"input": batch[[2, 2]]})[0][:1]])
    assert [r.raw_score for r in ours] == pytest.approx(expected.tolist(), abs=1e-5)
    assert ours[0].raw_map.shape == (224, 224)
    # and the daemon runs it on a replay
    replay = write_frames(tmp_path / "replay", n=3, defect_every=2, size=96)
    cfg = write_config(tmp_path / "config.yaml", replay=replay, models=f"- path: {out}/patchcore-b2.card.json",
                       publishers=f"- {{type: jsonl, path: {tmp_path}/v.jsonl}}")
    run_daemon(cfg)
    assert len((tmp_path / "v.jsonl").read_text().splitlines()) == 3

