"""EfficientNet-Lite transfer-learning classifier: a binary defect/ok head and a defect-type head.

Why it is built this way:

* The early blocks stay frozen (option ``freeze_blocks``; by default every block up to output
  stride 16) and every batch-norm layer keeps its ImageNet statistics: with a few dozen images
  per class, re-estimating them would be noise. Frozen means frozen: their parameters and buffers
  are bit-identical after ``fit`` (tested).
* The frozen part runs once per image and its output is cached, so an epoch costs only the
  trainable top blocks: minutes on two CPU cores, not hours. Augmentation (flips, small
  rotations/shifts, brightness/contrast) is applied to ``augment_views`` copies of each training
  image up front, and those views are cached too; ``augment_views=0`` augments every batch anew
  instead (more variety, but the frozen part then runs every epoch: ~20x slower on CPU).
* Rare defect types are handled by class weights (default) or oversampling (``balance``).
* When the training split has no or very few defects, synthetic ones (cut-paste, scratches,
  noise patches from ``data/augment.py``) are added for the binary head; they never enter the
  type head, whose classes are the real defect types seen in training.
* ``anomaly_map`` is the class activation of the binary head over the last feature map: the
  binary logit is a linear function of the pooled features, so applying the same weights at each
  position gives a map whose mean is exactly the image logit (no Grad-CAM, no gradients, exportable).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..data.types import Sample
from .base import CardInfo, Detector, DetectorError, FitReport
from .options import ClassifierOptions
from .supervised import SupervisedTraining, TwoHeadGraph, TwoHeadNet, epoch_trainer
from .training import AugmentConfig, augment_batch, make_generator

# the options (epochs, lr, freeze_blocks, balance, ...) are ClassifierOptions in models/options.py


class ClassifierNet(TwoHeadNet):
    """Backbone split into a frozen front and a trainable top, plus the binary and type heads."""

    def __init__(self, backbone, freeze_blocks: int, n_types: int, dropout: float):
        super().__init__()
        self.freeze_blocks = freeze_blocks
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.binary = nn.Linear(1280, 1)
        self.types = nn.Linear(1280, n_types) if n_types > 0 else None
        # the backbone's own ImageNet classifier is not part of this model
        self.backbone._fc = nn.Identity()

    def frozen_modules(self) -> list[nn.Module]:
        return [self.backbone._conv_stem, self.backbone._bn0, *list(self.backbone._blocks)[: self.freeze_blocks]]

    def trainable_backbone(self) -> list[nn.Module]:
        return [*list(self.backbone._blocks)[self.freeze_blocks:], self.backbone._conv_head, self.backbone._bn1]

    def front(self, x01: torch.Tensor) -> torch.Tensor:
        """Frozen part: RGB [0, 1] -> the activation after the last frozen block (cacheable)."""
        b = self.backbone
        y = F.relu6(b._bn0(b._conv_stem(b.normalize(x01))))
        for block in list(b._blocks)[: self.freeze_blocks]:
            y = block(y)
        return y

    def top(self, h: torch.Tensor) -> torch.Tensor:
        """Trainable part: cached activation -> last feature map (N, 1280, h, w)."""
        b = self.backbone
        for block in list(b._blocks)[self.freeze_blocks:]:
            h = block(h)
        return F.relu6(b._bn1(b._conv_head(h)))

    def train(self, mode: bool = True) -> ClassifierNet:
        """Only dropout follows ``mode``: batch norm always keeps its ImageNet statistics (see module doc)."""
        super().train(mode)
        for m in self.backbone.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        return self


class ClassifierGraph(TwoHeadGraph):
    """Exported graph: image -> (pred_score [N], anomaly_map [N, H, W], type_probs [N, K] if K > 0)."""

    def fmap(self, x01: torch.Tensor) -> torch.Tensor:
        return self.net.top(self.net.front(x01))


class ClassifierDetector(SupervisedTraining, Detector):
    """Supervised defect/ok classifier with a defect-type head (see module docstring)."""

    kind: ClassVar[str] = "classifier"
    options_model: ClassVar[type[ClassifierOptions]] = ClassifierOptions

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.cfg: ClassifierOptions = self._take_options()
        self.classes: list[str] = []
        self.output_names = ["pred_score", "anomaly_map", "type_probs"]
        self._net: ClassifierNet | None = None
        self._graph: ClassifierGraph | None = None
        self._n_synthetic = 0

    # -- data ----------------------------------------------------------------------------------------
    def _freeze_count(self, backbone) -> int:
        n = self.cfg.freeze_blocks
        total = len(backbone._blocks)
        if n is None:
            n = sum(1 for s in backbone.block_strides if s <= 16)
        n = int(n)
        if not 0 <= n <= total:
            raise DetectorError(f"classifier: option freeze_blocks={n}; {self.backbone_name} has {total} blocks")
        return n

    # -- training --------------------------------------------------------------------------------------
    def fit(self, train: list[Sample], val: list[Sample] | None = None, progress: bool = True) -> FitReport:
        from .backbone import load_backbone

        started = time.perf_counter()
        self._setup_torch()
        data = self._fit_data("classifier", train, val)
        x, xv = data.x, data.xv

        backbone = load_backbone(self.backbone_name, pretrained=bool(self.cfg.pretrained))
        net = ClassifierNet(backbone, self._freeze_count(backbone), len(self.classes), float(self.cfg.dropout))
        for m in net.frozen_modules():
            for p in m.parameters():
                p.requires_grad_(False)
        self._net = net
        self._graph = ClassifierGraph(net, self.input_size)
        loss_fn, sample_weights = self._loss(data)

        gen = make_generator(self.seed)
        aug_cfg = AugmentConfig()
        x_t = torch.from_numpy(x)
        views = int(self.cfg.augment_views) if self.cfg.augment else 0
        online = bool(self.cfg.augment) and views == 0
        with torch.no_grad():  # the frozen front runs once per image (and per cached augmented view)
            cached = None
            if not online:
                parts = [self._front_all(net, x_t)]
                parts += [self._front_all(net, x_t, lambda b: augment_batch(b, gen, aug_cfg)) for _ in range(views)]
                cached = torch.cat(parts)
            cached_v = self._front_all(net, torch.from_numpy(xv)) if xv is not None and len(xv) else None
        copies = 1 + views if cached is not None else 1
        y_t = torch.from_numpy(data.y).repeat(copies)
        t_t = self._type_targets(data.types).repeat(copies)
        weights_t = torch.tensor(sample_weights).repeat(copies) if sample_weights is not None else None
        trainable = [p for m in net.trainable_backbone() for p in m.parameters()]
        heads = list(net.binary.parameters()) + (list(net.types.parameters()) if net.types is not None else [])
        lr = float(self.cfg.lr)
        opt = torch.optim.AdamW([
            {"params": trainable, "lr": lr * float(self.cfg.backbone_lr_scale)},
            {"params": heads, "lr": lr},
        ], weight_decay=float(self.cfg.weight_decay))
        bs = int(self.cfg.batch_size)

        def fmap(idx: torch.Tensor) -> torch.Tensor:
            if cached is not None:
                h = cached[idx]
            else:
                with torch.no_grad():
                    h = net.front(augment_batch(x_t[idx], gen, aug_cfg))
            return net.top(h)

        def val_fmap() -> torch.Tensor:
            return torch.cat([net.top(cached_v[i:i + bs]) for i in range(0, len(cached_v), bs)])

        return self._train_and_report(
            "classifier", net, data, loss_fn, train=train, started=started, progress=progress,
            train_epoch=epoch_trainer(net, opt, loss_fn, fmap, y_t, t_t, bs, gen, weights_t),
            val_fmap=val_fmap if cached_v is not None else None,
            freeze_blocks=net.freeze_blocks, feature_cache=cached is not None, augmented_views=views,
        )

    @staticmethod
    def _front_all(net: ClassifierNet, x: torch.Tensor, transform=None, chunk: int = 16) -> torch.Tensor:
        """Frozen-front activations of ``x`` (optionally transformed first), in chunks to bound memory."""
        net.eval()
        return torch.cat([net.front(transform(x[i:i + chunk]) if transform else x[i:i + chunk])
                          for i in range(0, len(x), chunk)])

    # -- contract ---------------------------------------------------------------------------------------
    def export_module(self) -> nn.Module:
        if self._graph is None:
            raise DetectorError("classifier: call fit() before export_module()/predict()")
        return self._graph

    def card_info(self) -> CardInfo:
        net = self._net
        extra = {
            "freeze_blocks": net.freeze_blocks if net is not None else None,
            "synthetic_defects": self._n_synthetic,
            "anomaly_map": "class activation of the binary head (sigmoid), stride 32 upsampled",
            "balance": self.cfg.balance,
        }
        return replace(super().card_info(), classes=list(self.classes), extra=extra)
