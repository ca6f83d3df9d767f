"""Line operations glued to the pipeline: drift alarm, shadow comparison, review capture.

Why one small coordinator: the pipeline keeps a few one-line hooks (``admit_shadow`` in the
inference stage, ``after_decide`` in the decide stage, ``dispatch`` in the publish stage) and all
the logic lives in drift.py, shadow.py and review.py. A reload hands the previous coordinator to
the new one, so the drift reference and agreement counts survive a SIGHUP when their settings did
not change.

Extra messages (drift alarms, shadow verdicts) travel as :class:`Event` with the frame through the
publish stage, so they are ordered after the frame's verdict. A publisher receives them when it
is an ``publishers.base.EventSink`` (MQTT, ZeroMQ and Sparkplug are); others (JSONL) ignore them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ..messages import Verdict
from ..metrics import OpsMetrics
from ..publishers.base import EventSink
from .drift import DriftMonitor, load_reference
from .review import ReviewCapture
from .shadow import ShadowGate, compare, shadow_verdict

log = logging.getLogger(__name__)


@dataclass
class Event:
    """A message besides the verdict: ``kind`` is the last topic level ('alarm', 'shadow')."""

    kind: str
    camera: str
    payload: str


class Operations:
    def __init__(self, cfg: Any, metrics: Any, previous: Operations | None = None):
        self.cfg = cfg
        self.m: OpsMetrics = metrics.ops  # registered by Metrics() itself, so a fresh exporter lists them
        keep = previous is not None
        self.drift_cfg = cfg.drift
        self.reference = load_reference(cfg.drift.reference_file) if cfg.drift.reference_file else None
        self.monitors: dict[str, DriftMonitor] = (
            previous.monitors if keep and previous.drift_cfg == cfg.drift else {})
        self.gate = ShadowGate(cfg.shadow)
        self.shadow_counts: dict[str, dict[str, int]] = previous.shadow_counts if keep else {}
        review_same = keep and previous.review is not None and previous.review.config == cfg.review
        self.review = (previous.review if review_same else ReviewCapture(cfg.review)) if cfg.review.enabled else None
        if keep and not review_same:
            previous.close()  # the capture changed: its flag listener goes with it
        self.flags = self._flag_listener(cfg, previous if review_same else None)
        self._admitted = True

    def _flag_listener(self, cfg: Any, previous: Operations | None) -> Any:
        """Operator flags over MQTT, when review is on and an MQTT publisher names the broker."""
        if previous is not None:
            listener, previous.flags = previous.flags, None  # the same capture: keep its listener
            return listener
        if self.review is None or not cfg.review.flag_over_mqtt:
            return None
        mqtt_cfg = next((p for p in cfg.publishers if p.type == "mqtt"), None)
        if mqtt_cfg is None:
            return None
        from .flags import FlagListener

        return FlagListener(self.review, mqtt_cfg, cfg.line)

    def close(self) -> None:
        """Stop the flag listener (the daemon calls this at shutdown)."""
        if self.flags is not None:
            self.flags.close()
            self.flags = None

    # -- inference stage --------------------------------------------------------------------------
    def admit_shadow(self, model: str, n_frames: int, backlog: int, first: bool) -> bool:
        """Whether shadow ``model`` runs on this batch; skipped frames are counted.

        ``first``: first shadow model of the batch (the gate decides once per batch for all of them).
        """
        if first:
            self._admitted = self.gate.admit(backlog)
        if not self._admitted:
            self.m.shadow_frames.labels(model=model, result="skipped").inc(n_frames)
            self._bump(model, "skipped", n_frames)
        return self._admitted

    # -- decide stage ---------------------------------------------------------------------------
    def after_decide(self, verdict: Verdict, crop: Any, outcomes: list[Any]) -> list[Event]:
        events: list[Event] = []
        for o in outcomes:
            if getattr(o, "role", "primary") == "shadow":
                events += self._shadow(verdict, o.name)
        if self.drift_cfg.enabled and verdict.verdict == "ok" and verdict.score is not None:
            events += self._drift(verdict)
        if self.review is not None:
            before = self.review.skipped
            reason = self.review.observe(verdict, crop)
            if reason:
                self.m.review_frames.labels(reason=reason).inc()
            if self.review.skipped > before:
                self.m.review_skipped.inc(self.review.skipped - before)
        return events

    def _bump(self, model: str, result: str, n: int = 1) -> None:
        counts = self.shadow_counts.setdefault(model, {})
        counts[result] = counts.get(result, 0) + n

    def _shadow(self, verdict: Verdict, name: str) -> list[Event]:
        vote = next((v for v in verdict.models if v.name == name), None)
        if vote is None:
            return []
        result = compare(verdict.verdict, vote.verdict or "error") or "error"
        self.m.shadow_frames.labels(model=name, result=result).inc()
        self._bump(name, result)
        c = self.shadow_counts[name]
        compared = c.get("agree", 0) + c.get("shadow_only_defect", 0) + c.get("primary_only_defect", 0)
        if compared:
            self.m.shadow_agreement.labels(model=name).set(c.get("agree", 0) / compared)
        if not self.cfg.shadow.publish:
            return []
        return [Event("shadow", verdict.camera, shadow_verdict(verdict, vote).to_json())]

    def _drift(self, verdict: Verdict) -> list[Event]:
        monitor = self.monitors.get(verdict.camera)
        if monitor is None:
            state = None if self.cfg.state_dir is None else self.cfg.state_dir / f"{verdict.camera}.drift.json"
            monitor = self.monitors[verdict.camera] = DriftMonitor(self.drift_cfg, self.reference, state)
        state = monitor.observe(float(verdict.score))
        if state is None:
            return []
        self.m.drift_psi.labels(camera=verdict.camera).set(state.psi)
        self.m.drift_shift.labels(camera=verdict.camera).set(state.shift)
        self.m.drift_alarm.labels(camera=verdict.camera).set(1 if state.alarm else 0)
        if state.changed is None:
            return []
        log.warning("camera %s: drift alarm %s (PSI %.3f, median shift %+.3f)", verdict.camera, state.changed,
                    state.psi, state.shift)
        return [Event("alarm", verdict.camera, monitor.alarm_message(verdict.line, verdict.camera, state))]

    # -- publish stage --------------------------------------------------------------------------
    @staticmethod
    def dispatch(events: list[Event], sinks: list[EventSink], line: str) -> None:
        """Hand each event to every publisher that takes events (``Generation.event_sinks``); a failing
        sink is logged, not fatal."""
        for ev in events:
            for sink in sinks:
                try:
                    sink.publish_event(ev.kind, line, ev.camera, ev.payload)
                except Exception as exc:  # noqa: BLE001 - one broken sink must not stop the others
                    log.error("publisher %s failed on %s event for %s: %s", sink.name, ev.kind, ev.camera, exc)
