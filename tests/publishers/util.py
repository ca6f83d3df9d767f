"""Helpers shared by the publisher tests."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from edge_inspector.messages import Verdict, utc_now_iso


def make_verdict(frame: int, camera: str = "cam1", line: str = "line1", verdict: str = "ok") -> Verdict:
    return Verdict(
        line=line,
        camera=camera,
        frame=frame,
        captured_at=utc_now_iso(),
        verdict=verdict,  # type: ignore[arg-type]
        score=0.1 if verdict == "ok" else 0.9,
        latency_ms={"infer": 1.5},
    )


def unique_prefix() -> str:
    """A topic prefix of its own per test, so retained status messages never leak between tests."""
    return f"t-{uuid.uuid4().hex[:8]}"


def wait_until(cond: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def sample(metrics: object, name: str, labels: dict[str, str] | None = None) -> float:
    """The current value of one series of a Metrics registry (0.0 when absent)."""
    value = metrics.registry.get_sample_value(name, labels or {})  # type: ignore[attr-defined]
    return 0.0 if value is None else float(value)
