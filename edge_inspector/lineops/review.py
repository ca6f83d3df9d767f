"""Review capture: keep the frames a human should look at, in a folder the toolchain can train on.

Two kinds of frames are worth a human's time: those the model was unsure about (fused score within
``band`` of the 0.5 threshold) and those an operator flagged at the line. They are saved (the
inspected crop, lossless PNG, i.e. exactly what the models saw) in the plain dataset layout the
readers understand::

    <dir>/normal/<camera>_<frame>.png          verdict ok (or flagged as ok)
    <dir>/anomaly/<type>/<camera>_<frame>.png  verdict defect (type 'unknown' without a type)
    <dir>/review.csv                           file, camera, frame, score, verdict, reason, captured_at

The folder holds *provisional* labels: the reviewer moves a file between ``normal/`` and
``anomaly/<type>/`` to correct it, then ``edge-inspector train --include-review <dir>`` uses it
(``data/review.py`` merges it into the dataset: a toolchain step, kept out of this runtime room).
A quota on the number of frames stops capture (it never deletes: reviewed frames are work done by
people) and the skipped frames are counted.
"""

from __future__ import annotations

import csv
import logging
import threading
from collections import deque
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..card import NORMALISED_THRESHOLD
from ..messages import Verdict

log = logging.getLogger(__name__)


class ReviewConfig(BaseModel):
    """``review:`` section of config.yaml."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = Field(False, description="Save uncertain and flagged frames for review.")
    dir: Path = Field(Path("review"), description="Review folder (plain dataset layout: normal/, anomaly/<type>/).")
    band: float = Field(0.05, ge=0, le=0.5, description="Save frames whose fused score is within this distance "
                        "of the 0.5 threshold (0.05: scores 0.45-0.55).")
    max_frames: int = Field(1000, ge=1, description="Quota: frames kept in the folder; beyond it capture stops.")
    recent_frames: int = Field(32, ge=0, description="Frames per camera kept in memory so an operator can flag "
                               "a frame after its verdict (by camera and frame number).")
    flag_over_mqtt: bool = Field(
        True, description="Take operator flags from <prefix>/<line>/<camera>/flag on the broker of the first MQTT "
        "publisher; payload {\"frame\": N, \"label\": \"ok\" | \"defect\" | <defect type>} (label optional).")


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text) or "unknown"


class ReviewCapture:
    """Saves frames for review. ``observe`` runs on the decide thread; ``flag`` on any thread."""

    def __init__(self, config: ReviewConfig):
        self.config = config
        self.root = Path(config.dir)
        self._lock = threading.Lock()
        self._recent: dict[str, deque[tuple[Verdict, np.ndarray]]] = {}
        self.saved = self._count_existing()
        self.skipped = 0

    def _count_existing(self) -> int:
        index = self.root / "review.csv"
        if not index.is_file():
            return 0
        with open(index, newline="") as fh:
            return max(sum(1 for _ in fh) - 1, 0)

    @staticmethod
    def in_band(score: float | None, band: float) -> bool:
        return score is not None and abs(score - NORMALISED_THRESHOLD) <= band

    def observe(self, verdict: Verdict, crop: np.ndarray | None) -> str | None:
        """Remember the frame for flagging; save it when its score is in the band. Returns the reason."""
        if crop is None or verdict.verdict == "error":
            return None
        if self.config.recent_frames:
            recent = self._recent.setdefault(verdict.camera, deque(maxlen=self.config.recent_frames))
            with self._lock:
                recent.append((verdict, crop))
        if self.in_band(verdict.score, self.config.band):
            return "band" if self.save(verdict, crop, "band") else None
        return None

    def flag(self, camera: str, frame: int, label: str | None = None) -> bool:
        """An operator flagged ``camera``/``frame``: save it (``label``: 'ok', 'defect' or a defect type).

        False when the frame is no longer in memory or the quota is reached.
        """
        with self._lock:
            found = next(((v, c) for v, c in self._recent.get(camera, ()) if v.frame == frame), None)
        if found is None:
            log.warning("review: frame %s/%s is not among the recent frames; cannot capture it", camera, frame)
            return False
        return self.save(found[0], found[1], "flagged", label)

    def save(self, verdict: Verdict, crop: np.ndarray, reason: str, label: str | None = None) -> bool:
        with self._lock:
            if self.saved >= self.config.max_frames:
                self.skipped += 1
                return False
            self.saved += 1
        label = label or verdict.verdict
        if label == "ok":
            folder = self.root / "normal"
        else:
            kind = verdict.defect_type if label == "defect" else label
            folder = self.root / "anomaly" / _safe(kind or "unknown")
        import cv2  # here: the daemon's config validation need not load OpenCV for this module

        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{_safe(verdict.camera)}_{verdict.frame:08d}.png"
        if not cv2.imwrite(str(path), crop):
            log.error("review: cannot write %s", path)
            with self._lock:
                self.saved -= 1
            return False
        index = self.root / "review.csv"
        with self._lock:
            new = not index.exists()
            with open(index, "a", newline="") as fh:
                writer = csv.writer(fh)
                if new:
                    writer.writerow(["file", "camera", "frame", "score", "verdict", "reason", "captured_at"])
                writer.writerow([path.relative_to(self.root).as_posix(), verdict.camera, verdict.frame,
                                 verdict.score, verdict.verdict, reason, verdict.captured_at])
        return True

