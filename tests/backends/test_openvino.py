"""The OpenVINO backend against ONNX Runtime on real ONNX files, and in a real daemon replay.

Tolerance (documented in edge_inspector/backends/openvino.py and docs): fp32 normalised scores and
maps within 1e-4 of ONNX Runtime; the same ok/defect verdict on every frame.
"""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest

from edge_inspector.backends import BackendError
from edge_inspector.config import parse_config
from edge_inspector.inference import LoadedModel
from edge_inspector.runtime.daemon import Daemon, StartupError, load_models
from tests.fixtures.conv_models import make_conv_model
from tests.fixtures.models import make_frame, write_frames
from tests.runtime.test_daemon import DaemonProc, read_jsonl, wait_until

pytest.importorskip("openvino", reason="the [openvino] extra is not installed")

FP32_TOL = 1e-4


@pytest.fixture(scope="module")
def conv_card(tmp_path_factory):
    return make_conv_model(tmp_path_factory.mktemp("conv"), size=64)


def _batch(n: int = 5) -> list[np.ndarray]:
    return [make_frame(i % 2 == 1, 64, seed=i) for i in range(n)]


@pytest.mark.parametrize("which", ["detector_card", "classifier_card", "conv_card"])
def test_fp32_parity_with_onnxruntime(which, request, tmp_path):
    card = request.getfixturevalue(which)
    ort_model = LoadedModel.load(card, threads=1)
    ov_model = LoadedModel.load(card, backend="openvino", threads=1, cache_dir=tmp_path / "cache")
    assert ov_model.backend.describe().startswith("openvino ") and "CPU fp32" in ov_model.backend.describe()
    images = _batch()
    for a, b in zip(ort_model.predict(images), ov_model.predict(images), strict=True):
        assert abs(a.score - b.score) <= FP32_TOL
        assert a.is_defect == b.is_defect
        if a.anomaly_map is not None:
            assert np.max(np.abs(a.anomaly_map - b.anomaly_map)) <= FP32_TOL
        if a.type_probs is not None:
            assert a.defect_type == b.defect_type
            assert np.max(np.abs(a.type_probs - b.type_probs)) <= FP32_TOL
    # batch 1 and batch 5 through the same compiled model agree (dynamic batch axis)
    single = ov_model.predict(images[:1])[0]
    assert abs(single.score - ov_model.predict(images)[0].score) <= 1e-6


def test_compiled_model_cache_makes_the_second_load_reuse_it(conv_card, tmp_path):
    cache = tmp_path / "ov-cache"
    first = LoadedModel.load(conv_card, backend="openvino", cache_dir=cache)
    blobs = sorted(cache.glob("*.blob"))
    assert blobs, "OpenVINO wrote no compiled model into the cache folder"
    mtimes = [b.stat().st_mtime_ns for b in blobs]
    second = LoadedModel.load(conv_card, backend="openvino", cache_dir=cache)
    assert sorted(cache.glob("*.blob")) == blobs and [b.stat().st_mtime_ns for b in blobs] == mtimes
    x = np.random.default_rng(0).uniform(0, 1, (2, 3, 64, 64)).astype(np.float32)
    assert np.allclose(first.backend.run(x)["pred_score"], second.backend.run(x)["pred_score"])


def test_unwritable_cache_is_a_warning_not_a_failure(conv_card, tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    with caplog.at_level(logging.WARNING, logger="edge_inspector.backends.openvino"):
        model = LoadedModel.load(conv_card, backend="openvino", cache_dir=blocker / "cache")
    assert model.backend.cache_dir is None
    assert "not writable" in caplog.text


@pytest.mark.parametrize(("options", "expected"), [
    ({"device": "NPU"}, "OpenVINO device 'NPU' is not available here (available: CPU"),
    ({"precision": "fp16"}, "precision fp16 is not supported by OpenVINO device CPU"),
    ({"precision": "int8"}, "precision int8 needs a quantized model"),
    ({"precision": "bf16"}, "precision bf16 was never checked for accuracy on this model"),
])
def test_unavailable_device_or_precision_is_a_clear_error(conv_card, tmp_path, options, expected):
    import openvino as ov

    if options.get("precision") == "fp16" and "FP16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        pytest.skip("this CPU has fp16 kernels")
    if options.get("device") == "NPU" and "NPU" in ov.Core().available_devices:
        pytest.skip("this machine has an NPU")
    if options.get("precision") == "int8":
        options = {**options, "require_check": False}
    if options.get("precision") == "bf16" and not _cpu_has_bf16():
        expected = "precision bf16 is not supported by OpenVINO device CPU"  # the device is checked first
    with pytest.raises(BackendError) as err:
        LoadedModel.load(conv_card, backend="openvino", cache_dir=tmp_path / "c", **options)
    assert expected in str(err.value)
    assert "conv-detector.onnx" in str(err.value)


def _config(tmp_path, card, frames, *, backend: str = "openvino", extra_model: str = "", name: str = "config.yaml"):
    path = tmp_path / name
    path.write_text(
        f"line: l\ncameras:\n  - id: cam-0\n    source: {{type: replay, path: {frames}}}\n"
        f"models:\n  - {{path: {card}, backend: {backend}, threads: 1, cache_dir: {tmp_path}/ov{extra_model}}}\n"
        f"publishers:\n  - {{type: jsonl, path: {tmp_path}/{name}.jsonl}}\nmetrics: {{enabled: false}}\n")
    return path


def test_bad_device_fails_check_config_and_daemon_start(conv_card, tmp_path):
    frames = write_frames(tmp_path / "rec", n=2)
    cfg = _config(tmp_path, conv_card, frames, extra_model=", device: GPU.3")
    problems = load_models(parse_config(cfg.read_text(), str(cfg), base=tmp_path))[1]
    assert len(problems) == 1 and problems[0].startswith("models[0]")
    assert "OpenVINO device 'GPU.3' is not available here" in problems[0]
    with pytest.raises(StartupError, match="GPU.3"):
        Daemon(cfg).start()
    check = DaemonProc(["check-config", str(cfg)], tmp_path)
    assert check.wait(60) != 0
    assert "OpenVINO device 'GPU.3' is not available here" in check.output()


def test_config_rejects_a_gpu_index_for_openvino(conv_card, tmp_path):
    from edge_inspector.config import ConfigError

    cfg = _config(tmp_path, conv_card, tmp_path, extra_model=", device: 1")
    with pytest.raises(ConfigError, match="openvino expects a device name"):
        parse_config(cfg.read_text(), str(cfg), base=tmp_path)


def test_daemon_replay_openvino_gives_the_verdicts_of_onnxruntime(conv_card, tmp_path):
    frames = write_frames(tmp_path / "rec", n=12, defect_every=3)
    out = {}
    for backend in ("onnxruntime", "openvino"):
        cfg = _config(tmp_path, conv_card, frames, backend=backend, name=f"{backend}.yaml")
        proc = DaemonProc(["replay", str(frames), "--config", str(cfg)], tmp_path)
        assert proc.wait(90) == 0, proc.output()[-3000:]
        out[backend] = read_jsonl(tmp_path / f"{backend}.yaml.jsonl")
    ort, ov = out["onnxruntime"], out["openvino"]
    assert [v["frame"] for v in ov] == list(range(12))
    assert [v["verdict"] for v in ov] == [v["verdict"] for v in ort]
    assert [v["verdict"] for v in ov].count("defect") == 4
    for a, b in zip(ort, ov, strict=True):
        assert abs(a["score"] - b["score"]) <= FP32_TOL


def test_reload_to_an_unavailable_device_is_refused_and_the_old_model_keeps_running(conv_card, tmp_path, caplog):
    level = logging.getLogger("edge_inspector").level  # the daemon applies logging.level; restore it after
    frames = write_frames(tmp_path / "rec", n=4)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        f"line: l\ncameras:\n  - id: cam-0\n    source: {{type: replay, path: {frames}, rate_fps: 20, loop: true}}\n"
        f"models:\n  - {{path: {conv_card}, backend: openvino, cache_dir: {tmp_path}/ov}}\n"
        f"publishers:\n  - {{type: jsonl, path: {tmp_path}/v.jsonl}}\nmetrics: {{enabled: false}}\n")
    daemon = Daemon(cfg)
    daemon.start()
    runner = threading.Thread(target=lambda: setattr(daemon, "code", daemon.run()))
    runner.start()
    try:
        wait_until(lambda: len(read_jsonl(tmp_path / "v.jsonl")) >= 2, what="first verdicts")
        cfg.write_text(cfg.read_text().replace("backend: openvino,", "backend: openvino, device: NPU.7,"))
        with caplog.at_level(logging.ERROR, logger="edge_inspector"):
            daemon.reload_requested = True
            daemon.wake.set()
            wait_until(lambda: "reload refused" in caplog.text, what="reload refused")
        assert "OpenVINO device 'NPU.7' is not available here" in caplog.text
        assert daemon.generation_number == 1
        n = len(read_jsonl(tmp_path / "v.jsonl"))
        wait_until(lambda: len(read_jsonl(tmp_path / "v.jsonl")) >= n + 3, what="verdicts after the refusal")
    finally:
        daemon.stop_requested = True
        daemon.wake.set()
        runner.join(20)
        logging.getLogger("edge_inspector").setLevel(level)
    assert daemon.code == 0


def _cpu_has_bf16() -> bool:
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def test_precision_check_is_read_from_a_card_named_unlike_its_model(tmp_path):
    if not _cpu_has_bf16():
        pytest.skip("this CPU has no bf16 kernels: the device refuses bf16 before any card is read")
    card = make_conv_model(tmp_path, name="conv-detector")
    renamed = tmp_path / "line-3-detector.card.json"
    card.rename(renamed)
    with pytest.raises(BackendError, match="never checked for accuracy") as err:
        LoadedModel.load(renamed, backend="openvino", precision="bf16", cache_dir=tmp_path / "c")
    assert str(renamed) in str(err.value)


def test_precision_auto_stays_fp32_without_a_passing_check_and_rejects_other_backends(tmp_path):
    """``precision: auto`` (the openvino default) never reduces precision on a model nobody measured."""
    from edge_inspector.config import ConfigError

    card = make_conv_model(tmp_path, name="conv-auto")
    model = LoadedModel.load(card, backend="openvino", precision="auto", cache_dir=tmp_path / "c")
    assert model.backend.precision == "fp32" and model.backend.describe().endswith("CPU fp32 (auto))")
    frames = write_frames(tmp_path / "rec", n=2)
    cfg = _config(tmp_path, card, frames)  # no precision given
    assert parse_config(cfg.read_text(), str(cfg), base=tmp_path).models[0].backend_options()["precision"] == "auto"
    bad = _config(tmp_path, card, frames, backend="onnxruntime", extra_model=", precision: auto", name="bad.yaml")
    with pytest.raises(ConfigError, match="precision: auto is for backend openvino"):
        parse_config(bad.read_text(), str(bad), base=tmp_path)


def test_streams_spread_a_batch_and_keep_frame_order(detector_card, tmp_path):
    """Two single-threaded streams, one frame per request: the same outputs, in the frame order."""
    one = LoadedModel.load(detector_card, backend="openvino", threads=2, streams=1, cache_dir=tmp_path / "c")
    two = LoadedModel.load(detector_card, backend="openvino", threads=2, cache_dir=tmp_path / "c")
    assert one.backend.streams == 1 and two.backend.streams == 2  # the default: one stream per thread
    assert two.backend.compiled.get_property("NUM_STREAMS") == 2
    images = [make_frame(i % 3 == 0, 64, seed=i) for i in range(7)]
    a, b = one.predict(images), two.predict(images)
    assert [r.is_defect for r in a] == [r.is_defect for r in b] and any(r.is_defect for r in a)
    for x, y in zip(a, b, strict=True):
        assert abs(x.raw_score - y.raw_score) <= 1e-5 * max(1.0, abs(x.raw_score))
        assert np.max(np.abs(x.raw_map - y.raw_map)) <= 1e-4
    again = two.run_batch(one.preprocess(images[4:]))  # a smaller batch reuses the first requests
    assert [r.raw_score for r in again] == [r.raw_score for r in b[4:]]
    assert two.backend.requests_created == 7  # one request per frame of the largest batch, reused
    single = two.predict(images[:1])[0]  # a lone frame: the LATENCY compilation
    assert abs(single.raw_score - a[0].raw_score) <= 1e-5 * max(1.0, abs(a[0].raw_score))
    cfg = _config(tmp_path, detector_card, tmp_path, extra_model=", streams: 1")
    assert parse_config(cfg.read_text(), str(cfg), base=tmp_path).models[0].backend_options()["streams"] == 1


def test_stream_compilations_have_a_static_batch_of_one(detector_card, tmp_path):
    """Stream requests always carry one frame, so those compilations are fixed at batch 1 (oneDNN
    picks kernels for the known shape: measured 7-20 % more frames/s on an AMX Xeon); one stream
    runs the daemon's whole batches and keeps the dynamic batch axis."""
    two = LoadedModel.load(detector_card, backend="openvino", threads=2, cache_dir=tmp_path / "c")
    one = LoadedModel.load(detector_card, backend="openvino", threads=2, streams=1, cache_dir=tmp_path / "c")
    for compiled in (two.backend.compiled, two.backend._latency):
        shape = compiled.inputs[0].get_partial_shape()
        assert shape.is_static and shape[0].get_length() == 1
    assert one.backend.compiled.inputs[0].get_partial_shape()[0].is_dynamic
    images = [make_frame(i % 2 == 0, 64, seed=i) for i in range(5)]
    for x, y in zip(one.predict(images), two.predict(images), strict=True):
        assert abs(x.raw_score - y.raw_score) <= 1e-5 * max(1.0, abs(x.raw_score))
    again = LoadedModel.load(detector_card, backend="openvino", threads=2, cache_dir=tmp_path / "c")
    assert again.predict(images[:2])[1].raw_score == two.predict(images[:2])[1].raw_score


def test_infer_stage_starts_the_next_batch_before_collecting_the_last(conv_card, tmp_path):
    """Streams (OpenVINO requests, ONNX Runtime's stream threads) with a backlog: batch k+1 is started
    before batch k is collected, and the verdicts still come in frame order, the same on both."""
    import time

    from edge_inspector.metrics import Metrics
    from edge_inspector.runtime.daemon import build_generation
    from edge_inspector.runtime.pipeline import Pipeline

    frames = write_frames(tmp_path / "rec", n=40, defect_every=3)
    out, overlapped = {}, {}
    for backend in ("onnxruntime", "openvino"):
        cache = f", cache_dir: {tmp_path}/ov" if backend == "openvino" else ""
        cfg = parse_config(
            f"line: l\ncameras:\n  - {{id: cam-0, source: {{type: replay, path: {frames}}}, queue_size: 64}}\n"
            f"models:\n  - {{path: {conv_card}, backend: {backend}, threads: 2{cache}}}\n"
            f"inference: {{batch_max: 4, queue_size: 64}}\n"
            f"publishers:\n  - {{type: jsonl, path: {tmp_path}/{backend}.jsonl}}\nmetrics: {{enabled: false}}\n",
            base=tmp_path)
        metrics = Metrics()
        pipe = Pipeline(build_generation(cfg, 1, metrics), metrics)
        pipe.add_camera(cfg.cameras[0])
        lane = pipe.lanes["cam-0"]
        lane.preprocessor.start()  # the frames wait for inference before it starts: a backlog
        lane.grabber.start()
        deadline = time.monotonic() + 20
        while pipe.infer_q.qsize() < 40 and time.monotonic() < deadline:
            time.sleep(0.01)
        for stage in pipe.stages:
            stage.start()
        deadline = time.monotonic() + 30
        while pipe.counters["published"] < 40 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert pipe.drain(10)
        pipe.close_publishers()
        out[backend] = read_jsonl(tmp_path / f"{backend}.jsonl")
        overlapped[backend] = pipe.stages[0].overlapped
    ort, ov = out["onnxruntime"], out["openvino"]
    assert [v["frame"] for v in ov] == list(range(40)) == [v["frame"] for v in ort]
    assert [v["verdict"] for v in ov] == [v["verdict"] for v in ort]
    assert [v["verdict"] for v in ov].count("defect") == 13
    for a, b in zip(ort, ov, strict=True):
        assert abs(a["score"] - b["score"]) <= FP32_TOL
    assert min(overlapped.values()) >= 5  # 10 batches of 4, nearly all started while the one before ran
