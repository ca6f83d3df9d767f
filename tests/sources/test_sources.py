"""Frame sources on real files: folder watch, replay, video (MJPG/avi), camera via a stream path."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_inspector.config import (
    CameraSourceConfig,
    FolderSourceConfig,
    ReplaySourceConfig,
    VideoSourceConfig,
)
from edge_inspector.sources import SOURCES, Backoff, SourceError, SourceSettings, create_source
from tests.fixtures.models import make_frame, write_frames


def png_bytes(defect: bool = False, seed: int = 0) -> bytes:
    ok, data = cv2.imencode(".png", make_frame(defect, 64, seed))
    assert ok
    return data.tobytes()


def test_registry_covers_every_source_type():
    assert set(SOURCES) == {"camera", "video", "folder", "replay", "genicam"}


# -- replay ----------------------------------------------------------------------------------------
def test_replay_sorted_order_and_end(tmp_path):
    folder = tmp_path / "rec"
    folder.mkdir()
    for name in ["c.png", "a.png", "b.jpg", "notes.txt", ".hidden.png"]:
        (folder / name).write_bytes(png_bytes() if name != "notes.txt" else b"x")
    src = create_source("cam", ReplaySourceConfig(type="replay", path=folder))
    frames = list(src.frames())
    assert [Path(f.source).name for f in frames] == ["a.png", "b.jpg", "c.png"]
    assert [f.seq for f in frames] == [0, 1, 2]
    assert all(f.image.shape == (64, 64, 3) and f.image.dtype == np.uint8 and f.camera == "cam" for f in frames)


def test_replay_rate_is_respected(tmp_path):
    folder = write_frames(tmp_path / "rec", n=6)
    src = create_source("cam", ReplaySourceConfig(type="replay", path=folder, rate_fps=25))
    t0 = time.monotonic()
    frames = list(src.frames())
    elapsed = time.monotonic() - t0
    assert len(frames) == 6
    assert elapsed >= 5 / 25 - 0.01  # frame i is due at i/25 s
    stamps = [f.captured_mono for f in frames]
    assert (stamps[-1] - stamps[0]) / 5 >= 0.038  # paced on a schedule (a late frame is not made up twice)


def test_replay_loop_and_missing_folder(tmp_path):
    folder = write_frames(tmp_path / "rec", n=3)
    src = create_source("cam", ReplaySourceConfig(type="replay", path=folder, loop=True))
    src.open()
    names = [Path(src.read().source).name for _ in range(7)]
    assert names[:4] == ["frame_00000.png", "frame_00001.png", "frame_00002.png", "frame_00000.png"]
    with pytest.raises(SourceError, match="not a folder"):
        create_source("cam", ReplaySourceConfig(type="replay", path=tmp_path / "nope")).open()


def test_decode_failure_gives_error_frame_not_crash(tmp_path):
    folder = write_frames(tmp_path / "rec", n=2)
    (folder / "frame_00000.png").write_bytes(png_bytes()[:40])  # truncated
    (folder / "frame_00001b.png").write_bytes(b"")  # empty
    frames = list(create_source("cam", ReplaySourceConfig(type="replay", path=folder)).frames())
    assert [f.error is not None for f in frames] == [True, False, True]
    assert frames[0].image is None and "frame_00000.png" in frames[0].error
    assert frames[1].image is not None


# -- folder watch ------------------------------------------------------------------------------
class Collector:
    def __init__(self, source):
        self.source, self.frames = source, []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        for frame in self.source.frames():
            self.frames.append(frame)
            if frame.done is not None:  # as the pipeline does once the verdict is handed over
                frame.done()

    def wait(self, n: int, timeout: float = 5.0):
        deadline = time.monotonic() + timeout
        while len(self.frames) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        return list(self.frames)

    def stop(self):
        self.source.stop()
        self.thread.join(2)
        assert not self.thread.is_alive()


def test_folder_watch_new_files_once_and_never_half_written(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "old.png").write_bytes(png_bytes(seed=9))
    cfg = FolderSourceConfig(type="folder", path=inbox, settle_ms=600, poll_ms=20, process_existing=False)
    col = Collector(create_source("cam", cfg))
    time.sleep(0.1)
    (inbox / "a.png").write_bytes(png_bytes(seed=1))
    assert [Path(f.source).name for f in col.wait(1)] == ["a.png"]

    # a slow writer: half the file, a pause shorter than settle_ms, then the rest
    data = png_bytes(True, seed=2)
    with open(inbox / "b.png", "wb") as fh:
        fh.write(data[: len(data) // 2])
        fh.flush()
        time.sleep(0.12)
        assert len(col.frames) == 1  # not read while still being written
        fh.write(data[len(data) // 2:])
    # a writer that renames when complete: the temporary name is never read
    (inbox / "c.png.part").write_bytes(png_bytes(seed=3))
    assert len(col.wait(2)) == 2
    time.sleep(0.8)  # longer than settle_ms: the .part file would have been read by now
    assert len(col.frames) == 2
    (inbox / "c.png.part").rename(inbox / "c.png")
    frames = col.wait(3)
    time.sleep(0.4)  # several more polls: nothing is picked up twice
    col.stop()
    frames = col.frames
    assert [Path(f.source).name for f in frames] == ["a.png", "b.png", "c.png"]
    assert all(f.error is None and f.image is not None for f in frames)
    assert frames[1].image.max() == 255  # the complete defect frame, not a truncated one
    assert [f.seq for f in frames] == [0, 1, 2]
    assert frames[0].captured_wall == pytest.approx((inbox / "a.png").stat().st_mtime, abs=1e-3)  # camera time


def test_folder_watch_processes_existing_by_default(tmp_path):
    folder = write_frames(tmp_path / "inbox", n=3)
    col = Collector(create_source("cam", FolderSourceConfig(type="folder", path=folder, settle_ms=0, poll_ms=20)))
    frames = col.wait(3)
    col.stop()
    assert [Path(f.source).name for f in frames] == ["frame_00000.png", "frame_00001.png", "frame_00002.png"]


# -- video and camera --------------------------------------------------------------------------
def write_video(path: Path, n: int = 5, size: int = 64) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (size, size))
    assert writer.isOpened()
    for i in range(n):
        writer.write(make_frame(i % 2 == 1, size, seed=i))
    writer.release()
    return path


def test_video_file_frames_and_loop(tmp_path):
    video = write_video(tmp_path / "line.avi", n=5)
    frames = list(create_source("cam", VideoSourceConfig(type="video", path=video)).frames())
    assert len(frames) == 5
    assert frames[1].image.mean() > frames[0].image.mean() + 50  # frame 1 carries the white square
    assert frames[4].source == "line.avi#4"
    looped = create_source("cam", VideoSourceConfig(type="video", path=video, loop=True))
    looped.open()
    assert len([looped.read() for _ in range(12)]) == 12
    looped.close()
    with pytest.raises(SourceError, match="not found"):
        create_source("cam", VideoSourceConfig(type="video", path=tmp_path / "none.avi")).open()


def test_camera_source_reads_a_stream_and_reports_loss(tmp_path):
    # a file path is a valid VideoCapture "URL"; its end looks exactly like a dropped stream
    video = write_video(tmp_path / "stream.avi", n=3)
    cam = create_source("cam", CameraSourceConfig(type="camera", device=str(video)))
    cam.open()
    assert [cam.read().seq for _ in range(3)] == [0, 1, 2]
    with pytest.raises(SourceError, match="no frame"):
        cam.read()
    cam.close()
    with pytest.raises(SourceError, match="cannot open"):
        create_source("cam", CameraSourceConfig(type="camera", device=str(tmp_path / "absent.avi"))).open()


def test_sources_get_their_settings_at_construction(tmp_path):
    """What the pipeline tells a source (first frame number, heartbeat, deferred decoding, state folder,
    skip counter) arrives through the constructor; a source built without settings stands alone."""
    video = write_video(tmp_path / "line.avi", n=3)
    beats: list[float] = []
    skipped: list[tuple[str, str]] = []
    settings = SourceSettings(seq_start=41, heartbeat=lambda: beats.append(time.monotonic()), defer_decode=True,
                              state_dir=tmp_path / "state", on_skip=lambda name, why: skipped.append((name, why)))
    cam = create_source("cam-0", CameraSourceConfig(type="camera", device=str(video)), settings)
    cam.open()
    assert [cam.read().seq for _ in range(3)] == [41, 42, 43]  # numbered from the daemon's counter
    cam.close()
    rec = write_frames(tmp_path / "rec", n=3)
    replay = create_source("cam-0", ReplaySourceConfig(type="replay", path=rec, rate_fps=40), settings)
    frames = list(replay.frames())
    assert [f.seq for f in frames] == [0, 1, 2]  # replay numbers by file position, whatever the counter says
    assert all(f.image is None and f.encoded is not None for f in frames)  # decoding left to the pool
    assert beats  # pacing waits beat the watchdog
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "loop.png").symlink_to(inbox / "loop.png")
    folder = create_source("cam-0", FolderSourceConfig(type="folder", path=inbox, settle_ms=0, poll_ms=20), settings)
    assert folder.state_path == tmp_path / "state" / "cam-0.folder"
    folder.open()
    folder._poll()  # one listing: the link loop is skipped and reported
    assert skipped == [("loop.png", "link_loop")]
    alone = create_source("cam-1", FolderSourceConfig(type="folder", path=inbox))
    assert alone.state_path is None and alone.seq == 0 and not alone.defer_decode


def test_backoff_grows_is_capped_and_jittered():
    b = Backoff(base=0.5, cap=4.0, jitter=0.2, rng=random.Random(1))
    delays = [b.next_delay() for _ in range(8)]
    assert 0.4 <= delays[0] <= 0.6 and 0.8 <= delays[1] <= 1.2
    assert all(3.2 <= d <= 4.8 for d in delays[4:])
    assert len(set(delays[4:])) > 1  # jitter: not lockstep
    b.reset()
    assert b.next_delay() <= 0.6


def test_frame_numbers_never_repeat_across_restarts(tmp_path):
    from edge_inspector.sources import SeqStore

    store = SeqStore(tmp_path / "state", block=3)
    assert store.start("cam") == 0
    for seq in range(5):
        store.advance("cam", seq)
    assert store.start("cam") == 5  # a re-created source (reload) continues in memory
    restarted = SeqStore(tmp_path / "state", block=3)  # a daemon restart (or crash) skips, never repeats
    first = restarted.start("cam")
    assert first >= 5 and first <= 5 + 3
    assert SeqStore(None).start("cam") == 0  # without a state folder counters restart at 0
    (tmp_path / "state" / "other.seq").write_text("garbage")
    assert SeqStore(tmp_path / "state").start("other") == 0


def test_folder_watch_across_restarts_with_state(tmp_path):
    """Files handled before a restart are not inspected again; files that arrived meanwhile are."""
    import os

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    state = tmp_path / "cam.folder"
    cfg = FolderSourceConfig(type="folder", path=inbox, settle_ms=0, poll_ms=20, process_existing=False)

    def run_once(expect: int) -> list[str]:
        src = create_source("cam", cfg, SourceSettings(state_dir=tmp_path))  # progress in <state_dir>/cam.folder
        assert src.state_path == state
        col = Collector(src)
        col.wait(expect)
        time.sleep(0.15)
        col.stop()
        return [Path(f.source).name for f in col.frames]

    for i, name in enumerate(["a.png", "b.png"]):
        (inbox / name).write_bytes(png_bytes(seed=i))
        os.utime(inbox / name, ns=(10**18 + i * 10**9, 10**18 + i * 10**9))
    assert run_once(0) == []  # first start without a mark: process_existing=False skips them
    (inbox / "c.png").write_bytes(png_bytes(seed=3))
    assert run_once(1) == ["c.png"]
    (inbox / "d.png").write_bytes(png_bytes(seed=4))  # arrives while the daemon is down
    assert run_once(1) == ["d.png"]  # c is not inspected twice, d is not missed


def test_camera_credentials_never_leave_the_source():
    from edge_inspector.sources.camera import redact

    assert redact("rtsp://admin:s3cret@10.0.0.21:554/stream1") == "rtsp://***@10.0.0.21:554/stream1"
    assert redact("http://10.0.0.5/mjpg") == "http://10.0.0.5/mjpg"
    assert redact(0) == "0"
