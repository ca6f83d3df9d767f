"""Custom CNN baseline trained from scratch: the "do we even need ImageNet?" reference point.

Why it exists: a small plain CNN (3-5 conv blocks with batch norm and dropout) is what many
inspection papers compare against, and it is the only option when no pretrained backbone may be
used. It keeps the classifier's I/O contract exactly (``pred_score``, ``anomaly_map`` as the class
activation of the binary head, ``type_probs``), so the daemon, calibration and compare treat it as
a classifier; the card's kind is ``classifier`` and ``extra.family`` says ``custom_cnn``.

Data handling is the EfficientNet classifier's (synthetic defects when few are labelled, class
weights or oversampling, early stopping on the val split), shared through ``supervised.py`` so the
two stay comparable. Every layer trains, batch norm included (there are no pretrained statistics to
protect), and there is no feature cache.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any, ClassVar

import torch
from torch import nn

from ..data.types import Sample
from .base import CardInfo, Detector, DetectorError, FitReport
from .options import CustomCNNOptions
from .supervised import SupervisedTraining, TwoHeadGraph, TwoHeadNet, epoch_trainer
from .training import AugmentConfig, augment_batch, make_generator

log = logging.getLogger(__name__)

FAMILY = "custom_cnn"

# the options (epochs, blocks, width, dropout, ...) are CustomCNNOptions in models/options.py


class ConvBlock(nn.Sequential):
    """conv3x3-BN-ReLU x2, 2x2 max-pool, spatial dropout: the classic VGG-style stage."""

    def __init__(self, cin: int, cout: int, dropout: float):
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.MaxPool2d(2), nn.Dropout2d(dropout),
        )


class CustomCNN(TwoHeadNet):
    """Conv blocks -> global average pool -> dropout -> binary head and (optional) type head."""

    def __init__(self, blocks: int, width: int, n_types: int, dropout: float, block_dropout: float,
                 mean: tuple[float, float, float] = (0.5, 0.5, 0.5), std: tuple[float, float, float] = (0.5, 0.5, 0.5)):
        super().__init__()
        chans = [3] + [width * 2**i for i in range(blocks)]
        self.features = nn.Sequential(*[ConvBlock(chans[i], chans[i + 1], block_dropout) for i in range(blocks)])
        self.out_channels = chans[-1]
        self.dropout = nn.Dropout(dropout)
        self.binary = nn.Linear(self.out_channels, 1)
        self.types = nn.Linear(self.out_channels, n_types) if n_types > 0 else None
        self.register_buffer("_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def fmap(self, x01: torch.Tensor) -> torch.Tensor:
        return self.features((x01 - self._mean) / self._std)


class CustomCNNGraph(TwoHeadGraph):
    """Exported graph: image -> (pred_score [N], anomaly_map [N, H, W], type_probs [N, K] if K > 0)."""

    def fmap(self, x01: torch.Tensor) -> torch.Tensor:
        return self.net.fmap(x01)


class CustomCNNDetector(SupervisedTraining, Detector):
    """A from-scratch CNN classifier with the classifier's outputs (see module docstring)."""

    kind: ClassVar[str] = "classifier"  # card kind: the daemon's classifier rules apply
    family: ClassVar[str] = FAMILY
    options_model: ClassVar[type[CustomCNNOptions]] = CustomCNNOptions

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.cfg: CustomCNNOptions = self._take_options()
        blocks = self.cfg.blocks
        h, w = self.input_size
        if min(h, w) < 2**blocks:
            raise DetectorError(f"{FAMILY}: input_size {h}x{w} is too small for {blocks} blocks")
        self.backbone_name = "none"
        self.classes: list[str] = []
        self.output_names = ["pred_score", "anomaly_map", "type_probs"]
        self._net: CustomCNN | None = None
        self._graph: CustomCNNGraph | None = None
        self._n_synthetic = 0

    def fit(self, train: list[Sample], val: list[Sample] | None = None, progress: bool = True) -> FitReport:
        started = time.perf_counter()
        self._setup_torch()

        def warn_synthetic() -> None:
            log.warning("%s: %d labelled defect(s) in the training split; adding %d synthetic ones (labelled "
                        "defects enter the training split with --scheme stratified; synthetic_defects=false "
                        "turns this off)", FAMILY, int(sum(s.label for s in train)),
                        self._n_synthetic)

        data = self._fit_data(FAMILY, train, val, on_synthetic=warn_synthetic)
        xv = data.xv

        net = CustomCNN(int(self.cfg.blocks), int(self.cfg.width), len(self.classes),
                        float(self.cfg.dropout), float(self.cfg.block_dropout), self.mean, self.std)
        self._net = net
        self._graph = CustomCNNGraph(net, self.input_size)
        y_t, x_t = torch.from_numpy(data.y), torch.from_numpy(data.x)
        t_t = self._type_targets(data.types)
        loss_fn, sample_weights = self._loss(data)

        gen = make_generator(self.seed)
        aug_cfg = AugmentConfig()
        augment = bool(self.cfg.augment)
        opt = torch.optim.AdamW(net.parameters(), lr=float(self.cfg.lr),
                                weight_decay=float(self.cfg.weight_decay))
        bs = int(self.cfg.batch_size)
        weights_t = torch.tensor(sample_weights) if sample_weights is not None else None

        def fmap(idx: torch.Tensor) -> torch.Tensor:
            return net.fmap(augment_batch(x_t[idx], gen, aug_cfg) if augment else x_t[idx])

        def val_fmap() -> torch.Tensor:
            xv_t = torch.from_numpy(xv)
            return torch.cat([net.fmap(xv_t[i:i + bs]) for i in range(0, len(xv_t), bs)])

        return self._train_and_report(
            FAMILY, net, data, loss_fn, train=train, started=started, progress=progress,
            train_epoch=epoch_trainer(net, opt, loss_fn, fmap, y_t, t_t, bs, gen, weights_t, min_batch=2),
            val_fmap=val_fmap if xv is not None and len(xv) > 0 else None,
        )

    def export_module(self) -> nn.Module:
        if self._graph is None:
            raise DetectorError(f"{FAMILY}: call fit() before export_module()/predict()")
        return self._graph.eval()

    def card_info(self) -> CardInfo:
        extra = {
            "family": FAMILY, "blocks": int(self.cfg.blocks), "width": int(self.cfg.width),
            "synthetic_defects": self._n_synthetic, "balance": self.cfg.balance,
            "anomaly_map": "class activation of the binary head (sigmoid), upsampled",
        }
        return replace(super().card_info(), classes=list(self.classes), backbone=None, extra=extra)
