"""Model-card integrity (issue 14 item 8, red-team F8), against real ONNX files and ONNX Runtime.

1. external weights (``weights.bin``) must be covered by the card's sha256s;
2. ``model_file`` must stay inside the card's folder;
3. the input size and the batch memory are capped with a clear error.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge_inspector.card import CardError, ModelCard, external_data_digests, load_card, sha256_file
from edge_inspector.inference import LoadedModel
from tests.fixtures.models import make_frame, make_model

REPO = Path(__file__).resolve().parents[1]


def _external_weight_model(folder: Path, gain: float = 1.0) -> Path:
    """pred_score = mean(image) * gain, anomaly_map = channel mean * gain; ``gain`` lives in weights.bin."""
    folder.mkdir(parents=True, exist_ok=True)
    gain_t = numpy_helper.from_array(np.full((1,), gain, np.float32), "gain")
    nodes = [helper.make_node("ReduceMean", ["image"], ["m"], axes=[1, 2, 3], keepdims=0),
             helper.make_node("Mul", ["m", "gain"], ["pred_score"]),
             helper.make_node("ReduceMean", ["image"], ["c"], axes=[1], keepdims=0),
             helper.make_node("Mul", ["c", "gain"], ["anomaly_map"])]
    graph = helper.make_graph(nodes, "ext", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                                           ["N", 3, 32, 32])],
                              [helper.make_tensor_value_info("pred_score", TensorProto.FLOAT, ["N"]),
                               helper.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, ["N", 32, 32])],
                              initializer=[gain_t])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = folder / "ext.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)
    assert (folder / "weights.bin").is_file()
    card = json.loads((make_model(folder / "tmp", name="ext")).read_text())
    card.update(model_file="ext.onnx", model_sha256=sha256_file(path))
    (folder / "ext.card.json").write_text(json.dumps(card))
    return folder / "ext.card.json"


def test_replaced_external_weights_are_refused(tmp_path):
    """Red team F8.1: weights.bin overwritten, card sha256 of model.onnx only: check-config rc 0, every
    verdict changed (all defect, score 1.0)."""
    card_path = _external_weight_model(tmp_path / "m")
    with pytest.raises(CardError, match=r"loads external data 'weights.bin', which ext.card.json does not cover"):
        load_card(card_path)

    # The writer's way: list every external file with its sha256; then the model loads and scores.
    data = json.loads(card_path.read_text())
    data["external_data"] = external_data_digests(card_path.with_name("ext.onnx"))
    card_path.write_text(json.dumps(data))
    model = LoadedModel.load(card_path)
    dark = make_frame(False, 32)
    honest = model.predict([dark])[0].score
    assert honest < 0.5

    # The attack: same model file, new weights (gain 100). Refused by sha256, not scored.
    tampered = tmp_path / "t"
    _external_weight_model(tampered, gain=100.0)
    (tmp_path / "m" / "weights.bin").write_bytes((tampered / "weights.bin").read_bytes())
    with pytest.raises(CardError, match=r"weights.bin: sha256 .* does not match"):
        LoadedModel.load(card_path)


@pytest.mark.parametrize("model_file", ["../../../../../../etc/passwd", "/etc/passwd", "sub/../../x.onnx",
                                        "..\\x.onnx", "C:/x.onnx"])
def test_model_file_outside_the_card_folder_is_refused(tmp_path, model_file):
    """Red team F8.2: model_file ../../../../../../etc/passwd made check-config open and hash /etc/passwd."""
    card_path = make_model(tmp_path, name="m")
    data = json.loads(card_path.read_text())
    data["model_file"] = model_file
    card_path.write_text(json.dumps(data))
    with pytest.raises(CardError, match=r"model_file .*expected a file name inside the card's folder") as err:
        load_card(card_path)
    assert "sha256" not in str(err.value)  # nothing was opened or hashed


def test_external_data_keys_are_confined():
    with pytest.raises(ValueError, match="external_data"):
        ModelCard.model_validate({**json.loads(ModelCard(
            name="x", kind="feature_memory", model_file="x.onnx", model_sha256="0",
            input={"height": 8, "width": 8}, normalization={"threshold": 0.5, "min": 0, "max": 1},
        ).model_dump_json(by_alias=True)), "external_data": {"../w.bin": "0"}})


def test_huge_input_size_is_refused_by_check_config(tmp_path):
    """Red team F8.3: a dynamic-shape model with a 12000x12000 card passed check-config; 5 frames took
    18.8 s at 6.9 GB RSS. check-config (the real CLI) must refuse it with the reason."""
    card_path = make_model(tmp_path / "models", name="big")
    data = json.loads(card_path.read_text())
    data["input"].update(height=12000, width=12000)
    card_path.write_text(json.dumps(data))
    with pytest.raises(CardError, match=r"12000x12000 = 144000000 pixels exceeds the limit of 16777216 pixels"):
        load_card(card_path)
    config = tmp_path / "config.yaml"
    config.write_text(f"line: l\ncameras:\n  - {{id: cam-0, source: {{type: folder, path: {tmp_path}}}}}\n"
                      f"models:\n  - {{path: {card_path}}}\npublishers:\n  - {{type: jsonl, path: v.jsonl}}\n"
                      "metrics: {enabled: false}\n")
    done = subprocess.run([sys.executable, "-m", "edge_inspector", "check-config", str(config)], capture_output=True,
                          text=True, cwd=REPO, timeout=120)
    assert done.returncode != 0
    assert "exceeds the limit of 16777216 pixels" in done.stdout + done.stderr


def test_batch_memory_is_capped_by_chunking(tmp_path, monkeypatch):
    """However many frames wait, one ONNX Runtime call gets at most EDGE_INSPECTOR_MAX_BATCH_MB of input."""
    model = LoadedModel.load(make_model(tmp_path, name="m", size=64))
    frames = [make_frame(i % 2 == 1, 64, seed=i) for i in range(7)]
    whole = [r.score for r in model.predict(frames)]
    calls = []
    real_run = model.backend.run

    def spy(batch):
        calls.append(len(batch))
        return real_run(batch)

    monkeypatch.setattr(model.backend, "run", spy)
    monkeypatch.setenv("EDGE_INSPECTOR_MAX_BATCH_MB", "1")  # 1 MiB / (3*64*64*4 B) = 21 frames
    assert model.max_batch == 21
    monkeypatch.setattr("edge_inspector.inference.max_batch_bytes", lambda: 3 * 64 * 64 * 4 * 3)
    assert model.max_batch == 3
    chunked = [r.score for r in model.run_batch(model.preprocess(frames))]
    assert calls == [3, 3, 1]
    assert chunked == pytest.approx(whole)
    calls.clear()
    assert [r.score for r in model.predict(frames)] == pytest.approx(whole) and calls == [3, 3, 1]


def test_frame_over_the_batch_memory_limit_is_a_clear_error(tmp_path, monkeypatch):
    from edge_inspector.backends import BackendError

    card = make_model(tmp_path, name="m", size=64)
    monkeypatch.setattr("edge_inspector.inference.max_batch_bytes", lambda: 3 * 64 * 64 * 4 - 1)
    with pytest.raises(BackendError, match=r"one 64x64 frame is a 0.0 MiB input tensor, over the batch memory limit"):
        LoadedModel.load(card)
