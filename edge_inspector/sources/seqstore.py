"""Per-camera frame counters that stay unique across source restarts, reloads and daemon restarts.

Why: consumers deduplicate verdicts on (camera, frame) because MQTT delivery is at-least-once. If a
restarted daemon numbered frames from 0 again, an MES that already saw frame 0..N would discard the
new verdicts as duplicates. Counters are persisted as *reservations*: the file holds the first
number not yet handed out plus a block, written (atomically, fsynced) once per ``block`` frames, so
the cost is one small write per thousand frames and a crash only skips numbers, never repeats them.
Without a folder the counters live in memory (unique within one run, restart at 0).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

log = logging.getLogger(__name__)


class SeqStore:
    def __init__(self, folder: Path | None, block: int = 1000):
        self.folder = Path(folder) if folder is not None else None
        self.block = block
        self.limits: dict[str, int] = {}  # first number not covered by the written reservation
        self.next: dict[str, int] = {}  # in-memory continuation for re-created sources
        self.lock = threading.Lock()
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)

    def _file(self, camera: str) -> Path:
        assert self.folder is not None
        return self.folder / f"{camera}.seq"

    def start(self, camera: str) -> int:
        """The first frame number to use for ``camera`` now (and reserve a block after it)."""
        with self.lock:
            if camera in self.next:
                return self.next[camera]
            start = 0
            if self.folder is not None:
                try:
                    start = int(self._file(camera).read_text().strip() or 0)
                except FileNotFoundError:
                    start = 0
                except (OSError, ValueError) as exc:
                    log.warning("frame counter %s unreadable (%s); starting at 0", self._file(camera), exc)
                self._reserve(camera, start + self.block)
            self.next[camera] = start
            return start

    def advance(self, camera: str, seq: int) -> None:
        """Record that ``seq`` was handed out; extend the reservation when it runs out."""
        with self.lock:
            self.next[camera] = seq + 1
            if self.folder is not None and seq + 1 >= self.limits.get(camera, 0):
                self._reserve(camera, seq + 1 + self.block)

    def _reserve(self, camera: str, limit: int) -> None:
        path = self._file(camera)
        tmp = path.with_suffix(".tmp")
        try:
            with open(tmp, "w") as fh:
                fh.write(f"{limit}\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("cannot persist frame counter %s: %s (numbers may repeat after a restart)", path, exc)
        self.limits[camera] = limit
