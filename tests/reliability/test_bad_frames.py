"""Bad files dropped into a watched folder of a REAL daemon: each one becomes an ``error`` verdict
(counted in ``errors_total{reason="frame"}``) or a converted, decided frame; non-image names are
never picked up; and the good frames dropped afterwards are still inspected.

Why a real daemon: the folder source, the decode, the preprocessing and the publisher run in
separate threads; only the process shows that a bad file cannot stop or renumber the line.
"""

from __future__ import annotations

import shutil
import signal
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np

from tests.fixtures.broker import free_port
from tests.fixtures.models import make_frame, write_frames
from tests.reliability.helpers import DaemonProc, read_jsonl, scrape, wait_until, write_cfg


def png(width: int, height: int, colour_type: int = 0, depth: int = 8, channels: int = 1) -> bytes:
    """A hand-made PNG: the header may claim any size (decompression bombs cost nothing to build)."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    row = b"\0" + b"\x80" * (width * channels * depth // 8)
    # a bomb beyond OpenCV's own limit is refused from its header: no need to write every row
    rows = zlib.compress(row * (height if width * height <= 60_000_000 else 16))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0))
            + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


def bad_files() -> dict[str, tuple[bytes, str]]:
    """name -> (content, expected outcome: 'error' or 'decided')."""
    ok, jpg = cv2.imencode(".jpg", make_frame(True, 64))
    assert ok
    ok, png16 = cv2.imencode(".png", np.full((48, 48, 3), 30000, np.uint16))
    assert ok
    ok, bgra = cv2.imencode(".png", np.full((40, 40, 4), 30, np.uint8))
    assert ok
    return {
        "a_truncated.jpg": (jpg.tobytes()[: len(jpg) // 2], "error"),
        "b_zero_bytes.png": (b"", "error"),
        "c_text.png": (b"this is not an image, just text with a .png name\n" * 4, "error"),
        "d_elf.bmp": (b"\x7fELF\x02\x01\x01" + bytes(200), "error"),
        "e_header_100000x100000.png": (png(100_000, 100_000), "error"),  # refused by OpenCV's own limit
        "f_7200x7200.png": (png(7200, 7200), "error"),  # decodable, but above preprocess.MAX_PIXELS
        "g_16bit.png": (png16.tobytes(), "decided"),  # cameras deliver 16-bit: converted, not refused
        "h_gray_alpha.png": (png(40, 40, colour_type=4, channels=2), "decided"),  # 2 channels
        "i_bgra.png": (bgra.tobytes(), "decided"),  # 4 channels
    }


def test_bad_files_give_error_verdicts_and_later_good_frames_still_pass(tmp_path: Path, detector_card: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    port = free_port()
    jsonl = tmp_path / "verdicts.jsonl"
    cfg = write_cfg(tmp_path / "config.yaml", f"""\
line: bad-frames
cameras:
  - id: cam-0
    source: {{type: folder, path: {inbox}, settle_ms: 50, poll_ms: 20}}
models:
  - path: {detector_card}
publishers:
  - {{type: jsonl, path: {jsonl}}}
metrics: {{port: {port}}}
""")
    daemon = DaemonProc(["run", "--config", str(cfg)], tmp_path)
    try:
        wait_until(lambda: "metrics on" in daemon.output(), what="start", proc=daemon)
        files = bad_files()
        for name, (data, _) in files.items():
            (inbox / name).write_bytes(data)
        (inbox / "notes.txt").write_text("not a frame")  # not matching the pattern: never picked up
        (inbox / "dump.csv").write_text("a,b\n1,2\n")
        wait_until(lambda: len(read_jsonl(jsonl)) >= len(files), timeout=30, what="a verdict per bad file",
                   proc=daemon)
        good = write_frames(tmp_path / "good", n=3, defect_every=3)
        for p in sorted(good.glob("*.png")):
            shutil.copy(p, inbox / f"z_{p.name}")
        wait_until(lambda: len(read_jsonl(jsonl)) >= len(files) + 3, timeout=30, what="good frames after bad ones",
                   proc=daemon)
        m = scrape(port)
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0, daemon.output()[-3000:]
    finally:
        daemon.kill()
    out = read_jsonl(jsonl)
    by_name = {Path(v["source"]).name: v for v in out}
    assert set(by_name) == set(files) | {f"z_frame_0000{i}.png" for i in range(3)}  # no .txt/.csv, no repeat
    for name, (_, expected) in files.items():
        v = by_name[name]
        if expected == "error":
            assert v["verdict"] == "error", (name, v)
            assert name in v["error"], v["error"]  # the reason names the file
        else:
            assert v["verdict"] in ("ok", "defect"), (name, v)
    assert "empty file" in by_name["b_zero_bytes.png"]["error"]
    assert "exceeds" in by_name["f_7200x7200.png"]["error"]
    assert [by_name[f"z_frame_0000{i}.png"]["verdict"] for i in range(3)] == ["ok", "ok", "defect"]
    assert sorted(v["frame"] for v in out) == list(range(len(out)))  # numbering never skipped or repeated
    errors = sum(1 for _, e in files.values() if e == "error")
    assert m['edge_inspector_errors_total{camera="cam-0",reason="frame"}'] == errors
    assert m.get('edge_inspector_errors_total{camera="cam-0",reason="source"}', 0) == 0  # not a camera fault
    assert m['edge_inspector_verdicts_total{camera="cam-0",verdict="error"}'] == errors
    assert "Traceback" not in daemon.output()
