"""JSONL sink on real files: one valid verdict per line, rotation, failures counted after close."""

from __future__ import annotations

import json
from pathlib import Path

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


def test_a_full_disk_counts_each_failure_logs_once_and_leaves_no_garbled_line(tmp_path, caplog):
    """F7: on a full disk every failed verdict is counted, the ERROR line comes at most once per 10 s,
    and a partly written line is cut off, so the file stays valid JSON lines after space returns."""
    import logging
    import os
    import subprocess

    m = Metrics()
    with caplog.at_level(logging.ERROR, logger="edge_inspector.publishers.jsonl"):
        pub = create_publisher(JsonlConfig(path=Path("/dev/full")), line="l", metrics=m)  # every write: ENOSPC
        for i in range(50):
            pub.publish(make_verdict(i))
        pub.close()
    assert sample(m, "edge_inspector_publish_failures_total", {"sink": "jsonl"}) == 50
    assert len([r for r in caplog.records if "writing /dev/full failed" in r.getMessage()]) == 1

    disk = tmp_path / "small"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)],
                                           capture_output=True).returncode != 0:
        return  # the partial-line part needs root for a tiny tmpfs
    try:
        m = Metrics()
        pub = create_publisher(JsonlConfig(path=disk / "v.jsonl"), line="l", metrics=m)
        for i in range(200):  # ~200 lines of ~250 bytes: more than 64 kB
            pub.publish(make_verdict(i))
        failed = sample(m, "edge_inspector_publish_failures_total", {"sink": "jsonl"})
        assert failed > 0
        lines = (disk / "v.jsonl").read_bytes().splitlines(keepends=True)
        assert all(ln.endswith(b"\n") for ln in lines)
        assert [json.loads(ln)["frame"] for ln in lines] == list(range(len(lines)))  # no garbled line
        assert len(lines) + failed == 200
        pub.close()
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
