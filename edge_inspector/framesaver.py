"""Saving inspected frames (none / defects / all / 1-in-N) as JPEG with a heatmap overlay, under a quota.

Why a quota that deletes the oldest first: the daemon runs for months on an industrial PC with a
small disk; saved evidence must never fill it, and the newest frames are the ones worth keeping.
Layout: ``<dir>/YYYY-MM-DD/<camera>/<frame>.jpg`` (the frame as grabbed) and, with ``overlay`` and a
detector's map, ``<frame>_overlay.jpg`` beside it (heatmap + region boxes): the raw frame stays
available for re-labelling and training, the overlay is what a person looks at. The verdict's
``image`` field holds the raw frame's path relative to the parent of ``dir`` (e.g.
``frames/2026-11-22/cam-0/18342.jpg``), which is what the console's ``--frames-root`` expects.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

from .messages import Verdict

log = logging.getLogger(__name__)


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
    def __init__(self, config):
        self.config = config
        self.root = Path(config.dir)
        self.quota = int(config.quota_mb * 1024 * 1024)
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
        path = folder / f"{verdict.frame}.jpg"
        if not self._write(path, image):
            return None
        if self.config.overlay and (anomaly_map is not None or verdict.regions):
            self._write(folder / f"{verdict.frame}_overlay.jpg", overlay(image, anomaly_map, roi, verdict))
        self._enforce_quota()
        return str(Path(self.root.name) / day / verdict.camera / path.name)

    def _write(self, path: Path, picture: np.ndarray) -> bool:
        ok, data = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, self.config.jpeg_quality])
        if not ok:
            log.warning("%s: JPEG encoding failed; not saved", path)
            return False
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data.tobytes())
        except OSError as exc:
            log.warning("cannot save %s: %s", path, exc)
            return False
        size = on_disk(len(data))
        self.files.append((path, size))
        self.total += size
        return True

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
