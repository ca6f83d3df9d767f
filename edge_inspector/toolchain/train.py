"""Train one detector on a dataset and leave a deployable model behind: ONNX + card + calibration.

``train_model`` is the one place that turns a fitted torch detector into files: the ``train``
command, the evaluation engineer's ``auto`` mode and the console all call it, so every model on
disk went through the same export parity check and the same threshold calibration.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

from ..data.types import Dataset, DatasetError, Sample, samples_digest

log = logging.getLogger(__name__)

CalibrationSource = Literal["val", "train", "none"]
# Options that belong to the Detector base class rather than to one detector kind.
BASE_OPTIONS = ("input_size", "backbone", "threads")


def default_calibration_dir(out_dir: Path) -> Path:
    """``<repo>/models`` -> ``<repo>/calibration`` (the documented layout); any other folder keeps
    its calibration records in ``<out_dir>/calibration`` so a scratch run never writes outside it."""
    out_dir = Path(out_dir)
    return out_dir.parent / "calibration" if out_dir.name == "models" else out_dir / "calibration"


def _calibration_samples(dataset: Dataset, source: CalibrationSource) -> tuple[list[Sample], str]:
    """Pick the images the threshold is calibrated on, and say which ones were used.

    Training images are a last resort: a memory-bank detector has seen them, so their scores are
    biased low and a threshold from them rejects too many good parts.
    """
    if source == "none":
        return [], "none"
    if source == "val":
        val = dataset.split("val")
        if val:
            return val, "val"
        log.warning("%s: no 'val' split; calibrating on the train split (threshold will be optimistic)",
                    dataset.name)
    return dataset.split("train"), "train"


def limit_train(dataset: Dataset, max_train: int | None, seed: int = 0, defects_first: bool = True) -> Dataset:
    """The dataset with at most ``max_train`` training images (a seeded subset).

    Fit time of a memory-bank detector grows with the training set while accuracy saturates
    after a few hundred images; benchmarks and the CLI cap it with this.

    Defective images come first: they are rare, and a random cap of 200 out of 800 training images
    keeps only a quarter of them, while a model that learns from defects (classifier, segmenter)
    needs every one. So every defective image is kept up to half the cap (a seeded sample beyond
    that, so good parts still make up the other half), good parts fill the rest, and defects fill
    in where good parts run short. The split info records the rule (``max_train_rule``) so that
    ``quantize`` rebuilds the same subset; ``defects_first=False`` is the plain random subset that
    older cards were trained on. A split of good parts only gets the same subset either way.
    """
    import random
    from dataclasses import replace

    train = dataset.split("train")
    if max_train is None or len(train) <= max_train:
        return dataset
    if max_train < 1:
        raise DatasetError(f"max_train must be at least 1, got {max_train}")
    rng = random.Random(seed)
    defects = [s for s in train if s.label == 1]
    info = dict(dataset.split_info, max_train=max_train)
    if defects_first and defects:
        good = [s for s in train if s.label != 1]
        n_defects = min(len(defects), max(max_train // 2, max_train - len(good)))
        chosen = rng.sample(defects, n_defects) + rng.sample(good, min(len(good), max_train - n_defects))
        info["max_train_rule"] = "defects_first"
    else:
        chosen = rng.sample(train, max_train)
    keep = {s.path for s in chosen}
    samples = [s for s in dataset.samples if s.split != "train" or s.path in keep]
    return replace(dataset, samples=samples, split_info=info)


def auto_input_size(samples: list[Sample], base: int = 224, short_side: int = 176, max_side: int = 448,
                    detail_max_side: int = 640) -> tuple[int, int]:
    """Input size (H, W) that keeps the parts' shape: square for roughly square images, otherwise
    the median aspect ratio with a 176 px short side (long side capped at 448, multiples of 16);
    twice those pixels (each side x sqrt 2, long side <= 640) when the frames hold at least twice
    the detail, i.e. their short side is >= 2x the input's.

    Squashing a 512x203 commutator image into 224x224 shrinks its defects 2.5x along one axis;
    keeping the aspect ratio raised image AUROC from 0.865 to 0.913 and pixel AUROC from 0.840 to
    0.949 on KolektorSDD (bench/accuracy.py, feature_memory).

    Why the detail step: a defect of a few dozen pixels on a large frame shrinks to a fraction of
    a feature-map cell at 224 px. On mpdd_metal_plate (512 px frames, native split, feature_memory)
    224 -> 320 -> 384 -> 448 px: image AUROC 1.000 throughout, pixel AUROC 0.984 -> 0.986 -> 0.987
    -> 0.987, defects passed at the calibrated threshold 0.864 -> 0.210 -> 0.185 -> 0.247, for
    about 2x the compute at 320 (4x at 448). Frames that are not 2x the input gain nothing real
    from upscaling (magnetic_tile's 250-380 px tiles at 320: image AUROC 0.901 -> 0.884), so
    they keep the base size.
    """
    import numpy as np

    from ..data.readers import image_size

    sizes = np.array([image_size(Path(s.path)) for s in samples[:64]], dtype=float)
    aspect = float(np.median(sizes[:, 0] / sizes[:, 1]))  # height / width
    elongation = max(aspect, 1.0 / aspect)
    if elongation < 1.3:
        size = (base, base)
    else:
        long_side = min(max_side, int(round(short_side * elongation / 16)) * 16)
        size = (long_side, short_side) if aspect > 1 else (short_side, long_side)
    frame_short = float(np.median(sizes.min(axis=1)))
    if frame_short >= 2 * min(size):
        size = tuple(min(detail_max_side, int(round(v * 2 ** 0.5 / 16)) * 16) for v in size)
    return size


def train_model(kind: str, dataset: Dataset, out_dir: Path, *, name: str | None = None, seed: int = 0,
                options: dict[str, Any] | None = None, progress: bool = True,
                calibration: CalibrationSource = "val", calibration_dir: Path | None = None,
                calibration_method: str = "auto", calibration_target: float | None = None) -> Path:
    """Fit ``kind`` on the train split, export it to ONNX (parity-checked), calibrate and write the card.

    ``options`` holds the Detector options (``input_size``, ``backbone``, ``threads``) and the
    kind's own (``epochs``, ``coreset_ratio``, ...). ``calibration`` names the split that sets the
    threshold ("val", falling back to "train" when there is no val split; "none" keeps the raw
    scale). Writes ``out_dir/<name>.onnx``, ``out_dir/<name>.card.json`` and
    ``<calibration_dir>/<name>.json``; returns the card path.
    """
    from ..card import InputSpec, ModelCard, ScoreNormalization, TrainingInfo
    from ..export.onnx import export_onnx
    from ..models import NORMAL_ONLY_KINDS, create_detector
    from ..models.base import DetectorError, FitReport
    from .calibrate import calibrate_model

    train = dataset.split("train")
    if not train:
        raise DatasetError(f"{dataset.root}: dataset '{dataset.name}' has no training images")
    val = dataset.split("val") or None
    opts = dict(options or {})
    if opts.get("input_size") in (None, "auto"):
        opts["input_size"] = auto_input_size(train)
        log.info("%s: input size %dx%d (from the training images' aspect ratio)", dataset.name, *opts["input_size"])
    name = name or f"{dataset.name}-{kind}"
    detector = create_detector(kind, seed=seed, **opts)  # bad kind/options fail before any file is written
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fit_report = detector.fit(train, val, progress=progress)
    if not isinstance(fit_report, FitReport):  # a new kind that forgot the contract fails here, named
        raise DetectorError(f"{kind}: fit() returned {type(fit_report).__name__}, expected a models.base.FitReport")
    fit_seconds = fit_report.seconds

    parity_samples = (val or [])[:2] + train[:2]
    onnx_path = out_dir / f"{name}.onnx"
    export = export_onnx(detector, onnx_path, detector.load(parity_samples))

    info = detector.card_info()
    h, w = detector.input_size
    # what the model really learned from: a normal-only kind skips the defects a stratified split puts in train
    learned = [s for s in train if s.label == 0] if kind in NORMAL_ONLY_KINDS else train
    card = ModelCard(
        name=name, kind=detector.kind, model_file=onnx_path.name, model_sha256=export.sha256,
        input=InputSpec(height=h, width=w, mean=list(detector.mean), std=list(detector.std)),
        outputs=detector.output_meanings(), classes=list(info.classes),
        normalization=ScoreNormalization(threshold=0.0, min=0.0, max=1.0, method="uncalibrated"),
        training=TrainingInfo(
            data_digest=samples_digest(learned), dataset=dataset.name, n_images=len(learned), seed=seed,
            backbone=info.backbone, fit_seconds=round(fit_seconds, 3),
            options={k: (list(v) if isinstance(v, tuple) else v) for k, v in opts.items()},
            fit_report=fit_report.card_fields(),
            export={"opset": export.opset, "max_abs_diff": export.max_abs_diff},
            split=dict(dataset.split_info),  # evaluate/calibrate re-split alike (data.readers.split_like_training)
        ),
        parameters=info.parameters, extra=dict(info.extra),
    )
    card_path = card.save(out_dir / f"{name}.card.json")

    samples, source = _calibration_samples(dataset, calibration)
    oof = detector.oof_scores if calibration != "none" else None
    if oof is not None and source == "train":
        samples = [s for s in samples if s.label != 0]  # the normal ones are already in, out-of-fold
    if samples or oof is not None:
        calibrate_model(card_path, samples, method=calibration_method, target=calibration_target,
                        calibration_dir=calibration_dir or default_calibration_dir(out_dir),
                        source=f"{dataset.name}:{source}", progress=progress,
                        extra_normal_scores=oof, extra_source=f"training images scored {detector.oof_method}",
                        on_training_images=source == "train" and oof is None)
    return card_path
