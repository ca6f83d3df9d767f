"""Typed training options of every detector kind (pydantic; no torch, so the CLI and docs read them cheaply).

Why a model per kind: the options used to be a plain ``DEFAULTS`` dict per detector plus a hand-written
check, two copies that drifted (``epochs=0`` passed everywhere and trained nothing). Here each option
has one declaration: its type, default, allowed range or choices and a description. ``extra="forbid"``
refuses a misspelt option with the list of known ones; lax coercion lets the CLI's ``-o epochs=3``
strings and the console's form values through. ``Detector._take_options`` validates through the
kind's model and turns a ``ValidationError`` into a ``DetectorError`` naming the kind and the option.

Adding a kind: subclass ``DetectorOptions`` here with its ``kind`` (the registry key), list it in
``OPTIONS``, and set ``options_model`` on the detector class.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from .base import DetectorError

Balance = Literal["weights", "oversample", "none"]
Monitor = Literal["loss", "auroc"]
SegmenterMonitor = Literal["loss", "auroc", "defect_loss"]
EarlyStoppingSplit = Literal["val", "carved"]
SyntheticDefects = Literal["auto"] | bool


class DetectorOptions(BaseModel):
    """Base of the per-kind option models: unknown names are refused, values coerced from CLI strings."""

    model_config = ConfigDict(extra="forbid", validate_default=False)

    # the registry key the options belong to (the card kind may differ: custom_cnn writes "classifier")
    kind: ClassVar[str] = ""

    @classmethod
    def parse(cls, options: dict[str, Any]) -> DetectorOptions:
        """Validate ``options`` (names and values); DetectorError names the kind, each bad option and
        what it accepts, or lists the known options for an unknown name."""
        unknown = sorted(set(options) - set(cls.model_fields))
        if unknown:
            raise DetectorError(f"{cls.kind}: unknown option(s) {unknown}; known options: {sorted(cls.model_fields)}")
        try:
            return cls(**options)
        except ValidationError as exc:
            raise DetectorError(f"{cls.kind}: {describe_errors(exc, options)}") from None


def describe_errors(exc: ValidationError, given: dict[str, Any]) -> str:
    """One line per bad option: ``option epochs=0: expected greater than or equal to 1``."""
    by_field: dict[str, list[str]] = {}
    for err in exc.errors():
        name = str(err["loc"][0]) if err["loc"] else ""
        msg = err["msg"].removeprefix("Value error, ").replace("Input should be ", "expected ")
        if msg not in by_field.setdefault(name, []):
            by_field[name].append(msg)
    parts = []
    for name, msgs in by_field.items():
        text = " or ".join(msgs)
        parts.append(f"option {name}={given[name]!r}: {text}" if name in given else text)
    return "; ".join(parts)


def taps_value(value: Any) -> Any:
    """``taps=8``, ``taps="8"`` and ``taps="[4,8]"`` (a CLI string) all mean a tuple of strides."""
    if isinstance(value, str):
        text = value.strip()
        value = json.loads(text) if text.startswith("[") else int(text)
    return (value,) if isinstance(value, int) else value


# backbone output strides; a CLI string ("8", "[8,16]") is read as JSON first
Taps = Annotated[tuple[int, ...], BeforeValidator(taps_value)]


# -- the kinds -----------------------------------------------------------------------------------------------
class AutoencoderOptions(DetectorOptions):
    """Reconstruction-error detector trained on normal images; a null default is set per target."""

    kind: ClassVar[str] = "autoencoder"

    target: Literal["features", "pixels"] = Field(
        "features", description="reconstruct frozen EfficientNet-Lite features, or the image's pixels")
    epochs: int | None = Field(None, ge=1, description="training epochs (default 40 for features, 25 for pixels)")
    batch_size: int = Field(8, ge=1, description="images per optimisation step")
    lr: float | None = Field(None, gt=0, description="AdamW learning rate (default 3e-3 features, 1e-3 pixels)")
    weight_decay: float = Field(1e-5, ge=0, description="AdamW weight decay")
    patience: int = Field(5, ge=1, description="epochs without improvement before early stopping")
    ssim_weight: float | None = Field(
        None, ge=0, description="SSIM share of the loss; pixels only (default 0.5; features use MSE only)")
    taps: Taps = Field((8,), min_length=1, description="backbone output strides reconstructed")
    hidden: int = Field(64, ge=1, description="hidden width of the feature autoencoder")
    bottleneck: int | None = Field(None, ge=1, description="bottleneck channels (default 16 features, 64 pixels)")
    base_channels: int = Field(32, ge=1, description="first conv width of the pixel autoencoder")
    score: Literal["topk", "max"] = Field("topk", description="image score: mean of the map's top fraction, or max")
    topk_ratio: float = Field(0.01, gt=0, le=1, description="fraction of map pixels averaged by score=topk")
    smooth_sigma: float | None = Field(
        None, ge=0, description="Gaussian sigma of the map in input pixels (default input size / 56)")
    pretrained: bool = Field(True, description="ImageNet weights for the backbone (false only in tests)")

    @model_validator(mode="after")
    def _per_target(self) -> AutoencoderOptions:
        features = self.target == "features"
        if features and self.ssim_weight:
            raise ValueError("option ssim_weight applies to target='pixels' only; feature maps are standardised "
                             "activations, not images, and are too small for an SSIM window")
        if self.ssim_weight is None:
            self.ssim_weight = 0.0 if features else 0.5
        if self.epochs is None:
            self.epochs = 40 if features else 25
        if self.lr is None:
            self.lr = 3e-3 if features else 1e-3
        if self.bottleneck is None:
            self.bottleneck = 16 if features else 64
        return self


class _SupervisedOptions(DetectorOptions):
    """What the classifier and the custom CNN share (models/supervised.py reads these)."""

    batch_size: int = Field(16, ge=1, description="images per optimisation step")
    weight_decay: float = Field(1e-4, ge=0, description="AdamW weight decay")
    monitor: Monitor = Field("loss", description="early stopping on the val split's loss or image AUROC")
    balance: Balance = Field("weights", description="rare classes: class-weighted losses, oversampling, or none")
    type_loss_weight: float = Field(1.0, ge=0, description="weight of the defect-type head's loss")
    augment: bool = Field(True, description="flips, small rotations/shifts, brightness/contrast jitter")
    synthetic_defects: SyntheticDefects = Field(
        "auto", description="add cut-paste/scratch/noise defects: auto (when fewer than min_defects), true, false")
    min_defects: int = Field(8, ge=0, description="labelled defects below which synthetic_defects=auto adds some")


class ClassifierOptions(_SupervisedOptions):
    """EfficientNet-Lite transfer-learning classifier (binary and defect-type heads)."""

    kind: ClassVar[str] = "classifier"

    epochs: int = Field(8, ge=1, description="training epochs")
    lr: float = Field(1e-3, gt=0, description="learning rate of the heads and the conv head")
    backbone_lr_scale: float = Field(0.1, ge=0, description="learning-rate factor of the unfrozen backbone blocks")
    dropout: float = Field(0.2, ge=0, lt=1, description="dropout before the heads")
    patience: int = Field(3, ge=1, description="epochs without improvement before early stopping")
    freeze_blocks: int | None = Field(
        None, ge=0, description="frozen backbone blocks (default: every block up to output stride 16)")
    augment_views: int = Field(
        2, ge=0, description="cached augmented copies per image; 0 = fresh augmentation every batch (slow)")
    pretrained: bool = Field(True, description="ImageNet weights for the backbone (false only in tests)")


class CustomCNNOptions(_SupervisedOptions):
    """A small CNN classifier trained from scratch (card kind: classifier)."""

    kind: ClassVar[str] = "custom_cnn"

    epochs: int = Field(20, ge=1, description="training epochs")
    lr: float = Field(3e-3, gt=0, description="AdamW learning rate")
    dropout: float = Field(0.3, ge=0, lt=1, description="dropout before the heads")
    block_dropout: float = Field(0.1, ge=0, lt=1, description="spatial dropout after each conv block")
    blocks: int = Field(4, ge=3, le=5, description="conv blocks, each halving the resolution")
    width: int = Field(16, ge=4, description="channels of the first block, doubled every block")
    patience: int = Field(5, ge=1, description="epochs without improvement before early stopping")


class _DeepFeaturesOptions(DetectorOptions):
    """What the three deep-features families share."""

    cv_folds: int = Field(5, ge=2, description="stratified cross-validation folds for the grid search")
    synthetic_defects: SyntheticDefects = Field(
        "auto", description="add synthetic defects: auto (when fewer than min_defects), true, false")
    min_defects: int = Field(8, ge=0, description="labelled defects below which synthetic_defects=auto adds some")
    pretrained: bool = Field(True, description="pretrained backbone weights (false: random, for tests only)")
    weights: str | None = Field(None, description="weights file of a torchvision-layout backbone (models/zoo.py)")
    weights_sha256: str | None = Field(None, description="sha256 the weights file must have")
    pool: Literal["auto", "local", "global"] = Field(
        "auto", description="local: max-pooled stride-16 map (Lite only); global: mean-pooled embedding; "
        "auto: local on EfficientNet-Lite, global otherwise")
    grid: dict[str, list] | None = Field(
        None, description='hyper-parameter grid override, e.g. {"C": [1, 10]} (the estimator\'s names)')

    @field_validator("grid", mode="before")
    @classmethod
    def _grid_from_text(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value


ClassWeight = Literal["balanced"] | dict[int, float] | None


class FeaturesSVMOptions(_DeepFeaturesOptions):
    """Deep features + RBF SVM with Platt-calibrated probabilities (card kind: classifier)."""

    kind: ClassVar[str] = "features_svm"

    class_weight: ClassWeight = Field("balanced", description="SVC class_weight")


class FeaturesRFOptions(_DeepFeaturesOptions):
    """Deep features + random forest (card kind: classifier)."""

    kind: ClassVar[str] = "features_rf"

    n_estimators: int = Field(100, ge=1, description="trees in the forest")
    class_weight: ClassWeight = Field("balanced", description="RandomForestClassifier class_weight")


class FeaturesXGBOptions(_DeepFeaturesOptions):
    """Deep features + gradient-boosted trees, xgboost (card kind: classifier)."""

    kind: ClassVar[str] = "features_xgb"

    n_estimators: int = Field(100, ge=1, description="boosting rounds")
    # 0.1, not xgboost's 1: with a few dozen images (hessian ~0.25 each) the default stops trees after one split
    min_child_weight: float = Field(0.1, ge=0, description="xgboost min_child_weight")


class SegmenterOptions(DetectorOptions):
    """Defect segmenter: EfficientNet-Lite encoder, FPN decoder, image and type heads."""

    kind: ClassVar[str] = "segmenter"

    epochs: int = Field(20, ge=1, description="training epochs")
    batch_size: int = Field(8, ge=1, description="images per optimisation step")
    lr: float = Field(1e-3, gt=0, description="learning rate of the decoder and heads")
    backbone_lr_scale: float = Field(0.1, ge=0, description="learning-rate factor of the unfrozen encoder blocks")
    weight_decay: float = Field(1e-4, ge=0, description="AdamW weight decay")
    patience: int = Field(5, ge=1, description="epochs without improvement before early stopping")
    # defect_loss rather than loss: the val good parts then set the threshold, and a split whose good parts chose
    # the weights scores them lower than new ones. Stratified, 200 images, test split (session 19): test false-reject
    # rate magnetic_tile 0.021 -> 0.016, kolektorsdd 0.029 -> 0.014 (target 0.01); image AUROC 0.953 -> 0.956 and
    # 0.939 -> 0.989
    monitor: SegmenterMonitor = Field(
        "defect_loss", description="early stopping on the val split's loss on its defective images only "
        "(defect_loss: the good parts that then set the threshold play no part in choosing the weights), its "
        "whole loss, or its image AUROC")
    freeze_blocks: int | None = Field(
        None, ge=0, description="frozen encoder blocks (default: the stem and every block up to stride 8)")
    decoder_channels: int = Field(64, ge=1, description="FPN decoder width")
    head_channels: int = Field(32, ge=1, description="segmentation head width")
    dice_weight: float = Field(1.0, ge=0, description="pixel loss = BCE + dice_weight * soft Dice")
    image_loss_weight: float = Field(1.0, ge=0, description="weight of the image head's loss")
    type_loss_weight: float = Field(0.5, ge=0, description="weight of the defect-type head's loss")
    balance: Balance = Field("weights", description="rare classes: class-weighted image loss, oversampling, none")
    detach_image_head: bool = Field(True, description="Božič et al.'s gradient-flow adjustment")
    augment: bool = Field(True, description="flips, small rotations/shifts, brightness/contrast jitter")
    # 2 rather than 1, chosen on the validation split (magnetic_tile, stratified, 200 images): val loss 1.50
    # vs 1.57, val AUROC 0.968 vs 0.959, for +15 % fit CPU time
    augment_views: int = Field(2, ge=0, description="cached augmented copies of each training image (0 = none)")
    early_stopping: EarlyStoppingSplit = Field(
        "val", description="images early stopping watches: 'val' (the val split when it holds good and defective "
        "parts, else a carve of train) or 'carved' (always val_fraction of train, so the val split that sets the "
        "threshold stays unseen)")
    val_fraction: float = Field(
        0.15, gt=0, lt=0.5, description="share of train carved (stratified) for early stopping when it does not "
        "watch the val split")
    pretrained: bool = Field(True, description="ImageNet weights for the encoder (false only in tests)")


class FeatureMemoryOptions(DetectorOptions):
    """PatchCore-style memory bank of normal patch features; the reasons for each default are in
    models/feature_memory.py beside the code that uses it."""

    kind: ClassVar[str] = "feature_memory"

    taps: Taps = Field((8, 16, 32), min_length=1,
                                  description="backbone output strides concatenated (the first sets the map stride)")
    coverage_quantile: float = Field(
        0.0, ge=0, lt=1, description="memory by coverage instead of a ratio: stop the coreset when every patch lies "
        "within this quantile of the distance to another image's nearest patch (e.g. 0.95; 0 = coreset_ratio)")
    coreset_ratio: float = Field(0.01, gt=0, le=1, description="fraction of patches kept when coverage_quantile=0")
    min_memory: int = Field(1024, ge=1, description="memory bank floor (small training sets)")
    max_memory: int = Field(50_000, ge=1, description="memory bank ceiling (inference cost grows with it)")
    projection_dim: int = Field(64, ge=0, description="random-projection dims of the coreset search (0 = none)")
    max_candidates: int = Field(40_000, ge=1, description="random subset of patches the coreset is chosen from")
    neighbourhood: int = Field(3, ge=1, description="local average pooling window over the feature map (odd)")
    tap_balance: Literal["none", "equal"] = Field(
        "none", description="equal: scale each tap to the same mean squared norm on the training patches")
    pca_dims: int = Field(0, ge=0, description="project patch features on this many principal axes of the training "
                          "patches before the memory (0 or >= the feature dims = all; fewer = faster search)")
    sigma: float = Field(4.0, ge=0, description="Gaussian smoothing of the anomaly map, input pixels")
    score_fraction: float = Field(
        0.05, ge=0, le=1, description="image score = mean of the top fraction of map patches (0 = the maximum)")
    score_border: int = Field(
        16, ge=0, description="input pixels at each edge of the map left out of the image score (the map keeps them)")
    region_window: float = Field(
        0.33, ge=0, le=1, description="region branch: a second memory of patch features averaged over windows of "
        "this fraction of the map's short side, its map added to the patch map (0 = off; with oof=leave_one_out "
        "only, 0 otherwise)")
    batch_size: int = Field(8, ge=1, description="images per forward pass during fit")
    oof: Literal["leave_one_out", "kfold", "off"] = Field(
        "leave_one_out", description="how training images are scored for calibration without their own patches")
    oof_folds: int = Field(5, ge=0, description="folds of oof=kfold (0 = off, as oof=off)")
    pretrained: bool = Field(True, description="ImageNet weights for the backbone (false only in tests)")

    @field_validator("neighbourhood")
    @classmethod
    def _odd_window(cls, value: int) -> int:
        if value % 2 == 0:  # no centre cell: the map would grow by one and shift by half a cell
            raise ValueError("expected an odd window (1, 3, 5, ...)")
        return value

    @model_validator(mode="after")
    def _folds(self) -> FeatureMemoryOptions:
        if self.oof_folds == 1:
            raise ValueError("option oof_folds=1: expected 0 (off) or at least 2 folds")
        loo = self.oof == "leave_one_out" and self.oof_folds != 0
        if self.region_window > 0 and not loo:
            if "region_window" in self.model_fields_set:
                raise ValueError(f"option region_window={self.region_window} works with oof=leave_one_out (got "
                                 f"oof={self.oof}, oof_folds={self.oof_folds}); set region_window=0")
            self.region_window = 0.0  # the default applies with leave-one-out scores only
        if self.min_memory > self.max_memory:
            raise ValueError(f"option min_memory={self.min_memory} is above max_memory={self.max_memory}")
        return self


# registry key -> options model; tests/models/test_options.py checks it against DETECTORS and the classes
OPTIONS: dict[str, type[DetectorOptions]] = {
    cls.kind: cls for cls in (AutoencoderOptions, ClassifierOptions, CustomCNNOptions, FeatureMemoryOptions,
                              FeaturesSVMOptions, FeaturesRFOptions, FeaturesXGBOptions, SegmenterOptions)
}
