"""Camera faults on a REAL daemon with four cameras: an MJPEG-over-HTTP stream that dies and comes
back, a video file OpenCV cannot open until it is replaced, a watched folder that is deleted, and a
healthy replay camera that must keep producing verdicts through all of it.

Why: a line PC loses cameras (PoE switch reboot, cable, NAS share gone); the promise is that the
lost camera reconnects on its own with exponential backoff plus jitter (in-process unit tests:
tests/sources/test_sources.py::test_backoff_grows_is_capped_and_jittered,
tests/runtime/test_pipeline.py::test_camera_reconnects_with_backoff_when_it_comes_back), that the other
cameras never notice, and that an operator can see it in ``edge_inspector_source_up{camera}``.
"""

from __future__ import annotations

import re
import shutil
import signal
from pathlib import Path

import cv2

from tests.fixtures.broker import free_port
from tests.fixtures.models import make_frame, write_frames
from tests.reliability.helpers import DaemonProc, MjpegServer, read_jsonl, scrape, wait_until, write_cfg


def write_video(path: Path, n: int = 10) -> None:
    """A real MJPG/AVI file written by OpenCV (then moved into place atomically)."""
    tmp = path.with_name("tmp-" + path.name)
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 64))
    assert writer.isOpened()
    for i in range(n):
        writer.write(make_frame(i % 3 == 2, 64, seed=i))
    writer.release()
    tmp.replace(path)


def test_cameras_fail_and_reconnect_while_others_keep_running(tmp_path: Path, detector_card: Path) -> None:
    stream = MjpegServer(fps=15)
    stream.start()
    rec = write_frames(tmp_path / "rec", n=5)
    video = tmp_path / "line.avi"
    video.write_bytes(b"RIFF\0\0\0\0AVI garbage, not a video" * 10)  # exists, but OpenCV cannot open it
    inbox = tmp_path / "inbox"
    port = free_port()
    jsonl = tmp_path / "verdicts.jsonl"
    cfg = write_cfg(tmp_path / "config.yaml", f"""\
line: faults
cameras:
  - {{id: cam-http, source: {{type: camera, device: "{stream.url}"}}}}
  - {{id: cam-rec, source: {{type: replay, path: {rec}, rate_fps: 10, loop: true}}}}
  - {{id: cam-video, source: {{type: video, path: {video}, rate_fps: 5, loop: true}}}}
  - {{id: cam-dir, source: {{type: folder, path: {inbox}, settle_ms: 50, poll_ms: 20}}}}
models:
  - path: {detector_card}
publishers:
  - {{type: jsonl, path: {jsonl}}}
metrics: {{port: {port}}}
""")

    def up(cam: str) -> float:
        return scrape(port).get(f'edge_inspector_source_up{{camera="{cam}"}}', -1)

    def count(cam: str) -> int:
        return sum(1 for v in read_jsonl(jsonl) if v["camera"] == cam)

    daemon = DaemonProc(["run", "--config", str(cfg)], tmp_path)
    try:
        wait_until(lambda: "metrics on" in daemon.output(), what="start", proc=daemon)
        wait_until(lambda: count("cam-http") >= 3 and up("cam-http") == 1, what="stream verdicts", proc=daemon)
        assert up("cam-video") == 0  # refused to open: down, retrying

        # 1) the IP camera dies: source_up 0, the replay camera keeps producing
        stream.kill()
        wait_until(lambda: up("cam-http") == 0, what="cam-http down", proc=daemon)
        n_rec, n_http = count("cam-rec"), count("cam-http")
        wait_until(lambda: count("cam-rec") >= n_rec + 10, what="cam-rec during the outage", proc=daemon)
        assert count("cam-http") <= n_http + 8 + 2  # at most what was already queued (queue_size 8)
        # 2) it comes back on the same address: reconnected without a restart
        stream.start()
        wait_until(lambda: up("cam-http") == 1, timeout=20, what="cam-http up again", proc=daemon)
        wait_until(lambda: count("cam-http") >= n_http + 3, what="stream verdicts after reconnect", proc=daemon)

        # 3) the video file becomes readable: opened by the retry loop
        wait_until(lambda: len(re.findall(r"cam-video: .*attempt", daemon.output())) >= 3, what="3 video retries",
                   proc=daemon)
        write_video(video)
        wait_until(lambda: count("cam-video") >= 3, timeout=30, what="video verdicts", proc=daemon)
        assert up("cam-video") == 1

        # 4) the watched folder disappears (share unmounted): the source error is counted, it recovers
        wait_until(lambda: inbox.is_dir(), what="inbox created", proc=daemon)
        shutil.rmtree(inbox)
        wait_until(lambda: scrape(port).get('edge_inspector_errors_total{camera="cam-dir",reason="source"}', 0) >= 1,
                   what="folder loss counted", proc=daemon)
        wait_until(lambda: inbox.is_dir(), timeout=20, what="folder re-created on reconnect", proc=daemon)
        cv2.imwrite(str(inbox / "part.png"), make_frame(True))
        wait_until(lambda: count("cam-dir") == 1, what="folder verdict after recovery", proc=daemon)
        m = scrape(port)
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0, daemon.output()[-3000:]
    finally:
        daemon.kill()
        stream.kill()
    log = daemon.output()
    assert m['edge_inspector_errors_total{camera="cam-http",reason="source"}'] >= 1
    assert m['edge_inspector_errors_total{camera="cam-video",reason="source"}'] >= 2
    assert m.get('edge_inspector_errors_total{camera="cam-rec",reason="source"}', 0) == 0
    # exponential backoff: attempts 1, 2, 3 of the video wait ~0.5, ~1, ~2 s (+-20 % jitter)
    delays = [float(d) for d in re.findall(r"camera cam-video: .*?retrying in ([\d.]+) s \(attempt \d+\)", log)]
    assert len(delays) >= 3, log[-3000:]
    for expected, got in zip((0.5, 1.0, 2.0), delays, strict=False):
        assert 0.8 * expected - 0.05 <= got <= 1.2 * expected + 0.05, delays
    assert "cannot open" in log and "cam-http" in log
    out = read_jsonl(jsonl)
    rec_frames = [v["frame"] for v in out if v["camera"] == "cam-rec"]
    assert rec_frames == list(range(len(rec_frames)))  # the healthy camera never skipped a frame
    http = [v["frame"] for v in out if v["camera"] == "cam-http"]
    assert http == sorted(set(http))  # numbering continues across the reconnect, never repeats
