"""GenICam source through Aravis's own simulated cameras: the in-process Fake interface, and
arv-fake-gv-camera-0.8 serving the real GigE Vision protocol on loopback (killed mid-stream and
brought back), driven by the real daemon with part triggers over a real Mosquitto broker."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_inspector.config import CameraConfig
from edge_inspector.preprocess import ImageDecodeError
from edge_inspector.sources import SourceError, create_source
from edge_inspector.sources.genicam import GenicamSourceConfig, aravis_available, frame_to_bgr
from tests.fixtures.broker import free_port
from tests.runtime.test_daemon import DaemonProc, read_jsonl, scrape, wait_until, write_config

ROOT = Path(__file__).resolve().parents[2]
FAKE_GV = shutil.which("arv-fake-gv-camera-0.8")
needs_aravis = pytest.mark.skipif(not aravis_available(), reason="Aravis 0.8 + PyGObject not installed "
                                  "(apt gir1.2-aravis-0.8, pip edge-inspector[genicam]; tools/bootstrap.sh)")


def genicam(**kw) -> GenicamSourceConfig:
    return GenicamSourceConfig(type="genicam", **kw)


# -- without Aravis ------------------------------------------------------------------------------
def test_imports_and_fails_clearly_without_aravis(tmp_path):
    """The runtime installs without the [genicam] extra: the module and the daemon import, and a
    configured GenICam camera fails to open with what to install (the grab loop keeps retrying)."""
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['gi'] = None  # no PyGObject here\n")
    code = ("from edge_inspector.sources import create_source, SourceError\n"
            "import edge_inspector.runtime.daemon\n"
            "from edge_inspector.sources.genicam import GenicamSourceConfig\n"
            "src = create_source('cam-0', GenicamSourceConfig(type='genicam'))\n"
            "try:\n    src.open()\nexcept SourceError as e:\n    print('ERR', e)\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}:{ROOT}"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "ERR genicam source needs Aravis 0.8 with PyGObject" in out.stdout
    assert "gir1.2-aravis-0.8" in out.stdout and "edge-inspector[genicam]" in out.stdout


def test_pixel_conversion_is_bgr_and_checks_the_size():
    raw = np.zeros((4, 6), np.uint8)
    raw[0::2, 0::2] = 200  # GenICam BayerRG8: R at (0, 0); a red scene
    bgr = frame_to_bgr(raw.tobytes(), 6, 4, "BayerRG8")
    assert bgr.shape == (4, 6, 3) and tuple(bgr[1, 1]) == (0, 0, 200)
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[..., 0] = 255  # red in RGB8
    assert tuple(frame_to_bgr(rgb.tobytes(), 2, 2, "RGB8")[0, 0]) == (0, 0, 255)
    mono = frame_to_bgr(bytes(range(6)), 3, 2, "Mono8")
    assert mono.shape == (2, 3, 3) and (mono[..., 0] == mono[..., 2]).all()
    with pytest.raises(ImageDecodeError, match="Mono8 3x3 needs 9 bytes, the buffer has 6"):
        frame_to_bgr(bytes(6), 3, 3, "Mono8")


def test_triggered_cameras_default_to_blocking_queues():
    free = CameraConfig(id="c", source={"type": "genicam"})
    triggered = CameraConfig(id="c", source={"type": "genicam", "trigger": "software"})
    assert free.policy == "drop-oldest" and triggered.policy == "block"


# -- in-process Fake camera ----------------------------------------------------------------------
@needs_aravis
@pytest.mark.parametrize("fmt", ["Mono8", "BayerRG8", "RGB8"])
def test_fake_camera_formats_roi_exposure_gain_frame_id(fmt):
    src = create_source("cam-0", genicam(fake_interface=True, pixel_format=fmt, roi=[16, 8, 160, 120],
                                         exposure_us=2500, gain_db=2.0, part_id_from="frame_id", frame_rate=50))
    src.open()
    try:
        frames = [src.read() for _ in range(3)]
        assert src.cam.get_exposure_time() == 2500 and src.cam.get_gain() == 2.0
        assert src.cam.get_pixel_format_as_string() == fmt and src.cam.get_string("TriggerMode") == "Off"
    finally:
        src.close()
    assert all(f.error is None and f.image.shape == (120, 160, 3) and f.image.dtype == np.uint8 for f in frames)
    ids = [int(f.part_id) for f in frames]
    assert ids == sorted(ids) and len(set(ids)) == 3 and frames[0].source == f"genicam:Fake_1#{ids[0]}"
    assert [f.seq for f in frames] == [0, 1, 2] and frames[0].image.std() > 0  # the fake's test pattern
    if fmt == "Mono8":
        assert (frames[0].image[..., 0] == frames[0].image[..., 1]).all()


@needs_aravis
def test_feature_errors_are_reported_by_name():
    for features, expected in (({"NoSuchFeature": 3}, "GenICam feature NoSuchFeature=3 refused: [NoSuchFeature]"),
                               ({"PixelFormat": "Bayer99"}, "GenICam feature PixelFormat='Bayer99' refused")):
        src = create_source("cam-0", genicam(fake_interface=True, features=features))
        with pytest.raises(SourceError, match=expected.replace("[", r"\[")):
            src.open()
        assert src.cam is None  # closed again: the next attempt starts clean
    src = create_source("cam-0", genicam(fake_interface=True, camera="SN-404"))
    with pytest.raises(SourceError, match=r"GenICam camera SN-404 not found \(cameras seen: .*Fake_1"):
        src.open()


# -- arv-fake-gv-camera: GigE Vision on loopback ---------------------------------------------------
class FakeGvCamera:
    """arv-fake-gv-camera-0.8 on 127.0.0.1 (GVCP port 3956); ``kill()`` mid-stream, ``start()`` again."""

    def __init__(self, serial: str = "EI-TEST") -> None:
        self.serial = serial
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([FAKE_GV, "-i", "127.0.0.1", "-s", self.serial],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not self.answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("arv-fake-gv-camera-0.8 did not start on 127.0.0.1:3956")
            time.sleep(0.05)

    def answers(self) -> bool:
        """A GVCP discovery (the real protocol's first packet) gets a reply."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.2)
            try:
                s.sendto(bytes([0x42, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, 0x01]), ("127.0.0.1", 3956))
                return len(s.recvfrom(1024)[0]) > 0
            except OSError:
                return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)


@pytest.fixture
def fake_gv_camera():
    if FAKE_GV is None or not aravis_available():
        pytest.skip("arv-fake-gv-camera-0.8 (Debian aravis-tools) or Aravis/PyGObject not installed")
    cam = FakeGvCamera()
    if cam.answers():
        pytest.skip("something already answers GigE Vision discovery on 127.0.0.1:3956")
    cam.start()
    yield cam
    cam.kill()


def test_gige_camera_through_the_daemon_software_trigger_part_ids_loss_and_return(
        tmp_path, detector_card, mosquitto, fake_gv_camera):
    """One verdict per triggered frame, carrying the part id of its trigger command; the camera killed
    mid-stream is in the log and in source_up; when it is back, triggers give verdicts again."""
    mport = free_port()
    cfg = write_config(
        tmp_path / "config.yaml", models=[detector_card], metrics_port=mport, line="gige-test",
        camera="{type: genicam, camera: 127.0.0.1, trigger: software, pixel_format: Mono8, packet_size: 1400, "
               "roi: [0, 0, 256, 256], exposure_us: 1000}",
        publishers=f"""\
            - {{type: mqtt, host: 127.0.0.1, port: {mosquitto.port}, spool_dir: {tmp_path}/spool}}
            - {{type: jsonl, path: {tmp_path}/verdicts.jsonl}}
            """,
        extra="part_triggers: {mqtt: true}\n")
    plc = mqtt.Client(CallbackAPIVersion.VERSION2)
    plc.connect("127.0.0.1", mosquitto.port)
    plc.loop_start()
    daemon = DaemonProc(["run", "--config", str(cfg)], tmp_path)
    up = 'edge_inspector_source_up{camera="cam-0"}'
    topic = "edge-inspector/gige-test/cam-0/trigger"
    verdicts = tmp_path / "verdicts.jsonl"

    def trigger(part: str) -> dict:
        """Announce ``part`` and return its verdict (found by part id, so a mislabelled frame fails)."""
        plc.publish(topic, json.dumps({"part_id": part}), qos=1).wait_for_publish(5)
        wait_until(lambda: any(v["part_id"] == part for v in read_jsonl(verdicts)), what=f"verdict for part {part}",
                   proc=daemon)
        return next(v for v in read_jsonl(verdicts) if v["part_id"] == part)

    def warm_up(prefix: str) -> None:
        """Trigger warm-up parts until one gets a real picture. A stream that delivers nothing gives the
        part an error verdict of its own ("no frame came within timeout_ms") and the source reconnects."""
        for attempt in range(8):
            warm = trigger(f"{prefix}-{attempt}")
            if warm["verdict"] != "error":
                return
            assert f"no picture of part {prefix}-{attempt}: " in warm["error"], warm
        pytest.fail(f"the camera gave no picture for 8 warm-up triggers ({prefix})")

    try:
        wait_until(lambda: "part triggers: subscribed" in daemon.output() and scrape(mport).get(up) == 1,
                   what="camera open and triggers subscribed", proc=daemon)
        time.sleep(0.5)
        assert read_jsonl(verdicts) == []  # software trigger: no part, no frame
        warm_up("V")  # the first open's stream can miss a trigger as the reopened one can (seen in CI)
        for part in ["P-1", "P-2", "P-3"]:
            trigger(part)
        fake_gv_camera.kill()
        wait_until(lambda: scrape(mport).get(up) == 0, timeout=30, what="camera loss noticed", proc=daemon)
        assert "GenICam camera 127.0.0.1 lost" in daemon.output()
        # a part announced while the camera is away gets no picture: its verdict is an error, and it
        # must not label the next part's frame (it used to stay queued and be claimed by the next frame)
        plc.publish(topic, json.dumps({"part_id": "P-LOST"}), qos=1).wait_for_publish(5)
        fake_gv_camera.start()
        wait_until(lambda: scrape(mport).get(up) == 1, timeout=60, what="camera reopened", proc=daemon)
        time.sleep(0.5)  # as after the first open: the restarted fake camera's stream settles
        # Under load the reopened stream sometimes delivers nothing (seen in fresh-clone CI runs): the
        # part then gets an error verdict of its own ("no frame came within timeout_ms"), and the source
        # reconnects, as in free run; parts announced meanwhile get "not connected". Warm-up parts go on
        # until one real picture comes.
        warm_up("W")
        p4 = trigger("P-4")
        everything = read_jsonl(verdicts)
        out = [v for v in everything if v["part_id"].startswith("P-")]  # without the warm-up parts
        parts = [v["part_id"] for v in out]
        assert parts == ["P-1", "P-2", "P-3", "P-LOST", "P-4"], parts
        assert len(everything) == len({v["part_id"] for v in everything}), "a part id labelled two frames"
        lost = out[3]
        assert lost["verdict"] == "error" and "P-LOST" in lost["error"] and "not connected" in lost["error"], lost
        for v in out[:3] + [p4]:  # (p4 is out[4])
            assert v["verdict"] in ("ok", "defect") and v["schema"] == 2, v
        assert out[0]["source"].startswith("genicam:127.0.0.1#")
        m = scrape(mport)
        assert m['edge_inspector_frames_total{camera="cam-0"}'] == len(everything)
        assert m['edge_inspector_errors_total{camera="cam-0",reason="source"}'] >= 1
    finally:
        daemon.kill()
        plc.loop_stop()
        plc.disconnect()


def test_gige_free_run_loss_raises_and_reopens(fake_gv_camera):
    """Free run: frames flow, the camera killed mid-stream -> SourceError within timeout_ms (the grab
    loop's cue to back off), and the same source reopens once the camera is back."""
    src = create_source("cam-0", genicam(camera="EI-TEST", fake_interface=False, timeout_ms=1500, frame_rate=30,
                                         pixel_format="BayerRG8"))
    src.open()
    try:
        first = [src.read() for _ in range(3)]
        assert all(f.error is None and f.image.shape == (512, 512, 3) for f in first)
        fake_gv_camera.kill()
        t0 = time.monotonic()
        with pytest.raises(SourceError, match="camera cam-0: (no frame from GenICam camera|GenICam camera .* lost)"):
            for _ in range(100):
                src.read()
        assert time.monotonic() - t0 < 10
        src.close()
        fake_gv_camera.start()
        src.open()  # found again by serial number (discovery on loopback)
        assert src.read().error is None
    finally:
        src.close()


@needs_aravis
def test_hardware_trigger_waits_for_edges_without_error():
    """Hardware trigger: TriggerMode On and TriggerSource = the configured line, read back from the camera.
    (The in-process Fake camera streams regardless of its trigger mode, so waiting for edges is not
    observable with it; the software-trigger test on the GigE Vision fake shows frames only on triggers.)"""
    src = create_source("cam-0", genicam(fake_interface=True, trigger="hardware", trigger_source="Line0",
                                         timeout_ms=100))
    src.open()
    try:
        assert (src.cam.get_string("TriggerMode"), src.cam.get_string("TriggerSource")) == ("On", "Line0")
    finally:
        src.close()
