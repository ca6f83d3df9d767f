"""JSONL sink on real files: one valid verdict per line, rotation, failures counted after close."""

from __future__ import annotations

import json

from edge_inspector.messages import Verdict
from edge_inspector.metrics import Metrics
from edge_inspector.publishers import JsonlConfig, create_publisher

from .util import make_verdict, sample


def test_lines_are_verdicts(tmp_path):
    m = Metrics()
    path = tmp_path / "sub" / "verdicts.jsonl"
    pub = create_publisher(JsonlConfig(path=path, fsync=True), line="line1", metrics=m)
    for i in range(3):
        pub.publish(make_verdict(i, verdict="defect" if i == 1 else "ok"))
    # flushed per message: readable before close
    lines = path.read_text().splitlines()
    assert len(lines) == 3
    parsed = [Verdict.model_validate_json(x) for x in lines]
    assert [v.frame for v in parsed] == [0, 1, 2]
    assert json.loads(lines[1])["verdict"] == "defect" and json.loads(lines[1])["schema"] == 1
    pub.close()
    pub.close()  # idempotent
    pub.publish(make_verdict(9))
    assert sample(m, "edge_inspector_publish_failures_total", {"sink": "jsonl"}) == 1
    assert len(path.read_text().splitlines()) == 3


def test_rotation_keeps_n_files(tmp_path):
    m = Metrics()
    path = tmp_path / "v.jsonl"
    one = len(make_verdict(0).to_json()) + 1
    cfg = JsonlConfig(path=path, rotate_size_mb=(one * 2.5) / (1024 * 1024), rotate_keep=2)
    pub = create_publisher(cfg, line="line1", metrics=m)
    for i in range(10):
        pub.publish(make_verdict(i))
    pub.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["v.jsonl", "v.jsonl.1", "v.jsonl.2"]
    frames = []
    for name in ["v.jsonl.2", "v.jsonl.1", "v.jsonl"]:
        frames += [Verdict.model_validate_json(x).frame for x in (tmp_path / name).read_text().splitlines()]
    assert frames == list(range(10 - len(frames), 10))  # newest kept, in order, none duplicated
    assert all(len((tmp_path / n).read_text().splitlines()) <= 2 for n in files)
