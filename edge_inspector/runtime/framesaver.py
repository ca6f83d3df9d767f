"""Saving inspected frames (none / defects / all / 1-in-N) as JPEG with a heatmap overlay, under a quota.

Why a quota that deletes the oldest first: the daemon runs for months on an industrial PC with a
small disk; saved evidence must never fill it, and the newest frames are the ones worth keeping.
Layout: ``<dir>/YYYY-MM-DD/<camera>/<frame>-<run>.jpg`` (the frame as grabbed) and, with ``overlay``
and a detector's map, ``<frame>-<run>_overlay.jpg`` beside it (heatmap + region boxes): the raw frame
stays available for re-labelling and training, the overlay is what a person looks at. The verdict's
``image`` field holds the raw frame's path relative to the parent of ``dir`` (e.g.
``frames/2026-11-22/cam-0/18342-101530-3fa9.jpg``), which is what the console's ``--frames-root`` expects.

Why ``<run>`` (the daemon's start time and a random tag): frame numbers restart at 0 with every replay
and, without ``state_dir``, with every daemon start; saved evidence must never be overwritten by the
next run's part with the same number (F9 in the 2026-12 red-team review). A name that exists anyway
is never overwritten either: the file is created exclusively.

Free-space floor (``min_free_mb``): frames are not saved (counted in ``frames_not_saved_total``, logged
once a minute) while the disk holding ``dir`` has less free space than that, so saved evidence can never
take the space the MQTT spool and the JSONL audit trail need (usually on the same disk). Saving
degrades first; verdicts keep flowing.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections import deque
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

from ..messages import Verdict

log = logging.getLogger(__name__)

#: This process's run tag in saved file names (start time + random): unique across restarts and replays.
RUN_ID = f"{datetime.now(UTC).strftime('%H%M%S')}-{secrets.token_hex(2)}"


def on_disk(size: int, block: int = 4096) -> int:
    """Bytes a file really occupies (whole filesystem blocks): small JPEGs cost 4 kB each, and the
    quota is about the disk filling up, not about the sum of file lengths."""
    return -(-size // block) * block


def overlay(image: np.ndarray, anomaly_map: np.ndarray | None, roi: tuple[int, int, int, int] | None,
            verdict: Verdict) -> np.ndarray:
    """Blend a JET heatmap of the normalised map onto the ROI and outline the regions."""
    out = image.copy()
    if anomaly_map is not None:
        x, y = (roi[0], roi[1]) if roi else (0, 0)
        H, W = out.shape[:2]
        w, h = (min(roi[2], W - x), min(roi[3], H - y)) if roi else (W, H)
        if w > 0 and h > 0:
            heat = cv2.resize((np.clip(anomaly_map, 0, 1) * 255).astype(np.uint8), (w, h),
                              interpolation=cv2.INTER_LINEAR)
            colour = cv2.applyColorMap(heat, cv2.COLORMAP_JET)
            out[y:y + h, x:x + w] = cv2.addWeighted(out[y:y + h, x:x + w], 0.6, colour, 0.4, 0)
    for r in verdict.regions:
        cv2.rectangle(out, (r.x, r.y), (r.x + r.w - 1, r.y + r.h - 1), (0, 0, 255), 2)
    return out


class FrameSaver:
    def __init__(self, config, metrics=None):
        self.config = config
        self.metrics = metrics
        self.root = Path(config.dir)
        self.quota = int(config.quota_mb * 1024 * 1024)
        self._free: int | None = None
        self._warned_at: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.files: deque[tuple[Path, int]] = deque()
        self.total = 0
        if config.mode != "none":
            self._scan()

    def _scan(self) -> None:
        """Account for files saved by earlier runs, oldest first, so the quota covers them too."""
        found = []
        if self.root.is_dir():
            for dirpath, _dirs, names in os.walk(self.root):
                for name in names:
                    if name.endswith(".jpg"):
                        p = Path(dirpath) / name
                        try:
                            st = p.stat()
                        except OSError:
                            continue
                        found.append((st.st_mtime, p, on_disk(st.st_size)))
        found.sort()
        self.files = deque((p, size) for _, p, size in found)
        self.total = sum(size for _, _, size in found)

    def wants(self, verdict: Verdict) -> bool:
        mode = self.config.mode
        if mode == "none":
            return False
        if mode == "all":
            return True
        if mode == "defects":
            return verdict.verdict == "defect"
        n = self.counts.get(verdict.camera, 0)
        self.counts[verdict.camera] = n + 1
        return n % self.config.sample_every == 0

    def save(self, verdict: Verdict, image: np.ndarray | None, anomaly_map: np.ndarray | None,
             roi: tuple[int, int, int, int] | None) -> str | None:
        """Save the frame if the mode asks for it; return the relative path (or None)."""
        if image is None or not self.wants(verdict):
            return None
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        folder = self.root / day / verdict.camera
        if not self._room(folder):
            return None
        stem = f"{verdict.frame}-{RUN_ID}"
        path = self._write(folder, stem, image)
        if path is None:
            return None
        if self.config.overlay and (anomaly_map is not None or verdict.regions):
            self._write(folder, f"{path.stem}_overlay", overlay(image, anomaly_map, roi, verdict))
        self._enforce_quota()
        return str(Path(self.root.name) / day / verdict.camera / path.name)

    def _room(self, folder: Path) -> bool:
        """False while the disk is below the free-space floor (statvfs before every save: microseconds,
        and a replay at full speed saves hundreds of frames a second)."""
        floor = int(self.config.min_free_mb * 1024 * 1024)
        if floor <= 0:
            return True
        probe = self.root
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        try:
            st = os.statvfs(probe)
            self._free = st.f_bavail * st.f_frsize
        except OSError:
            self._free = None
        if self._free is None or self._free >= floor:
            return True
        self._not_saved("disk_floor", f"frames not saved: {self._free / 2**20:.0f} MiB free on the disk of "
                        f"{self.root}, below saving.min_free_mb {self.config.min_free_mb:g} (verdicts continue)")
        return False

    def _not_saved(self, reason: str, message: str) -> None:
        if self.metrics is not None:
            self.metrics.frames_not_saved_total.labels(reason=reason).inc()
        now = time.monotonic()
        if now - self._warned_at.get(reason, -1e9) >= 60.0:  # a full disk must not flood the journal
            self._warned_at[reason] = now
            log.warning("%s", message)

    def _write(self, folder: Path, stem: str, picture: np.ndarray) -> Path | None:
        ok, data = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, self.config.jpeg_quality])
        if not ok:
            log.warning("%s/%s.jpg: JPEG encoding failed; not saved", folder, stem)
            return None
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for n in range(100):  # never overwrite: a name that exists gets a suffix
                path = folder / (f"{stem}.jpg" if n == 0 else f"{stem}.{n}.jpg")
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                    break
                except FileExistsError:
                    continue
            else:
                raise OSError(f"100 files named {stem}*.jpg exist already")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data.tobytes())
            except OSError:
                path.unlink(missing_ok=True)  # no half-written evidence on a full disk
                raise
        except OSError as exc:
            self._not_saved("error", f"cannot save {folder}/{stem}.jpg: {exc}")
            return None
        size = on_disk(len(data))
        self.files.append((path, size))
        self.total += size
        return path

    def _enforce_quota(self) -> None:
        while self.total > self.quota and len(self.files) > 1:
            old, size = self.files.popleft()
            self.total -= size
            try:
                old.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("cannot delete %s for the quota: %s", old, exc)
            for parent in (old.parent, old.parent.parent):  # drop emptied camera/day folders
                try:
                    parent.rmdir()
                except OSError:
                    break
