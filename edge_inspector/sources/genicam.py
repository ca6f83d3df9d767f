"""GigE Vision / USB3 Vision cameras through GenICam, with Aravis (``source: {type: genicam, ...}``).

Why Aravis: it is the open-source GenICam implementation shipped by Debian (``libaravis-0.8-0``,
``gir1.2-aravis-0.8``), speaks GigE Vision and USB3 Vision itself, and its Python binding is plain
GObject introspection (PyGObject, the optional ``[genicam]`` extra). This module imports without
either; a camera configured with ``type: genicam`` on a machine without them fails to open with a
message saying what to install, and the grab loop keeps retrying with the usual backoff.

What the configuration maps to (GenICam SFNC feature names, so an integrator can check them
against the camera's own documentation):

* ``camera``: device id, serial number or IP address (``None``: the first camera found). An IP
  address is opened directly, without discovery broadcast (cameras in another subnet, loopback);
* ``pixel_format`` -> ``PixelFormat`` (Mono8, BayerRG8, RGB8), converted to the pipeline's BGR;
* ``exposure_us`` -> ``ExposureTime``, ``gain_db`` -> ``Gain``, ``roi`` -> ``OffsetX/OffsetY/Width/
  Height`` (on the sensor: fewer bytes on the wire), ``packet_size`` -> ``GevSCPSPacketSize``
  (GigE Vision only), ``frame_rate`` -> ``AcquisitionFrameRate`` (free run);
* ``trigger``: ``free-run`` (TriggerMode Off), ``software`` (TriggerMode On, TriggerSource
  Software; a part trigger command fires ``TriggerSoftware``: one frame per part) or ``hardware``
  (TriggerMode On, TriggerSource ``trigger_source``, e.g. Line0 wired to the PLC);
* ``features``: any other feature by name (``{BalanceWhiteAuto: Continuous}``).

A feature the camera refuses is reported by its name and the camera's reason (``camera cam-0:
GenICam feature ExposureTime=5e+09: ...``), as a SourceError, so the log says which setting to fix.

Frames: Aravis fills a pool of ``buffers`` pre-allocated buffers; each frame's bytes are taken out
of its buffer once (PyGObject hands them over as ``bytes``) and viewed as an array without a copy;
the only other pass is the conversion to BGR (none for Mono8 beyond the grey-to-BGR expansion the
pipeline needs). A buffer with missing packets gives an ``error`` verdict naming its status, never
an ``ok`` on half an image. A camera that disappears (``control-lost``, or no frame within
``timeout_ms`` in free run) raises SourceError: the grab loop closes, backs off and reopens it.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections import deque
from typing import Any, Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..parts import PartTrigger
from ..preprocess import ImageDecodeError, check_roi, to_bgr8
from .base import Frame, Source, SourceError, SourceSettings

log = logging.getLogger(__name__)

INSTALL_HINT = ("install Aravis and PyGObject: apt-get install gir1.2-aravis-0.8 libgirepository1.0-dev, then "
                "pip install 'edge-inspector[genicam]' (tools/bootstrap.sh does both)")

#: GenICam pixel format -> (channels, OpenCV conversion to BGR or None). OpenCV names Bayer patterns by
#: the 2x2 block starting at (1, 1), GenICam by the one at (0, 0): GenICam BayerRG8 is OpenCV's BayerBG.
PIXEL_FORMATS: dict[str, tuple[int, int | None]] = {
    "Mono8": (1, cv2.COLOR_GRAY2BGR),
    "BayerRG8": (1, cv2.COLOR_BayerBG2BGR),
    "RGB8": (3, cv2.COLOR_RGB2BGR),
}


class GenicamSourceConfig(BaseModel):
    """A GenICam camera (GigE Vision, USB3 Vision) through Aravis."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    type: Literal["genicam"] = Field(description="A GigE Vision / USB3 Vision camera through Aravis (GenICam).")
    camera: str | None = Field(None, description="Device id (as arv-tool-0.8 lists it), serial number or IP "
                               "address; None: the first camera found.")
    pixel_format: Literal["Mono8", "BayerRG8", "RGB8"] = Field("Mono8", description="PixelFormat to acquire; "
                                                                 "converted to BGR for the models.")
    exposure_us: float | None = Field(None, gt=0, le=1e8, description="ExposureTime in microseconds (None: the "
                                      "camera's setting).")
    gain_db: float | None = Field(None, ge=-100, le=100, description="Gain in dB (None: the camera's setting).")
    roi: list[int] | None = Field(None, min_length=4, max_length=4, description="Sensor region [x, y, w, h] "
                                  "(OffsetX, OffsetY, Width, Height): only this part is transferred.")
    packet_size: int | None = Field(None, ge=576, le=16_384, description="GigE Vision stream packet size in bytes "
                                    "(GevSCPSPacketSize; 9000 with jumbo frames). None: the camera's setting.")
    frame_rate: float | None = Field(None, gt=0, le=10_000, description="Free run: AcquisitionFrameRate.")
    trigger: Literal["free-run", "software", "hardware"] = Field(
        "free-run", description="free-run: the camera streams; software: one frame per part trigger command "
        "(MQTT, see part_triggers); hardware: one frame per edge on trigger_source.")
    trigger_source: str = Field("Line0", description="Hardware trigger input (TriggerSource).")
    features: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="Other GenICam features set by name after the ones above.")
    buffers: int = Field(8, ge=2, le=256, description="Frame buffers Aravis fills ahead of the pipeline.")
    timeout_ms: int = Field(3000, ge=10, le=600_000, description="Free run: no frame for this long means the "
                            "camera is lost (reconnect with backoff). Triggered cameras wait for triggers.")
    part_id_from: Literal["none", "frame_id"] = Field(
        "none", description="frame_id: the verdict's part_id is the camera's frame (block) id.")
    fake_interface: bool = Field(False, description="Also look for Aravis's in-process simulated camera "
                                 "('Fake_1'): for tests and demos without a camera.")

    @field_validator("roi")
    @classmethod
    def _roi_positive(cls, roi: list[int] | None) -> list[int] | None:
        return check_roi(roi)


def load_aravis() -> Any:
    """The Aravis module (GObject introspection); SourceError saying what to install when absent."""
    try:
        import gi

        gi.require_version("Aravis", "0.8")
        from gi.repository import Aravis
    except (ImportError, ValueError) as exc:
        raise SourceError(f"genicam source needs Aravis 0.8 with PyGObject ({exc}); {INSTALL_HINT}") from None
    return Aravis


def aravis_available() -> bool:
    try:
        load_aravis()
    except SourceError:
        return False
    return True


def frame_to_bgr(data: bytes | memoryview, width: int, height: int, pixel_format: str) -> np.ndarray:
    """One buffer's bytes as a BGR uint8 image; ImageDecodeError when the size does not match."""
    channels, code = PIXEL_FORMATS[pixel_format]
    need = width * height * channels
    if len(data) < need:
        raise ImageDecodeError(f"{pixel_format} {width}x{height} needs {need} bytes, the buffer has {len(data)}")
    raw = np.frombuffer(data, np.uint8, count=need)  # a view, no copy
    raw = raw.reshape((height, width) if channels == 1 else (height, width, channels))
    return cv2.cvtColor(raw, code) if code is not None else raw


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


class GenicamSource(Source):
    type = "genicam"
    live = True

    def __init__(self, camera: str, config: Any, settings: SourceSettings | None = None):
        super().__init__(camera, config, settings)
        self.cam: Any = None
        self.stream: Any = None
        self._lost = threading.Event()
        self._gone = False  # lost for sure: closing must not talk to it
        self._lock = threading.Lock()  # software triggers (MQTT thread) vs open/close (grab thread)
        self.last_frame_at = 0.0
        # software trigger: parts whose picture was asked for, oldest first, with the time by which its
        # frame must have come; and parts that will get no picture, with why (each becomes an error frame)
        self._pending: deque[tuple[PartTrigger, float]] = deque()
        self._ready = False  # acquisition running: software triggers can be fired
        self._stalled = False  # a triggered frame did not come: reconnect after reporting the part
        self._missed: deque[tuple[PartTrigger, str]] = deque()

    # -- device -------------------------------------------------------------------------------
    def _device_id(self, arv: Any) -> str | None:
        """The Aravis id to open: an IP address directly, else looked up by id or serial number."""
        wanted = self.config.camera
        if wanted is not None and _is_ip(wanted):
            return wanted
        arv.update_device_list()
        found = []
        for i in range(arv.get_n_devices()):
            ids = (arv.get_device_id(i), arv.get_device_serial_nbr(i), arv.get_device_address(i))
            found.append(ids[0])
            if wanted is None or wanted in ids:
                return ids[0]
        listing = ", ".join(found) or "none"
        raise SourceError(f"camera {self.camera}: GenICam camera {wanted or '(any)'} not found (cameras seen: "
                          f"{listing})")

    def _feature(self, name: str, value: Any, setter: Any) -> None:
        try:
            setter()
        except Exception as exc:  # GLib.GError: the camera's or the GenICam node map's reason
            raise SourceError(f"camera {self.camera}: GenICam feature {name}={value!r} refused: "
                              f"{getattr(exc, 'message', None) or exc}") from None

    def _configure(self, arv: Any) -> None:
        cfg, cam = self.config, self.cam
        self._feature("PixelFormat", cfg.pixel_format, lambda: cam.set_pixel_format_from_string(cfg.pixel_format))
        if cfg.roi is not None:
            x, y, w, h = cfg.roi
            self._feature("OffsetX/OffsetY/Width/Height", cfg.roi, lambda: cam.set_region(x, y, w, h))
            got = cam.get_region()
            if (got.x, got.y, got.width, got.height) != (x, y, w, h):
                raise SourceError(f"camera {self.camera}: GenICam feature Width/Height/OffsetX/OffsetY: asked for "
                                  f"{cfg.roi}, the camera set [{got.x}, {got.y}, {got.width}, {got.height}] (check "
                                  "the sensor size and the increments)")
        if cfg.exposure_us is not None:
            self._feature("ExposureTime", cfg.exposure_us, lambda: cam.set_exposure_time(cfg.exposure_us))
        if cfg.gain_db is not None:
            self._feature("Gain", cfg.gain_db, lambda: cam.set_gain(cfg.gain_db))
        if cfg.packet_size is not None:
            if not cam.is_gv_device():
                raise SourceError(f"camera {self.camera}: packet_size applies to GigE Vision cameras only")
            self._feature("GevSCPSPacketSize", cfg.packet_size, lambda: cam.gv_set_packet_size(cfg.packet_size))
        if cfg.trigger == "free-run":
            self._feature("TriggerMode", "Off", lambda: cam.clear_triggers())
            if cfg.frame_rate is not None:
                self._feature("AcquisitionFrameRate", cfg.frame_rate, lambda: cam.set_frame_rate(cfg.frame_rate))
        else:
            source = "Software" if cfg.trigger == "software" else cfg.trigger_source
            self._feature("TriggerSource", source, lambda: cam.set_trigger(source))
        for name, value in cfg.features.items():
            self._feature(name, value, lambda n=name, v=value: self._set_any(n, v))
        cam.set_acquisition_mode(arv.AcquisitionMode.CONTINUOUS)

    def _set_any(self, name: str, value: str | int | float | bool) -> None:
        cam = self.cam
        if isinstance(value, bool):
            cam.set_boolean(name, value)
        elif isinstance(value, int):
            cam.set_integer(name, value)
        elif isinstance(value, float):
            cam.set_float(name, value)
        else:
            cam.set_string(name, value)

    def open(self) -> None:
        arv = load_aravis()
        if self.config.fake_interface:
            arv.enable_interface("Fake")
        device = self._device_id(arv)
        try:
            cam = arv.Camera.new(device)
        except Exception as exc:  # noqa: BLE001 - GLib.GError: unreachable, in use by another host
            raise SourceError(f"camera {self.camera}: cannot open GenICam camera {device}: "
                              f"{getattr(exc, 'message', None) or exc}") from None
        self._lost.clear()
        self._gone = False
        self._ready = False  # a trigger before acquisition runs would be fired into a half-set-up camera
        self._stalled = False
        with self._lock:
            self.cam = cam
        try:
            cam.get_device().connect("control-lost", lambda *_: self._lost.set())
            self._configure(arv)
            self.stream = cam.create_stream(None, None)
            payload = cam.get_payload()
            for _ in range(self.config.buffers):
                self.stream.push_buffer(arv.Buffer.new_allocate(payload))
            cam.start_acquisition()
            with self._lock:
                self._ready = True
        except SourceError:
            self.close()
            raise
        except Exception as exc:  # noqa: BLE001 - GLib.GError from the stream or acquisition start
            self.close()
            raise SourceError(f"camera {self.camera}: GenICam camera {device}: {getattr(exc, 'message', exc)}") \
                from None
        self.device = device
        self.last_frame_at = time.monotonic()
        self.success = arv.BufferStatus.SUCCESS

    def trigger(self, part: PartTrigger) -> bool:
        """Software trigger: take the picture of the announced part now (TriggerSoftware), and label
        the frame that answers it. A part the camera cannot be asked for (not connected, the command
        failed) becomes an error frame for that part, so its id never labels another part's frame."""
        if self.config.trigger != "software":
            return False
        with self._lock:
            cam = self.cam if self._ready else None
            if cam is None:
                log.warning("camera %s: part %s announced while the camera is not connected: no picture",
                            self.camera, part.part_id)
                self._missed.append((part, "the camera was not connected when the part was announced"))
                return True
            try:
                cam.software_trigger()
            except Exception as exc:  # noqa: BLE001 - reported, the grab loop notices a lost camera itself
                reason = f"GenICam feature TriggerSoftware failed: {getattr(exc, 'message', exc)}"
                log.warning("camera %s: part %s: %s", self.camera, part.part_id, reason)
                self._missed.append((part, reason))
                return True
            self._pending.append((part, time.monotonic() + self.config.timeout_ms / 1000))
        return True

    def _part_error(self) -> Frame | None:
        """An error frame for the oldest part that will get no picture: one the camera could not be asked
        for, or one whose frame did not come within ``timeout_ms`` of its trigger."""
        with self._lock:
            if not self._missed and self._pending and self._pending[0][1] < time.monotonic():
                part, _ = self._pending.popleft()
                self._missed.append((part, f"no frame came within {self.config.timeout_ms} ms of its trigger"))
                self._stalled = True  # as in free run: no frame for timeout_ms means the stream is gone
            if not self._missed:
                return None
            part, reason = self._missed.popleft()
        return Frame(self.camera, self._next_seq(), None, error=f"camera {self.camera}: no picture of part "
                     f"{part.part_id}: {reason}", source=f"genicam:{getattr(self, 'device', self.config.camera)}",
                     part_id=part.part_id, triggered_wall=part.triggered_wall)

    def read(self) -> Frame | None:
        cfg = self.config
        while not self.stop_event.is_set():
            if self._lost.is_set():
                self._gone = True
                raise SourceError(f"camera {self.camera}: GenICam camera {self.device} lost (control-lost)")
            if (missed := self._part_error()) is not None:
                return missed
            if self._stalled:  # the part got its error frame; now reconnect (a reopened stream that never
                self._gone = True  # delivers again was seen after a camera restart)
                raise SourceError(f"camera {self.camera}: GenICam camera {self.device} gave no frame within "
                                  f"{self.config.timeout_ms} ms of a software trigger (stream lost?)")
            buf = self.stream.timeout_pop_buffer(200_000)  # microseconds; short, to notice stop and loss
            self.heartbeat()
            if buf is None:
                if cfg.trigger == "free-run" and time.monotonic() - self.last_frame_at > cfg.timeout_ms / 1000:
                    self._gone = True
                    raise SourceError(f"camera {self.camera}: no frame from GenICam camera {self.device} for "
                                      f"{cfg.timeout_ms} ms (disconnected?)")
                continue
            self.last_frame_at = time.monotonic()
            try:
                frame = self._frame(buf)
            finally:
                self.stream.push_buffer(buf)  # the bytes were taken out: the buffer goes back to the pool
            with self._lock:
                part = self._pending.popleft()[0] if self._pending else None
            if part is not None and frame.part_id is None:  # the picture of the oldest triggered part
                frame.part_id, frame.triggered_wall = part.part_id, part.triggered_wall
            return frame
        return None

    def _frame(self, buf: Any) -> Frame:
        status = buf.get_status()
        frame_id = buf.get_frame_id()
        wall = buf.get_system_timestamp() / 1e9 or time.time()
        part = str(frame_id) if self.config.part_id_from == "frame_id" else None
        source = f"genicam:{self.device}#{frame_id}"
        if status != self.success:
            error = f"camera {self.camera}: incomplete frame {frame_id} ({status.value_nick})"
            return Frame(self.camera, self._next_seq(), None, captured_wall=wall, error=error, source=source,
                         part_id=part)
        try:
            width, height = buf.get_image_width(), buf.get_image_height()
            image = frame_to_bgr(buf.get_data(), width, height, self.config.pixel_format)
            image, error = to_bgr8(image, f"camera {self.camera}"), None
        except ImageDecodeError as exc:
            image, error = None, f"camera {self.camera}: frame {frame_id}: {exc}"
        return Frame(self.camera, self._next_seq(), image, captured_wall=wall, error=error, source=source,
                     part_id=part)

    def close(self) -> None:
        with self._lock:
            cam, self.cam = self.cam, None
            self._ready = False
            # triggered parts whose frames had not come: reported as error frames once reading resumes
            while self._pending:
                self._missed.append((self._pending.popleft()[0], "the camera was lost before its frame came"))
        # a camera that is gone would make stop_acquisition wait ~12 s in GVCP retries, blocking the
        # grab thread (reconnect, drain): it stopped streaming anyway
        stream, self.stream = self.stream, None
        if cam is not None and not self._gone:
            try:
                cam.stop_acquisition()
            except Exception:  # noqa: BLE001 - the camera may already be gone
                pass
        elif cam is not None:
            # releasing a vanished GigE camera waits for its control channel's retries (~9 s): let that
            # happen on a side thread, so the grab loop backs off and reconnects on its own schedule
            dead = [stream, cam]
            del stream, cam
            threading.Thread(target=dead.clear, name=f"genicam-release-{self.camera}", daemon=True).start()

    def describe(self) -> str:
        return f"GenICam camera {getattr(self, 'device', self.config.camera)} ({self.config.pixel_format}, " \
               f"{self.config.trigger})"
