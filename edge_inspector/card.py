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
import os
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import EdgeInspectorError

CARD_SUFFIX = ".card.json"
ModelKind = Literal["classifier", "autoencoder", "feature_memory", "anomalib", "segmenter"]


class CardError(EdgeInspectorError, ValueError):
    """A model card is missing, malformed, or does not match its model file."""


# A card's input size decides how big every frame's tensor is (3 x H x W float32) before anything
# else can refuse it: the red team's 12000x12000 card turned each frame into a 1.7 GB tensor and a
# 5-frame replay into 6.9 GB RSS. 4096x4096 (192 MiB a frame) is far beyond any model we train;
# tiling handles larger frames. EDGE_INSPECTOR_MAX_INPUT_PIXELS raises it for a deliberate site.
MAX_INPUT_SIDE = 16384
MAX_INPUT_PIXELS_DEFAULT = 4096 * 4096


def max_input_pixels() -> int:
    value = os.environ.get("EDGE_INSPECTOR_MAX_INPUT_PIXELS", "")
    return int(value) if value.isdigit() and int(value) > 0 else MAX_INPUT_PIXELS_DEFAULT


def _confined_name(value: str, field: str) -> str:
    """A file name relative to the card's folder: no absolute path, no '..', no backslash or NUL.

    The red team pointed ``model_file`` at ``../../../../../../etc/passwd``: check-config opened
    and hashed it (leaking a digest prefix of any readable file) and would have handed it to ONNX
    Runtime with the right sha256.
    """
    parts = PurePosixPath(value).parts
    if (not value or value.startswith("/") or "\\" in value or "\0" in value or ".." in parts
            or (len(value) > 1 and value[1] == ":")):
        raise ValueError(f"{field} {value!r}: expected a file name inside the card's folder "
                         "(relative, no '..', no absolute path)")
    return value


class InputSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    height: int = Field(gt=0, description="Input height in pixels.")
    width: int = Field(gt=0, description="Input width in pixels.")
    channels: Literal[3] = 3
    color: Literal["RGB"] = "RGB"
    scale: Literal["0-1"] = Field("0-1", description="Pixel values are divided by 255 before the graph.")
    mean: list[float] = Field(default_factory=lambda: [0.5, 0.5, 0.5], description="Applied inside the graph.")
    std: list[float] = Field(default_factory=lambda: [0.5, 0.5, 0.5], description="Applied inside the graph.")

    @model_validator(mode="after")
    def _bounded(self) -> InputSpec:
        limit = max_input_pixels()
        if max(self.height, self.width) > MAX_INPUT_SIDE or self.height * self.width > limit:
            gb = 3 * 4 * self.height * self.width / 1e9
            raise ValueError(f"{self.height}x{self.width} = {self.height * self.width} pixels exceeds the limit of "
                             f"{limit} pixels (sides <= {MAX_INPUT_SIDE}): each frame would be a {gb:.2f} GB "
                             "tensor (EDGE_INSPECTOR_MAX_INPUT_PIXELS raises the limit)")
        return self


#: The calibrated threshold on the normalised scale: every model's ``score >= NORMALISED_THRESHOLD``
#: is a defect, whatever its raw scale (``ScoreNormalization`` maps the raw threshold here).
NORMALISED_THRESHOLD = 0.5


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
        return np.clip(self.unclipped(np.asarray(raw, dtype=np.float32)), 0.0, 1.0)

    def unclipped(self, raw: np.ndarray | float) -> np.ndarray | float:
        """The same mapping without the clip: where a threshold other than the calibrated one lands on
        the normalised scale (it may fall outside [0, 1]); reports use it for the best-F1 threshold."""
        return (raw - self.threshold) / self._span(self.min, self.max) + NORMALISED_THRESHOLD

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


class OperatingPoint(BaseModel):
    """What the calibrated threshold is expected to do on the line, and how sure that is.

    Rates are fractions of parts; intervals are 95 % Clopper-Pearson over the calibration scores
    (``n_normal`` normal parts scored out-of-fold or held out, ``n_defect`` labelled defects).
    ``curve`` (labelled defects only) is the false-reject / escape trade-off at other thresholds,
    so a user can pick another point with ``edge-inspector calibrate --method``.
    """

    model_config = ConfigDict(extra="forbid")
    method: str
    target: float | None = None
    source: str = ""
    n_normal: int = 0
    n_defect: int = 0
    false_reject_rate: float = Field(description="Measured on the calibration's normal scores.")
    false_reject_ci: tuple[float, float] = (0.0, 1.0)
    expected_false_reject_rate: float | None = Field(None, description="From the upper-tail fit, when used.")
    escape_rate: float | None = None
    escape_ci: tuple[float, float] | None = None
    tail: dict = Field(default_factory=dict)
    curve: list[dict] = Field(default_factory=list)
    on_training_images: bool = Field(
        False, description="The normal images that set the threshold include images the model was fitted on "
        "(the train split, not scored out-of-fold): their scores are biased low, so the false-reject rate above "
        "is optimistic. Evaluation reports warn about it.")


class ModelCard(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    schema_version: int = Field(1, alias="schema")
    name: str
    version: str = "1"
    kind: ModelKind
    model_file: str = Field(description="File name of the model, relative to the card's folder.")
    model_sha256: str
    external_data: dict[str, str] = Field(
        default_factory=dict,
        description="Every other file the model loads (ONNX external weights), relative to the card's folder -> "
        "its sha256. load_card refuses a model that references a file not listed here.")
    input: InputSpec
    outputs: dict[str, str] = Field(default_factory=dict, description="Output name -> meaning.")
    classes: list[str] = Field(default_factory=list, description="Defect types for type_probs.")
    normalization: ScoreNormalization
    training: TrainingInfo = Field(default_factory=TrainingInfo)
    metrics: dict[str, float | None] = Field(default_factory=dict)
    operating_point: OperatingPoint | None = None
    parameters: int | None = None
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    extra: dict = Field(default_factory=dict, description="Kind-specific details (backbone taps, ...).")

    @field_validator("model_file")
    @classmethod
    def _model_file_confined(cls, value: str) -> str:
        return _confined_name(value, "model_file")

    @field_validator("external_data")
    @classmethod
    def _external_confined(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            _confined_name(name, "external_data")
        return value

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


def onnx_external_files(model_path: Path) -> list[str]:
    """The external-data locations an ONNX model references (initializers and constants in every subgraph).

    Parsed without loading the data, so a model whose weights live in ``weights.bin`` names that
    file here; ONNX Runtime would read it from the model's folder at session creation.
    """
    import onnx

    try:
        model = onnx.load(str(model_path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf/onnx raise several types for a bad file
        raise CardError(f"{model_path}: not a readable ONNX model ({exc})") from exc
    found: list[str] = []

    def tensor(t) -> None:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            location = next((e.value for e in t.external_data if e.key == "location"), "")
            if location not in found:
                found.append(location)

    def graph(g) -> None:
        for t in g.initializer:
            tensor(t)
        for sparse in g.sparse_initializer:
            tensor(sparse.values)
            tensor(sparse.indices)
        for node in g.node:
            for attr in node.attribute:
                if attr.HasField("t"):
                    tensor(attr.t)
                for t in attr.tensors:
                    tensor(t)
                if attr.HasField("g"):
                    graph(attr.g)
                for sub in attr.graphs:
                    graph(sub)

    graph(model.graph)
    return found


def external_data_digests(model_path: Path) -> dict[str, str]:
    """``external_data`` for a card: each external file of an ONNX model -> its sha256 (writers call this)."""
    model_path = Path(model_path)
    return {name: sha256_file(model_path.parent / name) for name in onnx_external_files(model_path)}


def _verify_external(card: ModelCard, card_path: Path, model_path: Path) -> None:
    """Every file the model loads besides itself is listed in the card and matches its sha256."""
    referenced = onnx_external_files(model_path) if model_path.suffix.lower() == ".onnx" else []
    for name in referenced:
        try:
            _confined_name(name, "external data location")
        except ValueError as exc:
            raise CardError(f"{model_path}: {exc}") from None
        if name not in card.external_data:
            raise CardError(f"{model_path}: loads external data {name!r}, which {card_path.name} does not cover: "
                            "add it with its sha256 to the card's external_data (card.external_data_digests)")
    for name, expected in card.external_data.items():
        path = card_path.parent / name
        if not path.is_file():
            raise CardError(f"{card_path}: external data file {path} not found")
        digest = sha256_file(path)
        if digest != expected:
            raise CardError(f"{path}: sha256 {digest[:16]}... does not match the card's {expected[:16]}... "
                            "(weights replaced without updating the card?)")


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
        _verify_external(card, card_path, model_path)
    return card
