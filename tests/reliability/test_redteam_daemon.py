"""The red team's daemon-side findings (issue 14, ../shared/reviews/redteam-2026-12.md), each
reproduced against a real daemon process, real files, a real Mosquitto broker or real ZeroMQ sockets.

Each test is named after the finding it reproduces (F1, F2, ...); the review has the original steps.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edge_inspector.card import InputSpec, ModelCard, ScoreNormalization, card_path_for, sha256_file
from tests.fixtures.models import write_frames
from tests.reliability.helpers import DaemonProc, read_jsonl, wait_until, write_cfg


def slow_loading_detector(folder: Path, mb: int = 30, size: int = 32) -> Path:
    """The tiny detector padded with an unused ``mb`` MB initializer: hashing and parsing it make a reload
    take ~0.2 s, as a real model does, which opens the window in which two reloads overlap."""
    nodes = [helper.make_node("ReduceMean", ["image"], ["pred_score"], axes=[1, 2, 3], keepdims=0),
             helper.make_node("ReduceMean", ["image"], ["anomaly_map"], axes=[1], keepdims=0)]
    pad = numpy_helper.from_array(np.random.default_rng(0).random(mb * 262144, dtype=np.float32), "pad")
    graph = helper.make_graph(
        nodes, "slow_loading", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("pred_score", TensorProto.FLOAT, ["N"]),
         helper.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, ["N", size, size])], initializer=[pad])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "slow.onnx"
    onnx.save(model, str(path))
    card = ModelCard(
        name="slow", version="1", kind="feature_memory", model_file=path.name, model_sha256=sha256_file(path),
        input=InputSpec(height=size, width=size, mean=[0.0] * 3, std=[1.0] * 3),
        outputs={"pred_score": "mean brightness", "anomaly_map": "brightness"},
        normalization=ScoreNormalization(threshold=0.3, min=0.0, max=1.0, pixel_threshold=0.5, pixel_min=0.0,
                                         pixel_max=1.0, method="fixed (test model)"))
    return card.save(card_path_for(path))


def _hup_config(tmp_path: Path, frames: Path, model: Path, mosquitto, keepalive: int, jsonl: str) -> str:
    return f"""\
line: hup
cameras:
  - {{id: cam-0, source: {{type: replay, path: {frames}, rate_fps: 15}}}}
models:
  - {{path: {model}, threads: 1}}
publishers:
  - {{type: mqtt, host: 127.0.0.1, port: {mosquitto.port}, spool_dir: {tmp_path}/spool, keepalive: {keepalive}}}
  - {{type: jsonl, path: {tmp_path}/{jsonl}}}
inference: {{batch_max: 2}}
metrics: {{enabled: false}}
"""


def test_f1_reloads_back_to_back_never_hand_a_verdict_to_a_closed_publisher(
        tmp_path: Path, mosquitto, mqtt_subscriber) -> None:
    """F1: SIGHUPs 50 ms apart that change the mqtt section (and the JSONL path) lost verdicts, and a
    storm of valid reloads was refused ('already being handed over')."""
    detector_card = slow_loading_detector(tmp_path / "models")
    n = 120
    frames = write_frames(tmp_path / "rec", n=n, defect_every=5)
    sub = mqtt_subscriber("edge-inspector/hup/+/verdict")
    cfg = tmp_path / "config.yaml"
    write_cfg(cfg, _hup_config(tmp_path, frames, detector_card, mosquitto, 30, "a.jsonl"))
    daemon = DaemonProc(["run", "--config", str(cfg)], tmp_path)
    try:
        wait_until(lambda: len(read_jsonl(tmp_path / "a.jsonl")) >= 3, what="first verdicts", proc=daemon)
        for i in range(30):  # reloads 20-80 ms apart, each changing both sinks
            cfg.write_text(_hup_config(tmp_path, frames, detector_card, mosquitto, 31 if i % 2 == 0 else 30,
                                       "b.jsonl" if i % 2 == 0 else "a.jsonl"))
            daemon.signal(signal.SIGHUP)
            time.sleep((0.02, 0.05, 0.08)[i % 3])
        rc = daemon.wait(60)
    finally:
        daemon.kill()
    log = daemon.output()
    assert rc == 0, log[-3000:]
    assert log.count("reloaded") >= 3, "too few reloads took effect to test anything"
    assert "is closed" not in log, log[-3000:]
    assert "refused" not in log, log[-3000:]  # every config was valid: no reload may be refused
    written = read_jsonl(tmp_path / "a.jsonl") + read_jsonl(tmp_path / "b.jsonl")
    assert sorted(v["frame"] for v in written) == list(range(n))  # JSONL: every frame once
    got = sub.wait_for(n, timeout=20)
    assert sorted({json.loads(m.payload)["frame"] for m in got}) == list(range(n))  # MQTT: every frame
