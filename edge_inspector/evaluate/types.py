"""The evaluation report as a typed object: what ``runner.build_report`` returns.

Why a model and not a dict: the same figures feed report.json, report.html, the terminal summary,
``compare`` and ``auto``; a reader that digs with string keys (``(r["image"].get("at_threshold") or
{}).get("false_reject_rate")``) fails silently when a key moves, an attribute fails loudly and shows
up in the editor. The sections declare every field a reader of this package uses; the metric
functions may add detail fields (curves, confusion counts, ``unavailable`` reasons), which each
section keeps (``extra="allow"``) so that ``model_dump(mode="json")`` is exactly today's report.json
(``schema`` 1): files written before this model existed still read, and readers outside the package
(the console's model registry, scripts) see the same JSON.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Section(BaseModel):
    """A report section: declared fields are the ones readers use; the metric code may add more."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())


class ThresholdCounts(_Section):
    """Image figures at one threshold on the normalised score (0.5 = the card's calibrated one)."""

    threshold: float | None = None
    tp: int | None = None
    fp: int | None = None
    tn: int | None = None
    fn: int | None = None
    precision: float | None = None
    recall: float | None = None
    f1: float | None = None
    accuracy: float | None = None
    false_reject_rate: float | None = None
    escape_rate: float | None = None
    raw_threshold: float | None = None  # best_f1 only: the threshold on the model's raw score


class ImageMetrics(_Section):
    n: int = 0
    n_good: int = 0
    n_defective: int = 0
    auroc: float | None = None
    average_precision: float | None = None
    at_threshold: ThresholdCounts | None = None  # None when the split is empty
    best_f1: ThresholdCounts | None = None  # None without both good and defective parts
    unavailable: dict[str, str] = Field(default_factory=dict)

    @property
    def at(self) -> ThresholdCounts:
        """The figures at the calibrated threshold, or an all-None row when there are none."""
        return self.at_threshold or ThresholdCounts()


class PixelMetrics(_Section):
    pixel_auroc: float | None = None
    pro: float | None = None
    iou: float | None = None
    dice: float | None = None
    fpr_limit: float | None = None
    resolution: list[int] | None = None
    n_regions: int | None = None
    best_dice: dict[str, float | None] | None = None  # dice, iou and the map threshold that gives them
    pro_curve: dict[str, list[float]] | None = None  # fpr, pro
    unavailable: dict[str, str] = Field(default_factory=dict)


class DefectTypeMetrics(_Section):
    classes: list[str] | None = None
    per_class: list[dict[str, Any]] | None = None  # type, support, precision, recall, f1
    confusion: list[list[int]] | None = None
    macro_f1: float | None = None
    weighted_f1: float | None = None
    defect_type_auroc: float | None = None
    unavailable: dict[str, str] = Field(default_factory=dict)


class PerTypeRow(_Section):
    """One row of the per-defect-type table (``good`` included)."""

    type: str
    n: int
    mean_score: float | None = None
    false_reject_rate: float | None = None
    detection_rate: float | None = None
    auroc_vs_good: float | None = None
    pixel_auroc: float | None = None
    pro: float | None = None


class ModelSummary(_Section):
    """What a reader needs to know about the model, from its card and file (``runner.card_summary``)."""

    name: str
    version: str
    kind: str
    card: str | None = None
    model_file: str
    parameters: int | None = None
    size_bytes: int | None = None


class DatasetSummary(_Section):
    """The evaluated split; whatever the caller passed as ``dataset`` (name, root, split, ...) is kept."""

    name: str | None = None
    root: Path | str | None = None
    split: str | None = None
    source: str | None = None  # what the user named (a folder or ZIP), for the calibrate command
    scheme: str | None = None
    split_seed: int | None = None
    val_has_defects: bool | None = None
    n: int
    n_good: int
    n_defective: int
    defect_types: list[str] = Field(default_factory=list)


class Timing(_Section):
    wall_seconds: float
    ms_per_image: float
    includes: str


class Energy(_Section):
    """Each part is ``energy.energy_record``'s dict: ``method`` (estimate / codecarbon / None), ``energy_wh``..."""

    inference_per_1000_parts: dict[str, Any] | None = None
    training: dict[str, Any] | None = None


class GalleryItem(_Section):
    index: int
    path: str
    defect_type: str | None = None
    score: float
    error: bool
    predicted_type: str | None = None


class Gallery(_Section):
    false_positives: list[GalleryItem] = Field(default_factory=list)
    false_negatives: list[GalleryItem] = Field(default_factory=list)


class SampleRow(_Section):
    path: str
    label: int
    defect_type: str | None = None
    score: float
    raw_score: float
    predicted_type: str | None = None


class Composite(_Section):
    score: float | None = None
    weights_used: dict[str, float] = Field(default_factory=dict)
    missing: list[str] = Field(default_factory=list)


class EvaluationReport(_Section):
    """One model on one split: every figure, as written to report.json (``schema`` 1)."""

    schema_: int = Field(1, alias="schema")
    kind: Literal["evaluation"] = "evaluation"
    created_at: str
    model: ModelSummary
    backend: str
    dataset: DatasetSummary
    image: ImageMetrics
    per_type: list[PerTypeRow] = Field(default_factory=list)
    defect_type: DefectTypeMetrics
    pixel: PixelMetrics
    timing: Timing
    energy: Energy
    gallery: Gallery
    samples: list[SampleRow] = Field(default_factory=list)
    composite: Composite = Field(default_factory=Composite)  # set by build_report from the other sections
    metrics: dict[str, Any] = Field(default_factory=dict)  # runner.headline_metrics: what a registry shows
    warnings: list[str] = Field(default_factory=list)

    model_config = ConfigDict(extra="allow", protected_namespaces=(), populate_by_name=True)

    def to_json_dict(self) -> dict[str, Any]:
        """report.json's content: the keys the report was built with (``exclude_unset``: a field no
        metric filled in is not written as null), ``schema`` included; numpy values are left for the
        JSON writer (``report.write_json``)."""
        return self.model_dump(by_alias=True, exclude_unset=True)
