"""Drift alarm per camera: has the score distribution of *good* parts moved?

Why watch OK frames only: defects are rare and their scores are supposed to vary; the scores of
good parts are the line's baseline. When lighting changes, a lens gets dirty or a new batch of
material arrives, good parts start scoring differently long before the model starts rejecting them
(or silently stops rejecting defects).

Two figures are computed over a rolling window of the last ``window`` OK scores against a
reference (the first ``reference_frames`` OK scores after start, or a list of calibration scores
from ``reference_file``):

* the population-stability index (PSI) over quantile bins of the reference: "did the shape move?";
* the shift of the median, in normalised score units (0.5 is the threshold): "by how much?".

The alarm needs both (``psi > psi_bound`` *and* ``|shift| > min_shift``): with a very tight
reference a PSI is huge for a change nobody cares about, and with a noisy one a small window
gives a noisy PSI (two samples of 50 from the same distribution give a median PSI of 0.35 over
10 bins). It clears with hysteresis (either figure below half its bound), and a state holds for
at least ``min_hold_frames`` OK frames (default: one full window, so every flip is judged on
frames the previous one did not see) before it may flip again: a median wavering around
``min_shift`` raised and cleared 5 times in 75 s for the integrators, each flap an alarm message
to the MES. Raise ``min_hold_frames`` to bound the alarm rate further.
"""

from __future__ import annotations

import json
import math
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..messages import utc_now_iso


class DriftConfig(BaseModel):
    """``drift:`` section of config.yaml."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = Field(False, description="Track the OK-score distribution per camera and raise drift alarms.")
    reference_frames: int = Field(
        200, ge=10, description="OK frames after start that form the reference (when no reference_file).")
    reference_file: Path | None = Field(
        None, description="JSON with normalised calibration scores of good images: a list, or {\"scores\": [...]}.")
    window: int = Field(200, ge=10, description="Rolling window of recent OK frames compared with the reference.")
    bins: int = Field(10, ge=2, le=50, description="Quantile bins of the reference used by the PSI.")
    psi_bound: float = Field(0.25, gt=0, description="PSI above which the distribution counts as moved "
                             "(0.1 = slight, 0.25 = significant in credit-risk practice).")
    min_shift: float = Field(0.03, ge=0, description="Median shift (normalised score units) also needed to alarm.")
    min_hold_frames: int | None = Field(
        None, ge=1, description="OK frames an alarm state (raised or cleared) holds before it may flip again; "
        "None: one full window.")


@dataclass
class DriftState:
    """What one evaluation found; ``changed`` is 'raised'/'cleared' when the alarm state flipped."""

    psi: float
    shift: float
    alarm: bool
    changed: str | None = None


def load_reference(path: Path) -> list[float]:
    """Scores from a reference file; DriftError-free: raises ValueError naming the file."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read drift reference scores ({exc})") from exc
    scores = data.get("scores") if isinstance(data, dict) else data
    if not isinstance(scores, list) or len(scores) < 10 or not all(isinstance(s, int | float) for s in scores):
        raise ValueError(f"{path}: expected a list of at least 10 numbers, or {{\"scores\": [...]}}")
    return [float(s) for s in scores]


def psi(reference: np.ndarray, current: np.ndarray, bins: int) -> float:
    """Population-stability index of ``current`` against quantile bins of ``reference``."""
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1))[1:-1])
    ref_counts = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=len(edges) + 1)
    cur_counts = np.bincount(np.searchsorted(edges, current, side="right"), minlength=len(edges) + 1)
    eps = 1e-4  # an empty bin must not make the index infinite
    p = np.maximum(ref_counts / max(len(reference), 1), eps)
    q = np.maximum(cur_counts / max(len(current), 1), eps)
    return float(np.sum((q - p) * np.log(q / p)))


class DriftMonitor:
    """Rolling comparison for one camera. Not thread-safe: the decide stage is its only caller."""

    def __init__(self, config: DriftConfig, reference: list[float] | None = None, state_path: Path | None = None):
        """``state_path``: where a learned (warm-up) reference is kept, so a restart compares against the
        same baseline instead of learning a new one from frames that may already have drifted."""
        self.config = config
        self.state_path = state_path
        if reference is None and state_path is not None and Path(state_path).is_file():
            try:
                reference = load_reference(state_path)
            except ValueError:
                reference = None  # a damaged state file: learn the reference again
        self.reference: list[float] = list(reference or [])
        self.fixed_reference = reference is not None
        self.window: deque[float] = deque(maxlen=config.window)
        self.alarm = False
        self.last: DriftState | None = None
        self._held = 0  # OK frames evaluated since the last flip

    @property
    def ready(self) -> bool:
        return len(self.reference) >= (10 if self.fixed_reference else self.config.reference_frames)

    def observe(self, score: float) -> DriftState | None:
        """Add one OK frame's normalised score; return the evaluation once window and reference are full."""
        if not math.isfinite(score):
            return None
        if not self.ready:
            self.reference.append(score)
            if self.ready and self.state_path is not None:
                Path(self.state_path).parent.mkdir(parents=True, exist_ok=True)
                Path(self.state_path).write_text(json.dumps({"scores": self.reference}) + "\n")
            return None
        self.window.append(score)
        if len(self.window) < self.config.window:
            return None
        ref, cur = np.asarray(self.reference), np.asarray(self.window)
        value = psi(ref, cur, self.config.bins)
        shift = float(np.median(cur) - np.median(ref))
        changed = None
        self._held += 1
        hold = self.config.min_hold_frames or self.config.window
        may_flip = self.last is None or self._held >= hold
        if not self.alarm and value > self.config.psi_bound and abs(shift) > self.config.min_shift and may_flip:
            self.alarm, changed = True, "raised"
        elif self.alarm and may_flip and (value < self.config.psi_bound / 2
                                          or abs(shift) < self.config.min_shift / 2):
            self.alarm, changed = False, "cleared"
        if changed:
            self._held = 0
        self.last = DriftState(psi=value, shift=shift, alarm=self.alarm, changed=changed)
        return self.last

    def alarm_message(self, line: str, camera: str, state: DriftState) -> str:
        """The JSON published on ``<prefix>/<line>/<camera>/alarm`` when the state flips."""
        return json.dumps({
            "schema": 1, "line": line, "camera": camera, "alarm": "drift", "state": state.changed,
            "active": state.alarm, "at": utc_now_iso(), "psi": round(state.psi, 4),
            "median_shift": round(state.shift, 4), "psi_bound": self.config.psi_bound,
            "min_shift": self.config.min_shift, "window": self.config.window,
            "reference_median": round(float(np.median(self.reference)), 4),
            "window_median": round(float(np.median(self.window)), 4),
        })
