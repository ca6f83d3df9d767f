"""Model cards: the JSON file beside every model that says what the model is and how to run it.

The card is the contract between the toolchain (which writes it) and the daemon (which reads it).
Everything the runtime needs to turn pixels into a normalised score lives here, so a model file
never scores differently in the daemon than it did in evaluation.

ONNX I/O contract for every model edge-inspector runs:
  input  ``image``        float32 [N, 3, H, W], RGB, values in [0, 1]; mean/std normalisation is
                          done *inside* the graph (``input.mean``/``input.std`` document it).
  output ``pred_score``   float32 [N] raw image score (higher = more defective).
  output ``anomaly_map``  float32 [N, h, w] raw per-pixel score (detectors only, any resolution).
  output ``type_probs``   float32 [N, K] defect-type probabilities over ``classes`` (classifier only).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

CARD_SUFFIX = ".card.json"
ModelKind = Literal["classifier", "autoencoder", "feature_memory", "anomalib", "classical", "ensemble"]


class CardError(ValueError):
    """A model card is missing, malformed, or does not match its model file."""


class InputSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    height: int = Field(gt=0, description="Input height in pixels.")
    width: int = Field(gt=0, description="Input width in pixels.")
    channels: Literal[3] = 3
    color: Literal["RGB"] = "RGB"
    scale: Literal["0-1"] = Field("0-1", description="Pixel values are divided by 255 before the graph.")
    mean: list[float] = Field(default_factory=lambda: [0.5, 0.5, 0.5], description="Applied inside the graph.")
    std: list[float] = Field(default_factory=lambda: [0.5, 0.5, 0.5], description="Applied inside the graph.")


class ScoreNormalization(BaseModel):
    """Maps a raw score to [0, 1] so that the calibrated threshold sits at exactly 0.5.

    normalised = clip((raw - threshold) / (max - min) + 0.5, 0, 1), the same rule anomalib uses,
    so fusion rules can compare scores of models whose raw scales differ by orders of magnitude.
    """

    model_config = ConfigDict(extra="forbid")
    threshold: float = Field(description="Raw image-score threshold (normalises to 0.5).")
    min: float = Field(description="Raw score that normalises to threshold - 0.5 * span.")
    max: float = Field(description="Raw score that normalises to threshold + 0.5 * span.")
    pixel_threshold: float | None = Field(None, description="Raw anomaly-map threshold, if calibrated.")
    pixel_min: float | None = None
    pixel_max: float | None = None
    method: str = Field("uncalibrated", description="How the threshold was chosen (e.g. 'fpr=0.005').")

    def _span(self, lo: float, hi: float) -> float:
        return max(hi - lo, 1e-12)

    def score(self, raw: np.ndarray | float) -> np.ndarray:
        raw = np.asarray(raw, dtype=np.float32)
        return np.clip((raw - self.threshold) / self._span(self.min, self.max) + 0.5, 0.0, 1.0)

    def anomaly_map(self, raw: np.ndarray) -> np.ndarray:
        thr = self.pixel_threshold if self.pixel_threshold is not None else self.threshold
        lo = self.pixel_min if self.pixel_min is not None else self.min
        hi = self.pixel_max if self.pixel_max is not None else self.max
        return np.clip((np.asarray(raw, np.float32) - thr) / self._span(lo, hi) + 0.5, 0.0, 1.0)


class TrainingInfo(BaseModel):
    model_config = ConfigDict(extra="allow")
    data_digest: str = Field("", description="sha256 over the training files (names and bytes).")
    dataset: str = ""
    n_images: int = 0
    seed: int | None = None
    backbone: str | None = None
    fit_seconds: float | None = None


class ModelCard(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    schema_version: int = Field(1, alias="schema")
    name: str
    version: str = "1"
    kind: ModelKind
    model_file: str = Field(description="File name of the model, relative to the card's folder.")
    model_sha256: str
    input: InputSpec
    outputs: dict[str, str] = Field(default_factory=dict, description="Output name -> meaning.")
    classes: list[str] = Field(default_factory=list, description="Defect types for type_probs.")
    normalization: ScoreNormalization
    training: TrainingInfo = Field(default_factory=TrainingInfo)
    metrics: dict[str, float | None] = Field(default_factory=dict)
    parameters: int | None = None
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    extra: dict = Field(default_factory=dict, description="Kind-specific details (backbone taps, ...).")

    # -- files ---------------------------------------------------------------------------------
    def model_path(self, card_path: Path) -> Path:
        return Path(card_path).parent / self.model_file

    def save(self, card_path: Path) -> Path:
        card_path = Path(card_path)
        card_path.write_text(self.model_dump_json(indent=2, by_alias=True) + "\n")
        return card_path


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def card_path_for(model_path: Path) -> Path:
    """``models/foo.onnx`` -> ``models/foo.card.json``."""
    model_path = Path(model_path)
    if model_path.name.endswith(CARD_SUFFIX):
        return model_path
    return model_path.with_name(model_path.stem + CARD_SUFFIX)


def load_card(path: Path, verify: bool = True) -> ModelCard:
    """Load a card given either the card or its model file; check the model's sha256.

    Raises CardError naming the file and what is wrong, never a bare traceback.
    """
    card_path = card_path_for(Path(path))
    if not card_path.is_file():
        raise CardError(f"{card_path}: model card not found (expected beside the model file)")
    try:
        card = ModelCard.model_validate(json.loads(card_path.read_text()))
    except json.JSONDecodeError as exc:
        raise CardError(f"{card_path}: not valid JSON ({exc})") from exc
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise CardError(f"{card_path}: invalid model card: {problems}") from exc
    if verify:
        model_path = card.model_path(card_path)
        if not model_path.is_file():
            raise CardError(f"{card_path}: model file {model_path} not found")
        digest = sha256_file(model_path)
        if digest != card.model_sha256:
            raise CardError(
                f"{model_path}: sha256 {digest[:16]}... does not match the card's "
                f"{card.model_sha256[:16]}... (model replaced without updating its card?)"
            )
    return card
