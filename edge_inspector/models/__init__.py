"""Trainable detectors (torch; toolchain only) and their registry.

The registry maps a kind to a lazy import string, so listing kinds or parsing ``--model`` never
imports torch, and each detector module is loaded only when it is used.
"""

from __future__ import annotations

from typing import Any

from ..registry import Registry
from .base import Detector, DetectorError

__all__ = ["DETECTORS", "KIND_LABELS", "NORMAL_ONLY_KINDS", "Detector", "DetectorError", "check_options",
           "create_detector", "detector_class"]

# ``--model`` / the console's kind -> implementation (see registry.py)
DETECTORS = Registry("model kind", {
    "feature_memory": "edge_inspector.models.feature_memory:FeatureMemoryDetector",
    "autoencoder": "edge_inspector.models.autoencoder:AutoencoderDetector",
    "classifier": "edge_inspector.models.classifier:ClassifierDetector",
    "custom_cnn": "edge_inspector.models.custom_cnn:CustomCNNDetector",
    "features_svm": "edge_inspector.models.deep_features:FeaturesSVMDetector",
    "features_rf": "edge_inspector.models.deep_features:FeaturesRFDetector",
    "features_xgb": "edge_inspector.models.deep_features:FeaturesXGBDetector",
    "segmenter": "edge_inspector.models.segmenter:SegmenterDetector",
}, DetectorError)

# What each kind is and what it needs, in a user's words: the console's training form lists the registry
# with these labels, so a new kind shows up there without a second list (tests check every kind has one).
KIND_LABELS: dict[str, str] = {
    "feature_memory": "Feature-memory detector (PatchCore-style, normal images only)",
    "autoencoder": "Autoencoder (normal images only)",
    "classifier": "EfficientNet-Lite classifier (needs labelled defects)",
    "custom_cnn": "Small custom CNN classifier (needs labelled defects)",
    "features_svm": "Deep features + SVM (needs labelled defects)",
    "features_rf": "Deep features + random forest (needs labelled defects)",
    "features_xgb": "Deep features + XGBoost (needs labelled defects)",
    "segmenter": "Defect segmenter (needs labelled defects with masks; learns where the defect is)",
}


# Kinds that learn from normal images only: for them `train` keeps every defect for validation and
# test (data.readers.hold_out_defects) instead of wasting it in the training split.
NORMAL_ONLY_KINDS = frozenset({"feature_memory", "autoencoder"})


def detector_class(kind: str) -> type:
    """Import and return the detector class registered under ``kind``."""
    return DETECTORS.load(kind)


def create_detector(kind: str, **options: Any) -> Detector:
    """Instantiate a registered detector: ``create_detector("feature_memory", input_size=(64, 64))``."""
    return detector_class(kind)(**options)


# keyword arguments every Detector takes (models/base.py); the rest are the kind's own options
COMMON_ARGUMENTS = frozenset({"input_size", "backbone", "seed", "threads"})


def check_options(kind: str, options: dict[str, Any]) -> None:
    """Validate ``options`` for ``kind`` without importing torch, so a command refuses ``-o epochs=0`` or a
    typo before it reads a dataset. DetectorError names the kind and the option (models/options.py)."""
    from .options import OPTIONS

    if kind not in DETECTORS:
        raise DetectorError(f"unknown model kind {kind!r}; expected one of {', '.join(DETECTORS)}")
    model = OPTIONS.get(kind)
    if model is not None:  # a kind still on a plain DEFAULTS dict is checked when it is created
        model.parse({k: v for k, v in options.items() if k not in COMMON_ARGUMENTS})
