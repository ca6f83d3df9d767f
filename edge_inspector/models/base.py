"""The detector plug-in contract: what every trainable model gives the toolchain.

A detector trains in PyTorch and then leaves PyTorch behind: ``export_module`` is the exact graph
that becomes the ONNX file (mean/std normalisation and post-processing included), and the default
``predict`` runs that same module, so what is evaluated in torch is what the daemon runs.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..data.types import Sample
from ..errors import EdgeInspectorError

OUTPUT_NAMES = ("pred_score", "anomaly_map", "type_probs")


class DetectorError(EdgeInspectorError, ValueError):
    """A detector was configured or used wrongly (unknown option, predict before fit, ...)."""


@dataclass(frozen=True)
class FitReport:
    """What ``Detector.fit`` returns: the figures every kind has, and the kind's own in ``extra``.

    Why typed: ``train`` writes ``seconds`` and ``n_images`` into the card and used to find them by
    string key in whatever dict a kind returned; a kind that forgot one went unnoticed. ``extra``
    holds the kind-specific figures (``val_loss``, ``history``, ``cv_auroc``, ...).
    """

    seconds: float
    n_images: int
    extra: dict[str, Any] = field(default_factory=dict)

    def card_fields(self) -> dict[str, int | float | str | bool]:
        """The scalar figures, flat, as the card's ``training.fit_report`` has always held them."""
        scalars = {k: v for k, v in self.extra.items() if isinstance(v, (int, float, str, bool))}
        return {"seconds": self.seconds, "n_images": self.n_images, **scalars}


@dataclass(frozen=True)
class CardInfo:
    """What ``Detector.card_info`` returns: the model card's fields that only the detector knows.

    Why typed: ``train`` copies these into the card and used to find them by string key in a dict
    each kind filled by hand; a kind that misspelt ``"clases"`` wrote a card without its classes and
    nobody noticed. A kind overrides ``card_info`` with ``dataclasses.replace(super().card_info(),
    ...)``. ``extra`` is the kind's own record (the card's free-form ``extra`` object).
    """

    backbone: str | None
    parameters: int | None
    classes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so a fit with the same seed gives the same model."""
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def load_samples(samples: Sequence[Sample], input_size: tuple[int, int]) -> np.ndarray:
    """Decode samples into a float32 (N, 3, H, W) RGB [0, 1] batch through the one preprocessing path."""
    from ..data.loading import load_images

    h, w = input_size
    return load_images(list(samples), h, w)


class Detector(ABC):
    """Base class of every trainable detector.

    Subclasses set ``kind`` (the card kind), ``options_model`` (their ``DetectorOptions`` in
    models/options.py) and ``output_names`` (a subset of ``pred_score``/``anomaly_map``/``type_probs``,
    in the order ``export_module`` returns them), and implement ``fit`` and ``export_module``.
    ``_take_options`` validates ``self.options`` through the options model, so a typo or an
    out-of-range value in ``--option`` is a DetectorError naming the kind and the option.
    """

    kind: ClassVar[str]
    # the kind's typed options (a models/options.DetectorOptions subclass; not imported here, which
    # would be a cycle: options raise this module's DetectorError)
    options_model: ClassVar[type[Any] | None] = None
    # Raw scores of the normal training images, each scored by a model that did not see it
    # (out-of-fold), set by ``fit`` where that is cheap; calibration pools them with the val split.
    oof_scores: np.ndarray | None = None
    oof_method: str = "out-of-fold"  # how oof_scores were made, in words for the card ("leave-one-out")
    mean: ClassVar[tuple[float, float, float]] = (0.5, 0.5, 0.5)
    std: ClassVar[tuple[float, float, float]] = (0.5, 0.5, 0.5)
    output_names: list[str]

    # the pretrained EfficientNet-Lite variant used when the caller names none; a kind may pick
    # another where measurement says so (feature_memory: lite1)
    default_backbone: ClassVar[str] = "lite0"

    def __init__(self, *, input_size: tuple[int, int] | int = (224, 224), backbone: str | None = None,
                 seed: int = 0, threads: int = 2, **options: Any):
        if isinstance(input_size, int):
            input_size = (input_size, input_size)
        h, w = (int(v) for v in input_size)
        if h < 32 or w < 32:
            raise DetectorError(f"input_size must be at least 32x32 pixels, got {h}x{w}")
        self.input_size: tuple[int, int] = (h, w)
        self.backbone_name = backbone or self.default_backbone
        self.seed = int(seed)
        self.threads = int(threads)
        self.options: dict[str, Any] = dict(options)

    # -- helpers for subclasses ----------------------------------------------------------------
    def _take_options(self) -> Any:
        """The validated options: an instance of ``options_model`` (attribute access, defaults
        resolved). Errors are DetectorError naming the kind and the option."""
        if self.options_model is None:
            raise DetectorError(f"{type(self).__name__}: no options_model (models/options.py)")
        return self.options_model.parse(self.options)

    def _setup_torch(self) -> None:
        """Apply the thread budget and the seed before any torch work."""
        import torch

        if self.threads > 0:
            torch.set_num_threads(self.threads)
        seed_everything(self.seed)

    def load(self, samples: Sequence[Sample]) -> np.ndarray:
        return load_samples(samples, self.input_size)

    # -- the contract ----------------------------------------------------------------------------
    @abstractmethod
    def fit(self, train: list[Sample], val: list[Sample] | None = None, progress: bool = True) -> FitReport:
        """Train on ``train`` (``val`` for early stopping); return a FitReport."""

    @abstractmethod
    def export_module(self):  # -> torch.nn.Module
        """A torch module mapping image [N,3,H,W] RGB [0,1] to a tuple ordered like ``output_names``."""

    def predict(self, batch: np.ndarray, chunk: int = 16) -> dict[str, np.ndarray]:
        """Run ``export_module`` on a float32 (N, 3, H, W) batch, in chunks, without gradients."""
        import torch

        module = self.export_module().eval()
        parts: dict[str, list[np.ndarray]] = {name: [] for name in self.output_names}
        with torch.no_grad():
            for start in range(0, len(batch), chunk):
                x = torch.from_numpy(np.ascontiguousarray(batch[start:start + chunk], dtype=np.float32))
                out = module(x)
                if not isinstance(out, (tuple, list)):
                    out = (out,)
                for name, value in zip(self.output_names, out, strict=True):
                    parts[name].append(value.detach().cpu().numpy())
        return {name: np.concatenate(v) if v else np.zeros((0,), np.float32) for name, v in parts.items()}

    def parameter_count(self) -> int:
        """Parameters plus buffers (a memory bank counts: it is model size on the device)."""
        module = self.export_module()
        return int(sum(p.numel() for p in module.parameters()) + sum(b.numel() for b in module.buffers()))

    def card_info(self) -> CardInfo:
        """What the model card needs beyond the ONNX file: classes, extra, parameters, backbone."""
        return CardInfo(backbone=self.backbone_name, parameters=self.parameter_count())

    def output_meanings(self) -> dict[str, str]:
        meanings = {
            "pred_score": "raw image score, higher = more defective",
            "anomaly_map": "raw per-pixel anomaly score at input resolution",
            "type_probs": "defect-type probabilities over classes",
        }
        return {name: meanings[name] for name in self.output_names}
