"""Replay of a recorded image folder, in sorted name order, paced or as fast as possible."""

from __future__ import annotations

import time

from ..parts import compile_part_pattern, part_from_name
from ..preprocess import ImageDecodeError, decode_image
from .base import Frame, Source, SourceError, list_images


class ReplaySource(Source):
    """Why sorted order and seq = file index: a replay is a reproducible experiment; the same folder
    gives the same (camera, frame) keys every time, so two runs' verdicts can be diffed."""

    type = "replay"
    numbered = False  # seq = file index, whatever the daemon's counters say

    def open(self) -> None:
        folder = self.config.path
        if not folder.is_dir():
            raise SourceError(f"replay {folder}: not a folder")
        self.files = list_images(folder, self.config.pattern)
        if not self.files:
            raise SourceError(f"replay {folder}: no files matching {self.config.pattern}")
        self.index = 0
        self.started = time.monotonic()
        self.count = 0

    def read(self) -> Frame | None:
        if self.index >= len(self.files):
            if not self.config.loop:
                return None
            self.index = 0
        path = self.files[self.index]
        self.index += 1
        self._pace(self.config.rate_fps, self.started, self.count)
        self.count += 1
        part_id = part_from_name(compile_part_pattern(self.config.part_id_pattern), path.name)
        if self.defer_decode:  # the pipeline's decode pool decodes, in parallel and at reduced size
            return Frame(self.camera, self._next_seq(), None, source=str(path), encoded=path, part_id=part_id)
        try:
            image, error = decode_image(path), None
        except ImageDecodeError as exc:
            image, error = None, str(exc)
        return Frame(self.camera, self._next_seq(), image, error=error, source=str(path), part_id=part_id)

    def describe(self) -> str:
        rate = f"{self.config.rate_fps:g} fps" if self.config.rate_fps else "as fast as possible"
        return f"replay {self.config.path} ({rate})"
