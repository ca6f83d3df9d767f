"""Shadow models: try a new model on the live line without letting it decide anything.

A model with ``role: shadow`` is run by the inference stage on the same frames as the primary
models (its vote is listed in the verdict, but fusion ignores it). This module adds what makes a
shadow trial useful:

* a gate that lets the shadow skip frames when the line is busy (``every`` N-th frame only, or none
  while more than ``max_backlog`` frames wait for inference), counting every skipped frame, so the
  primary's latency never pays for the experiment and the report says how much was compared;
* the comparison with the primary verdict (agree, or which kind of disagreement) as Prometheus
  counters and an agreement-rate gauge;
* a verdict message of its own, published on ``<prefix>/<line>/<camera>/shadow``.

``summarise`` gives the same figures offline from verdict JSON lines (``shadow-report``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from ..messages import ModelVote, Verdict

#: Comparison outcomes: both agree, or which side called the defect.
AGREE, SHADOW_ONLY, PRIMARY_ONLY = "agree", "shadow_only_defect", "primary_only_defect"


class ShadowConfig(BaseModel):
    """``shadow:`` section of config.yaml (applies to models with role 'shadow')."""

    model_config = ConfigDict(extra="forbid")
    every: int = Field(1, ge=1, description="Run shadow models on one batch in this many (1 = every batch).")
    max_backlog: int | None = Field(
        None, ge=0, description="Skip shadow models while more than this many frames wait for inference "
        "(the primary's latency comes first). None: never skip for backlog.")
    publish: bool = Field(True, description="Publish the shadow's own verdicts on <prefix>/<line>/<camera>/shadow.")


def compare(primary: str, shadow: str) -> str | None:
    """Outcome of one frame; None when either side has no ok/defect opinion (error)."""
    if primary not in ("ok", "defect") or shadow not in ("ok", "defect"):
        return None
    if primary == shadow:
        return AGREE
    return SHADOW_ONLY if shadow == "defect" else PRIMARY_ONLY


class ShadowGate:
    """Decides per batch whether shadow models run. Called from the inference thread only."""

    def __init__(self, config: ShadowConfig):
        self.config = config
        self.batches = 0

    def admit(self, backlog: int) -> bool:
        self.batches += 1
        if self.config.max_backlog is not None and backlog > self.config.max_backlog:
            return False
        return (self.batches - 1) % self.config.every == 0


def shadow_verdict(primary: Verdict, vote: ModelVote) -> Verdict:
    """The shadow's own verdict for the frame: the same frame key, the shadow's score and call."""
    return Verdict(line=primary.line, camera=primary.camera, frame=primary.frame,
                   captured_at=primary.captured_at, verdict=vote.verdict or "error", score=vote.score,
                   defect_type=vote.defect_type, models=[vote], source=primary.source)


@dataclass
class ShadowSummary:
    """Agreement of one shadow model with the primary verdicts."""

    model: str
    counts: Counter = field(default_factory=Counter)

    @property
    def compared(self) -> int:
        return self.counts[AGREE] + self.counts[SHADOW_ONLY] + self.counts[PRIMARY_ONLY]

    @property
    def agreement(self) -> float | None:
        return self.counts[AGREE] / self.compared if self.compared else None

    def as_dict(self) -> dict:
        return {"model": self.model, "compared": self.compared, "agree": self.counts[AGREE],
                "shadow_only_defect": self.counts[SHADOW_ONLY], "primary_only_defect": self.counts[PRIMARY_ONLY],
                "not_run": self.counts["not_run"], "errors": self.counts["error"],
                "agreement": None if self.agreement is None else round(self.agreement, 6)}


def summarise(verdicts: Iterable[dict], shadow_names: Iterable[str]) -> dict[str, ShadowSummary]:
    """Agreement per shadow model over verdict dicts (as written by the jsonl publisher).

    ``shadow_names``: which votes are shadows. A verdict does not say which votes decided, so the
    caller names them (``shadow-report`` reads them from the configuration). A verdict without the
    shadow's vote counts as 'not_run' (the gate skipped it).
    """
    names = list(dict.fromkeys(shadow_names))
    out: dict[str, ShadowSummary] = {n: ShadowSummary(n) for n in names}
    for v in verdicts:
        votes = {m["name"]: m for m in v.get("models", [])}
        for name in names:
            vote = votes.get(name)
            summary = out[name]
            if vote is None:
                summary.counts["not_run"] += 1
                continue
            outcome = compare(v.get("verdict", "error"), vote.get("verdict") or "error")
            summary.counts[outcome or "error"] += 1
    return out
