"""A video file decoded with OpenCV, frame by frame (a recorded line played back)."""

from __future__ import annotations

import time

import cv2

from ..preprocess import ImageDecodeError, to_bgr8
from .base import Frame, Source, SourceError


class VideoSource(Source):
    type = "video"

    def open(self) -> None:
        path = self.config.path
        if not path.is_file():
            raise SourceError(f"video {path}: file not found")
        self.cap = cv2.VideoCapture(str(path))
        if not self.cap.isOpened():
            raise SourceError(f"video {path}: OpenCV cannot open it (unsupported container or codec?)")
        self.started = time.monotonic()
        self.count = 0
        self.position = 0

    def read(self) -> Frame | None:
        ok, image = self.cap.read()
        if not ok:
            if not self.config.loop or self.position == 0:
                return None
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            self.position = 0
            ok, image = self.cap.read()
            if not ok:
                return None
        self._pace(self.config.rate_fps, self.started, self.count)
        self.count += 1
        label = f"{self.config.path.name}#{self.position}"
        self.position += 1
        try:
            image, error = to_bgr8(image, label), None
        except ImageDecodeError as exc:
            image, error = None, str(exc)
        return Frame(self.camera, self._next_seq(), image, error=error, source=label)

    def close(self) -> None:
        cap = getattr(self, "cap", None)
        if cap is not None:
            cap.release()
