"""The decode pool: frame order under out-of-order completion, reduced JPEG decoding within its
documented tolerance, ROI before resize, and a real daemon replay of JPEG frames through it."""

from __future__ import annotations

import json
import random
import time

import cv2
import numpy as np
import pytest

from edge_inspector.preprocess import decode_image, to_tensor
from edge_inspector.runtime.decodepool import (
    DecodePool,
    OrderedWork,
    jpeg_size,
    prepare,
    pyramid_levels,
    reduction_factor,
)
from tests.fixtures.models import make_frame
from tests.runtime.test_daemon import DaemonProc, read_jsonl


def _part(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A textured part with sensor noise (what a JPEG of a line camera looks like), BGR uint8."""
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.integers(40, 200, (h // 32, w // 32, 3), dtype=np.uint8), (w, h),
                      interpolation=cv2.INTER_CUBIC)
    cv2.circle(base, (w // 2, h // 2), min(h, w) // 3, (180, 180, 190), -1)
    cv2.line(base, (w // 3, h // 3), (w // 2, h // 2 + 20), (30, 30, 30), 3)
    return np.clip(base.astype(np.int16) + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


def _jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


def test_results_leave_in_submission_order_whatever_finishes_first():
    pool = DecodePool(4)
    work = OrderedWork(pool, depth=64)
    rng = random.Random(0)
    delays = [rng.uniform(0, 0.02) for _ in range(40)]
    for i, d in enumerate(delays):
        work.submit(i, lambda i=i, d=d: (time.sleep(d), i)[1])
    out = []
    while len(work):
        out += work.ready(wait=0.01)
    assert [tag for tag, _ in out] == list(range(40))
    assert [res for _, res in out] == list(range(40))
    pool.shutdown()


def test_reduction_factor_follows_the_pyramid_and_the_roi():
    assert pyramid_levels(1024, 1280, [(256, 256)]) == 2
    assert reduction_factor((1024, 1280), None, [(256, 256)], "safe") == 2
    assert reduction_factor((1024, 1280), None, [(256, 256)], "fast") == 4
    assert reduction_factor((2048, 2448), None, [(224, 224)], "fast") == 8
    assert reduction_factor((2048, 2448), None, [(224, 224)], "safe") == 4
    assert reduction_factor((2048, 2448), None, [(224, 224)], "off") == 1
    # a 400 px ROI on the big frame is only 1.8x a 224 input: never decoded smaller
    assert reduction_factor((2048, 2448), (1000, 800, 400, 400), [(224, 224)], "fast") == 1
    # the largest model input decides (two models of different sizes share the decode)
    assert reduction_factor((1024, 1280), None, [(128, 128), (600, 600)], "fast") == 1
    assert reduction_factor((1024, 1280), None, [(128, 128), (512, 512)], "fast") == 2
    assert jpeg_size(_jpeg(np.zeros((1024, 1280, 3), np.uint8))) == (1024, 1280)


@pytest.mark.parametrize(("mode", "mean_tol", "max_tol"), [("safe", 0.005, 0.1), ("fast", 0.015, 0.35)])
def test_reduced_decode_stays_within_the_documented_tolerance(mode, mean_tol, max_tol):
    image = _part(1024, 1280)
    data = _jpeg(image)
    full = to_tensor(decode_image(data), 256, 256)
    prepared = prepare(None, data, None, [(256, 256)], mode)
    assert prepared.error is None and prepared.factor == (2 if mode == "safe" else 4)
    assert prepared.crop_size == (1280, 1024)  # regions are mapped in frame pixels
    assert prepared.image.shape[:2] == (1024 // prepared.factor, 1280 // prepared.factor)
    diff = np.abs(prepared.tensors[(256, 256)] - full)
    assert diff.mean() <= mean_tol and diff.max() <= max_tol


def test_roi_is_cropped_before_resizing_at_the_reduced_scale():
    image = _part(1024, 1280, seed=1)
    data = _jpeg(image)
    roi = (320, 256, 640, 512)
    prepared = prepare(None, data, roi, [(64, 64)], "fast")
    assert prepared.factor == 8 and prepared.crop_size == (640, 512)
    assert prepared.crop.shape[:2] == (64, 80)  # the ROI at 1/8, not the whole frame
    x, y, w, h = roi
    reference = to_tensor(decode_image(data)[y:y + h, x:x + w], 64, 64)
    assert np.abs(prepared.tensors[(64, 64)] - reference).mean() <= 0.01


def test_png_and_array_frames_are_never_reduced():
    image = _part(512, 512)
    png = cv2.imencode(".png", image)[1].tobytes()
    assert prepare(None, png, None, [(64, 64)], "fast").factor == 1
    from_array = prepare(image, None, None, [(64, 64)], "fast")
    assert from_array.factor == 1 and from_array.image is image  # a camera's array is used as it is
    assert np.array_equal(from_array.tensors[(64, 64)], to_tensor(image, 64, 64))


def test_a_corrupt_frame_is_an_error_naming_it():
    prepared = prepare(None, b"\xff\xd8\xff garbage", None, [(64, 64)], "fast", label="rec/frame_3.jpg")
    assert prepared.crop is None and "rec/frame_3.jpg" in prepared.error


def test_daemon_replay_of_jpeg_frames_keeps_order_and_verdicts_with_reduced_decode(tmp_path, detector_card):
    """512 px JPEG frames into the 32 px tiny detector: decode at 1/8 (fast) and at full size give the
    same verdicts in the same frame order, regions in frame pixels; a corrupt frame stays in place."""
    rec = tmp_path / "rec"
    rec.mkdir()
    for i in range(24):
        frame = cv2.resize(make_frame(i % 4 == 3, 64, seed=i), (512, 512), interpolation=cv2.INTER_NEAREST)
        (rec / f"frame_{i:05d}.jpg").write_bytes(_jpeg(frame, 95))
    (rec / "frame_00010.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    out = {}
    for mode in ("off", "fast"):
        cfg = tmp_path / f"{mode}.yaml"
        cfg.write_text(
            f"line: l\ncameras:\n  - id: cam-0\n    source: {{type: replay, path: {rec}, pattern: '*.jpg'}}\n"
            f"models:\n  - {{path: {detector_card}}}\n"
            f"inference: {{decode_workers: 3, reduced_decode: {mode}, batch_max: 4}}\n"
            f"publishers:\n  - {{type: jsonl, path: {tmp_path}/{mode}.jsonl}}\nmetrics: {{enabled: false}}\n")
        proc = DaemonProc(["replay", str(rec), "--config", str(cfg)], tmp_path)
        assert proc.wait(60) == 0, proc.output()[-3000:]
        out[mode] = read_jsonl(tmp_path / f"{mode}.jsonl")
    full, fast = out["off"], out["fast"]
    assert [v["frame"] for v in fast] == list(range(24))
    assert [v["source"].rsplit("/", 1)[-1] for v in fast] == [f"frame_{i:05d}.jpg" for i in range(24)]
    assert fast[10]["verdict"] == "error" and "frame_00010.jpg" in fast[10]["error"]
    assert [v["verdict"] for v in fast] == [v["verdict"] for v in full]
    assert [v["verdict"] for v in fast].count("defect") == 6
    assert max(abs(a["score"] - b["score"]) for a, b in zip(full, fast, strict=True) if a["verdict"] != "error") < 0.02
    region = fast[3]["regions"][0]
    assert abs(region["x"] - 96) <= 8 and abs(region["w"] - 320) <= 16, json.dumps(region)  # frame pixels


def _with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """Insert an APP1 Exif segment holding only an Orientation tag right after SOI."""
    ifd = (b"II*\x00" + (8).to_bytes(4, "little") + (1).to_bytes(2, "little")
           + (0x0112).to_bytes(2, "little") + (3).to_bytes(2, "little") + (1).to_bytes(4, "little")
           + orientation.to_bytes(2, "little") + b"\x00\x00" + (0).to_bytes(4, "little"))
    payload = b"Exif\x00\x00" + ifd
    return jpeg[:2] + b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload + jpeg[2:]


def test_reduced_decode_ignores_exif_rotation_like_the_full_decode():
    data = _with_exif_orientation(_jpeg(_part(512, 1024)), 6)  # 6: "rotate 90 degrees to display"
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape[:2] == (1024, 512)  # tag is read
    full = decode_image(data)
    assert full.shape[:2] == (512, 1024)
    prepared = prepare(None, data, None, [(64, 64)], "fast")
    assert prepared.factor == 8 and prepared.image.shape[:2] == (64, 128)
    same = np.abs(prepared.tensors[(64, 64)] - to_tensor(full, 64, 64)).mean()
    rotated = np.abs(prepared.tensors[(64, 64)] - to_tensor(cv2.rotate(full, cv2.ROTATE_90_CLOCKWISE), 64, 64)).mean()
    assert same <= 0.05 and same < rotated / 2
