"""Review capture in the real daemon: the band and the quota are respected, files land in the dataset
layout the readers take, and ``train --include-review`` merges them."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from edge_inspector.data.readers import load_dataset
from edge_inspector.data.review import merge_review
from edge_inspector.lineops.review import ReviewCapture, ReviewConfig
from edge_inspector.messages import Verdict
from tests.lineops.util import metric, run_daemon, score_of, write_config, write_levels

# scores (brightness + 0.2): 26 -> 0.30, 70 -> 0.47 (ok, in band), 80 -> 0.51 (defect, in band), 140 -> 0.75
LEVELS = [26] * 3 + [70] * 2 + [80] * 2 + [140] * 2 + [70] * 2


def test_band_and_quota_in_the_daemon(tmp_path, detector_card):
    assert abs(score_of(70) - 0.5) < 0.05 and abs(score_of(80) - 0.5) < 0.05 and abs(score_of(140) - 0.5) > 0.05
    replay = write_levels(tmp_path / "replay", LEVELS)
    review = tmp_path / "review"
    cfg = write_config(tmp_path / "config.yaml", replay=replay, models=f"- path: {detector_card}",
                       extra=f"review: {{enabled: true, dir: {review}, band: 0.05, max_frames: 4}}\n")
    daemon = run_daemon(cfg)
    normal = sorted(p.name for p in (review / "normal").iterdir())
    defects = sorted(p.name for p in (review / "anomaly" / "unknown").iterdir())
    # in band: frames 3, 4 (ok), 5, 6 (defect), 9, 10 (ok); the quota of 4 keeps the first four
    assert normal == ["cam1_00000003.png", "cam1_00000004.png"]
    assert defects == ["cam1_00000005.png", "cam1_00000006.png"]
    with open(review / "review.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["frame"]) for r in rows] == [3, 4, 5, 6]
    assert all(abs(float(r["score"]) - 0.5) <= 0.05 and r["reason"] == "band" for r in rows)
    assert rows[2]["verdict"] == "defect" and rows[2]["file"] == "anomaly/unknown/cam1_00000005.png"
    assert metric(daemon, "edge_inspector_review_frames_total", reason="band") == 4
    assert metric(daemon, "edge_inspector_review_skipped_total") == 2
    # the readers take the folder as a plain dataset
    ds = load_dataset(review, scheme="stratified")
    assert sorted((s.label, s.defect_type) for s in ds.samples) == [(0, "good")] * 2 + [(1, "unknown")] * 2


def test_a_restart_counts_existing_frames_against_the_quota(tmp_path):
    cfg = ReviewConfig(enabled=True, dir=tmp_path / "r", band=0.5, max_frames=3, recent_frames=4)
    crop = np.full((8, 8, 3), 40, np.uint8)

    def verdict(i: int, score: float) -> Verdict:
        return Verdict(line="l", camera="c", frame=i, captured_at="t", verdict="defect" if score >= 0.5 else "ok",
                       score=score)

    first = ReviewCapture(cfg)
    assert first.observe(verdict(0, 0.45), crop) == "band"
    assert first.observe(verdict(1, 0.55), crop) == "band"
    again = ReviewCapture(cfg)
    assert again.saved == 2
    assert again.observe(verdict(2, 0.5), crop) == "band"
    assert again.observe(verdict(3, 0.5), crop) is None and again.skipped == 1


def test_operator_flag_saves_a_recent_frame_with_the_given_label(tmp_path):
    cap = ReviewCapture(ReviewConfig(enabled=True, dir=tmp_path / "r", band=0.0, recent_frames=2))
    crop = np.full((8, 8, 3), 40, np.uint8)
    for i in range(3):
        v = Verdict(line="l", camera="c", frame=i, captured_at="t", verdict="ok", score=0.1)
        assert cap.observe(v, crop) is None  # far from the threshold: not saved by the band
    assert not cap.flag("c", 0, "scratch")  # fell out of the 2 recent frames
    assert cap.flag("c", 2, "scratch")
    assert (tmp_path / "r" / "anomaly" / "scratch" / "c_00000002.png").is_file()
    assert cap.flag("c", 1, "ok") and (tmp_path / "r" / "normal" / "c_00000001.png").is_file()


@pytest.mark.parametrize("classifier", [False, True])
def test_merge_review_adds_reviewed_frames(tmp_path, demo_dataset, classifier):
    review = tmp_path / "review"
    write_levels(review / "normal", [26, 30])
    write_levels(review / "anomaly" / "scratch", [200])
    base = load_dataset(demo_dataset)
    merged = merge_review(base, review, classifier=classifier)
    added = merged.samples[len(base.samples):]
    assert len(added) == 3
    assert sorted((s.label, s.split) for s in added) == [(0, "train"), (0, "train"),
                                                         (1, "train" if classifier else "test")]
    assert merged.split_info["review_frames"] == 3


def test_train_accepts_include_review():
    from edge_inspector.cli import build_parser

    args = build_parser().parse_args(["train", "data", "--include-review", "review"])
    assert str(args.include_review) == "review"


def test_operator_flag_over_mqtt_in_the_daemon(tmp_path, detector_card, mosquitto, mqtt_subscriber):
    import json
    import time

    import paho.mqtt.publish as mqtt_publish

    from edge_inspector.runtime.daemon import Daemon

    replay = write_levels(tmp_path / "replay", [26] * 6)  # all far from the threshold: nothing in the band
    review = tmp_path / "review"
    cfg = write_config(tmp_path / "config.yaml", replay=replay, models=f"- path: {detector_card}",
                       publishers=f"- {{type: mqtt, host: {mosquitto.host}, port: {mosquitto.port}, "
                                  f"spool_dir: {tmp_path}/spool, client_id: review-flag}}",
                       extra=f"review: {{enabled: true, dir: {review}, band: 0.01}}\n")
    verdicts = mqtt_subscriber("edge-inspector/line1/cam1/verdict")
    daemon = Daemon(cfg)
    daemon.start()
    try:
        verdicts.wait_for(6)
        flags = daemon.pipeline.generation.ops.flags
        deadline = time.monotonic() + 10
        while not flags.client.is_connected() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # the SUBSCRIBE follows the CONNACK
        for payload in (b"not json", json.dumps({"frame": 4, "label": "scratch"}), json.dumps({"frame": 1})):
            mqtt_publish.single("edge-inspector/line1/cam1/flag", payload, qos=1, hostname=mosquitto.host,
                                port=mosquitto.port)
        target = review / "anomaly" / "scratch" / "cam1_00000004.png"
        while not (target.is_file() and flags.flagged == 2) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert target.is_file() and (review / "normal" / "cam1_00000001.png").is_file()
        assert flags.flagged == 2  # the malformed flag was ignored
    finally:
        daemon.shutdown()
    assert daemon.pipeline.generation.ops.flags is None
    rows = list(csv.DictReader(open(review / "review.csv", newline="")))
    assert [(r["frame"], r["reason"]) for r in rows] == [("4", "flagged"), ("1", "flagged")]
