"""JSON-lines file sink: one verdict per line, flushed per message, optional fsync, size rotation.

Why: the simplest audit trail a quality engineer can grep or load into pandas, and a fallback
when no broker exists on the line. Rotation renames ``path`` -> ``path.1`` -> ... ``path.N``
(the oldest beyond ``rotate_keep`` is deleted), like logrotate, so ``tail -F`` keeps working.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING

from edge_inspector.messages import Verdict
from edge_inspector.publishers.base import PublisherError
from edge_inspector.publishers.config import JsonlConfig

if TYPE_CHECKING:
    from edge_inspector.metrics import Metrics

log = logging.getLogger(__name__)


class JsonlPublisher:
    """Append verdicts to a file; thread-safe; failures are counted, not raised."""

    name = "jsonl"

    def __init__(self, cfg: JsonlConfig, *, line: str, metrics: Metrics) -> None:
        self.cfg = cfg
        self.line = line
        self.metrics = metrics
        self.path = Path(cfg.path)
        self._max_bytes = int(cfg.rotate_size_mb * 1024 * 1024) if cfg.rotate_size_mb else None
        self._lock = threading.Lock()
        self._file: IO[bytes] | None = None
        self._logged_at = -1e9
        self._failures_since_log = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # unbuffered: a line is written by one write() (or fails visibly), never left half in a buffer
            self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115 - kept open for its lifetime
        except OSError as exc:
            raise PublisherError(f"jsonl publisher: cannot open {self.path} for appending: {exc}") from exc

    def publish(self, verdict: Verdict) -> None:
        """Write one line; rotate first when the file would exceed the size limit."""
        data = verdict.to_json().encode() + b"\n"
        start = time.perf_counter()
        with self._lock:
            if self._file is None:
                self.metrics.publish_failures_total.labels(sink=self.name).inc()
                log.warning("jsonl publisher %s is closed; verdict %s/%s not written", self.path, verdict.camera,
                            verdict.frame)
                return
            pos = None
            try:
                if self._max_bytes is not None and self._file.tell() > 0 and \
                        self._file.tell() + len(data) > self._max_bytes:
                    self._rotate()
                pos = os.fstat(self._file.fileno()).st_size  # where this line starts (appends go to the end)
                done = 0
                while done < len(data):
                    done += self._file.write(data[done:]) or 0
                if self.cfg.fsync:
                    os.fsync(self._file.fileno())
            except OSError as exc:
                self._failed(verdict, exc, pos)
        self.metrics.publish_seconds.labels(sink=self.name).observe(time.perf_counter() - start)

    def _failed(self, verdict: Verdict, exc: OSError, pos: int | None) -> None:
        """Count the failure; cut off a partly written line (a full disk) so the next line starts clean;
        log at most one ERROR per 10 s (a full disk fails every verdict), with the count since the last."""
        self.metrics.publish_failures_total.labels(sink=self.name).inc()
        if pos is not None and self._file is not None:
            try:
                os.ftruncate(self._file.fileno(), pos)  # the part of the line that made it to disk
                self._file.seek(pos)
            except OSError:
                pass
        self._failures_since_log += 1
        now = time.monotonic()
        if now - self._logged_at >= 10.0:
            log.error("jsonl publisher: writing %s failed: %s (verdict %s/%s; %d failure(s) since the last message)",
                      self.path, exc, verdict.camera, verdict.frame, self._failures_since_log)
            self._logged_at, self._failures_since_log = now, 0

    def _rotate(self) -> None:
        assert self._file is not None
        self._file.close()
        self._file = None
        keep = self.cfg.rotate_keep
        oldest = self.path.with_name(f"{self.path.name}.{keep}")
        if oldest.exists():
            oldest.unlink()
        for i in range(keep - 1, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{i}")
            if src.exists():
                src.rename(self.path.with_name(f"{self.path.name}.{i + 1}"))
        self.path.rename(self.path.with_name(f"{self.path.name}.1"))
        self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115
        log.info("jsonl publisher rotated %s", self.path)

    def close(self, timeout: float = 10.0) -> None:
        """Flush (and fsync when configured) and close the file. Idempotent."""
        with self._lock:
            f, self._file = self._file, None
        if f is None:
            return
        try:
            f.flush()
            if self.cfg.fsync:
                os.fsync(f.fileno())
        finally:
            f.close()
