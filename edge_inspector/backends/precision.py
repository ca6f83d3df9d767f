"""Reduced-precision accuracy records: what INT8 / bf16 did to a model, as measured on its own data.

Why a record in the card and not a flag in the config: a reduced precision is only safe for a model
whose scores were checked at that precision. ``edge-inspector quantize`` (export/quantize.py) scores
the model at fp32 and at the reduced precision on the same validation images and stores one
``PrecisionCheck`` per (backend, precision) under ``card.extra["precision_checks"]``, with the
AUROC change and the largest normalised-score change. The OpenVINO backend refuses bf16/fp16 for a
model whose card holds no passing check for its current file (sha256), so a faster precision is never
an assumption. This module imports nothing heavy: the daemon reads these records at load time.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, Field

from ..card import ModelCard

CHECKS_KEY = "precision_checks"
#: the largest image-AUROC drop a reduced precision may cost (TARGETS.md: within 0.005 of FP32)
DEFAULT_AUROC_TOLERANCE = 0.005


class PrecisionCheck(BaseModel):
    """One reduced precision measured against fp32 on the same images, through the same scoring path."""

    backend: str = Field(description="Backend that ran the reduced precision (onnxruntime, openvino).")
    precision: str = Field(description="int8, bf16 or fp16.")
    device: str = Field("CPU", description="Device it was measured on (bf16 rounding is the device's).")
    model_sha256: str = Field(description="sha256 of the model file the check ran on.")
    reference_sha256: str = Field(description="sha256 of the fp32 model it was compared with.")
    split: str = Field(description="Dataset split scored (val when it holds defects, else test).")
    dataset: str = ""
    n_images: int = 0
    n_defect: int = 0
    calibration_images: int | None = Field(None, description="int8: training images used for activation ranges.")
    auroc_fp32: float | None = None
    auroc_reduced: float | None = None
    auroc_drop: float | None = Field(None, description="auroc_fp32 - auroc_reduced (positive = worse).")
    max_score_diff: float = Field(description="Largest |normalised score change| over the images.")
    verdict_flips: int = Field(0, description="Images whose ok/defect verdict (score >= 0.5) changed.")
    tolerance: float = DEFAULT_AUROC_TOLERANCE
    passed: bool
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def summary(self) -> str:
        def f(x: float | None) -> str:
            return "n/a" if x is None else f"{x:.4f}"

        return (f"{self.backend} {self.precision} on {self.split} ({self.n_images} images, {self.n_defect} "
                f"defective): AUROC fp32 {f(self.auroc_fp32)} -> {f(self.auroc_reduced)} "
                f"(drop {f(self.auroc_drop)}, tolerance {self.tolerance:g}), max |score change| "
                f"{self.max_score_diff:.4f}, {self.verdict_flips} verdict(s) changed: "
                + ("PASSED" if self.passed else "FAILED"))


def check_key(backend: str, precision: str) -> str:
    return f"{backend}:{precision}"


def read_checks(card: ModelCard) -> dict[str, PrecisionCheck]:
    raw = card.extra.get(CHECKS_KEY) or {}
    return {k: PrecisionCheck.model_validate(v) for k, v in raw.items()}


def record_check(card: ModelCard, check: PrecisionCheck) -> None:
    """Store ``check`` in the card (the caller saves it) and mirror the headline figures in metrics."""
    checks = dict(card.extra.get(CHECKS_KEY) or {})
    checks[check_key(check.backend, check.precision)] = check.model_dump()
    card.extra[CHECKS_KEY] = checks
    card.metrics[f"{check.backend}_{check.precision}_auroc_drop"] = check.auroc_drop
    card.metrics[f"{check.backend}_{check.precision}_max_score_diff"] = check.max_score_diff


def passing_check(card: ModelCard, backend: str, precision: str, model_sha256: str) -> PrecisionCheck | None:
    """The card's passing check for this backend/precision on exactly this model file, if any."""
    check = read_checks(card).get(check_key(backend, precision))
    if check is None or not check.passed or check.model_sha256 != model_sha256:
        return None
    return check
