"""The verdict message: one JSON document per frame, the product's public interface to PLC/MES.

Versioned by ``schema``; consumers dedupe on (camera, frame) since delivery is at-least-once.

Schema 2 (2026-12) added ``part_id`` and ``triggered_at`` (edge_inspector/parts.py). Both are optional
and left out of the JSON when the frame has no part id; such a message *is* a schema-1 message and
says ``"schema": 1``, so a consumer written for schema 1 (even one that refuses unknown keys or
unknown schema numbers) keeps working until part ids are switched on. ``schema`` is the lowest
version whose fields the message uses.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 2
#: fields added in schema 2, written only when set (old consumers that refuse unknown keys keep working)
OPTIONAL_V2 = ("part_id", "triggered_at")
VerdictKind = Literal["ok", "defect", "error"]


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Region(BaseModel):
    model_config = ConfigDict(extra="forbid")
    x: int = Field(description="Left edge in frame pixels.")
    y: int = Field(description="Top edge in frame pixels.")
    w: int
    h: int
    score: float = Field(description="Peak normalised anomaly score inside the region.")


class ModelVote(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    version: str
    score: float = Field(description="Normalised score; 0.5 is the model's calibrated threshold.")
    verdict: VerdictKind | None = None
    defect_type: str | None = None
    confidence: float | None = Field(
        None, description="Ensemble rules only: how sure this member is of its vote (0 at its threshold, 1 at 0 or 1).")


class Verdict(BaseModel):
    model_config = ConfigDict(extra="forbid")
    schema_version: int = Field(
        SCHEMA_VERSION, alias="schema", description="Message schema version: 2 when the message carries part_id "
        "(schema 2), else 1 (a message without schema-2 fields is a schema-1 message).")
    line: str = Field(description="Production line id from the configuration.")
    camera: str = Field(description="Camera id from the configuration.")
    frame: int = Field(description="Per-camera frame sequence number; with camera, the dedupe key.")
    captured_at: str = Field(description="UTC ISO-8601 time the frame was grabbed.")
    decided_at: str = Field(default_factory=utc_now_iso, description="UTC ISO-8601 time of the decision.")
    verdict: VerdictKind
    score: float | None = Field(None, description="Fused normalised score (0.5 = threshold).")
    threshold: float = 0.5
    defect_type: str | None = None
    defect_confidence: float | None = None
    confidence: float | None = Field(
        None, description="Ensemble rules (vote, soft_vote) only: agreement share of the votes, or the fused "
        "score's distance from the threshold (0..1).")
    regions: list[Region] = Field(default_factory=list)
    models: list[ModelVote] = Field(default_factory=list)
    latency_ms: dict[str, float] = Field(default_factory=dict)
    image: str | None = Field(None, description="Path of the saved frame, when it was saved.")
    source: str | None = Field(None, description="File name or stream the frame came from.")
    part_id: str | None = Field(
        None, description="Schema 2: the part this frame shows, supplied with the trigger (file-name pattern, "
        "MQTT trigger command, camera frame id). Absent when unknown.")
    triggered_at: str | None = Field(
        None, description="Schema 2: UTC ISO-8601 time of the part's trigger (from the trigger command, or the "
        "frame's capture). Absent without a part id.")
    error: str | None = Field(None, description="Why the verdict is 'error'.")

    def to_json(self) -> str:
        unset = {name for name in OPTIONAL_V2 if getattr(self, name) is None}
        msg = self
        if len(unset) == len(OPTIONAL_V2) and self.schema_version == SCHEMA_VERSION:
            msg = self.model_copy(update={"schema_version": 1})  # nothing of schema 2 in it
        return msg.model_dump_json(by_alias=True, exclude_none=False, exclude=unset or None)
