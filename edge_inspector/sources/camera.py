"""A live camera through OpenCV ``VideoCapture``: USB/V4L2 index, RTSP/HTTP URL or GStreamer string.

A lost camera raises SourceError from ``read()``; the grab loop closes it, waits with exponential
backoff and reopens, while the other cameras keep running.
"""

from __future__ import annotations

import re

import cv2

from ..preprocess import ImageDecodeError, to_bgr8
from .base import Frame, Source, SourceError


def gstreamer_available() -> bool:
    """Whether this OpenCV was built with GStreamer (the PyPI wheels are not)."""
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line
    return False


def redact(device: int | str) -> str:
    """The device without credentials (rtsp://user:secret@host -> rtsp://***@host): verdicts and logs
    travel to MES consumers and log collectors, passwords must not."""
    return re.sub(r"(?<=://)[^/@\s]+@", "***@", str(device))


def open_capture(device: int | str) -> cv2.VideoCapture:
    """Pick the capture backend from the device string: '!' means a GStreamer pipeline."""
    if isinstance(device, int) or (isinstance(device, str) and device.isdigit()):
        return cv2.VideoCapture(int(device))
    if "!" in device:
        return cv2.VideoCapture(device, cv2.CAP_GSTREAMER)
    return cv2.VideoCapture(device)


class CameraSource(Source):
    type = "camera"

    def open(self) -> None:
        cfg = self.config
        self.cap = open_capture(cfg.device)
        if not self.cap.isOpened():
            self.cap.release()
            hint = ""
            if isinstance(cfg.device, str) and "!" in cfg.device and not gstreamer_available():
                hint = " (this OpenCV build has no GStreamer support: install the distribution's python3-opencv)"
            raise SourceError(f"camera {self.camera}: cannot open device {redact(cfg.device)!r}{hint}")
        for prop, value in ((cv2.CAP_PROP_FRAME_WIDTH, cfg.width), (cv2.CAP_PROP_FRAME_HEIGHT, cfg.height),
                            (cv2.CAP_PROP_FPS, cfg.fps)):
            if value:
                self.cap.set(prop, float(value))

    def read(self) -> Frame | None:
        ok, image = self.cap.read()
        if not ok or image is None:
            raise SourceError(f"camera {self.camera}: no frame from {redact(self.config.device)!r} (disconnected?)")
        try:
            image, error = to_bgr8(image, f"camera {self.camera}"), None
        except ImageDecodeError as exc:
            image, error = None, str(exc)
        return Frame(self.camera, self._next_seq(), image, error=error, source=redact(self.config.device))

    def close(self) -> None:
        cap = getattr(self, "cap", None)
        if cap is not None:
            cap.release()
