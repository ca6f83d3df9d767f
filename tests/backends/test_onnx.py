"""The ONNX Runtime backend on real ONNX files: a batch spread over single-threaded streams gives the
outputs of one multi-threaded run, in frame order."""

from __future__ import annotations

import numpy as np

from edge_inspector.backends.onnx import OnnxBackend
from edge_inspector.config import parse_config
from edge_inspector.inference import LoadedModel
from tests.fixtures.models import make_frame


def test_streams_spread_a_batch_and_keep_frame_order(detector_card, tmp_path):
    one = LoadedModel.load(detector_card, threads=2, streams=1)
    two = LoadedModel.load(detector_card, threads=2)
    assert isinstance(two.backend, OnnxBackend)
    assert one.backend.streams == 1 and two.backend.streams == 2  # the default: one stream per thread
    images = [make_frame(i % 3 == 0, 64, seed=i) for i in range(7)]
    a, b = one.predict(images), two.predict(images)
    assert len({round(r.raw_score, 4) for r in a}) > 3  # frames differ, so a reordering would show
    for x, y in zip(a, b, strict=True):
        assert abs(x.raw_score - y.raw_score) <= 1e-5 * max(1.0, abs(x.raw_score))
        assert np.max(np.abs(x.raw_map - y.raw_map)) <= 1e-4
    assert [r.is_defect for r in a] == [r.is_defect for r in b]
    lone = two.predict(images[:1])[0]  # the session with every thread
    assert abs(lone.raw_score - a[0].raw_score) <= 1e-5 * max(1.0, abs(a[0].raw_score))


def test_streams_come_from_the_model_config(detector_card, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"line: l\ncameras:\n  - id: cam-0\n    source: {{type: replay, path: {tmp_path}}}\n"
                   f"models:\n  - {{path: {detector_card}, threads: 2, streams: 1}}\n"
                   f"publishers:\n  - {{type: jsonl, path: {tmp_path}/v.jsonl}}\n")
    mcfg = parse_config(cfg.read_text(), str(cfg), base=tmp_path).models[0]
    assert mcfg.backend_options() == {"streams": 1}
    model = LoadedModel.load(mcfg.path, backend=mcfg.backend, threads=mcfg.threads, **mcfg.backend_options())
    assert model.backend.streams == 1 and model.backend._pool is None
