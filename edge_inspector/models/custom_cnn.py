"""Custom CNN baseline trained from scratch: the "do we even need ImageNet?" reference point.

Why it exists: a small plain CNN (3-5 conv blocks with batch norm and dropout) is what many
inspection papers compare against, and it is the only option when no pretrained backbone may be
used. It keeps the classifier's I/O contract exactly (``pred_score``, ``anomaly_map`` as the class
activation of the binary head, ``type_probs``), so the daemon, calibration and compare treat it as
a classifier; the card's kind is ``classifier`` and ``extra.family`` says ``custom_cnn``.

Data handling follows the EfficientNet classifier (synthetic defects when few are labelled, class
weights or oversampling, early stopping on the val split) but is kept here rather than inherited,
so this baseline does not change when the classifier's training does. Every layer trains, batch
norm included (there are no pretrained statistics to protect), and there is no feature cache.
"""

from __future__ import annotations

import logging
import time
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.types import GOOD, Sample
from .base import Detector, DetectorError
from .training import AugmentConfig, EarlyStopping, augment_batch, binary_auroc, make_generator, minibatches, run_epochs

log = logging.getLogger(__name__)

FAMILY = "custom_cnn"
SYNTHETIC = "synthetic"

DEFAULTS: dict[str, Any] = {
    "epochs": 20,
    "batch_size": 16,
    "lr": 3e-3,
    "weight_decay": 1e-4,
    "dropout": 0.3,  # before the heads
    "block_dropout": 0.1,  # Dropout2d after each conv block
    "blocks": 4,  # 3..5 conv blocks, each halving the resolution
    "width": 16,  # channels of the first block; doubled every block
    "patience": 5,
    "monitor": "loss",
    "balance": "weights",
    "type_loss_weight": 1.0,
    "augment": True,
    "synthetic_defects": "auto",
    "min_defects": 8,
}


def synthetic_defects(good: np.ndarray, seed: int, stream: int) -> np.ndarray:
    """One synthetic defect (cut-paste, scratch, noise patch from data/augment.py) per good image of a
    float32 (N, 3, H, W) RGB [0, 1] batch, seeded by (seed, stream); returns the same layout."""
    from ..data.augment import synthesize_defects

    rgb = np.clip(np.round(good.transpose(0, 2, 3, 1) * 255.0), 0, 255).astype(np.uint8)
    bgr = [np.ascontiguousarray(im[:, :, ::-1]) for im in rgb]
    images, _masks, _types = synthesize_defects(bgr, np.random.default_rng((seed, 1000 + stream)))
    out = np.stack([im[:, :, ::-1] for im in images]).astype(np.float32) / 255.0
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


class ConvBlock(nn.Sequential):
    """conv3x3-BN-ReLU x2, 2x2 max-pool, spatial dropout: the classic VGG-style stage."""

    def __init__(self, cin: int, cout: int, dropout: float):
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.MaxPool2d(2), nn.Dropout2d(dropout),
        )


class CustomCNN(nn.Module):
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

    def logits(self, fmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        pooled = self.dropout(fmap.mean(dim=(2, 3)))
        return self.binary(pooled)[:, 0], (self.types(pooled) if self.types is not None else None)


class CustomCNNGraph(nn.Module):
    """Exported graph: image -> (pred_score [N], anomaly_map [N, H, W], type_probs [N, K] if K > 0)."""

    def __init__(self, net: CustomCNN, input_size: tuple[int, int]):
        super().__init__()
        self.net = net
        self.input_size = tuple(input_size)

    def forward(self, x01: torch.Tensor):
        fmap = self.net.fmap(x01)
        pooled = fmap.mean(dim=(2, 3))
        logit = self.net.binary(pooled)[:, 0]
        w = self.net.binary.weight.view(1, -1, 1, 1)
        cam = (fmap * w).sum(dim=1, keepdim=True) + self.net.binary.bias.view(1, 1, 1, 1)
        cam = F.interpolate(cam, size=self.input_size, mode="bilinear", align_corners=False)[:, 0]
        outputs = [torch.sigmoid(logit), torch.sigmoid(cam)]
        if self.net.types is not None:
            outputs.append(torch.softmax(self.net.types(pooled), dim=1))
        return tuple(outputs)


class CustomCNNDetector(Detector):
    """A from-scratch CNN classifier with the classifier's outputs (see module docstring)."""

    kind: ClassVar[str] = "classifier"  # card kind: the daemon's classifier rules apply
    family: ClassVar[str] = FAMILY

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.cfg = self._check(self._take_options(DEFAULTS))
        blocks = int(self.cfg["blocks"])
        if not 3 <= blocks <= 5:
            raise DetectorError(f"{FAMILY}: option blocks={blocks}; expected 3, 4 or 5")
        if int(self.cfg["width"]) < 4:
            raise DetectorError(f"{FAMILY}: option width={self.cfg['width']}; expected at least 4")
        h, w = self.input_size
        if min(h, w) < 2**blocks:
            raise DetectorError(f"{FAMILY}: input_size {h}x{w} is too small for {blocks} blocks")
        self.backbone_name = "none"
        self.classes: list[str] = []
        self.output_names = ["pred_score", "anomaly_map", "type_probs"]
        self._net: CustomCNN | None = None
        self._graph: CustomCNNGraph | None = None
        self._n_synthetic = 0

    def _check(self, cfg: dict[str, Any]) -> dict[str, Any]:
        choices = {"balance": ("weights", "oversample", "none"), "monitor": ("loss", "auroc"),
                   "synthetic_defects": ("auto", True, False)}
        for key, allowed in choices.items():
            if cfg[key] not in allowed:
                raise DetectorError(f"{FAMILY}: option {key}={cfg[key]!r}; expected one of {list(allowed)}")
        for key in ("dropout", "block_dropout"):
            if not 0.0 <= float(cfg[key]) < 1.0:
                raise DetectorError(f"{FAMILY}: option {key}={cfg[key]}; expected a value in [0, 1)")
        for key in ("epochs", "batch_size", "patience"):
            if int(cfg[key]) < (0 if key == "epochs" else 1):
                raise DetectorError(f"{FAMILY}: option {key}={cfg[key]} must be positive")
        return cfg

    def _prepare(self, samples: list[Sample], stream: int, synthesize: bool
                 ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Load images; add synthetic defects when asked. Returns (x, labels, types) with
        ``types[i]`` = the real defect type, "good", or "synthetic"."""
        x = self.load(samples) if samples else np.zeros((0, 3, *self.input_size), np.float32)
        labels = np.array([s.label for s in samples], np.float32)
        types = [s.defect_type if s.label == 1 else GOOD for s in samples]
        if synthesize and (labels == 0).any():
            synth = synthetic_defects(x[labels == 0], self.seed, stream)
            x = np.concatenate([x, synth])
            labels = np.concatenate([labels, np.ones(len(synth), np.float32)])
            types += [SYNTHETIC] * len(synth)
        return x, labels, types

    def _wants_synthetic(self, train: list[Sample]) -> bool:
        opt = self.cfg["synthetic_defects"]
        if opt == "auto":
            return sum(s.label == 1 for s in train) < int(self.cfg["min_defects"])
        return bool(opt)

    def _balance(self, y: np.ndarray, types: list[str]):
        """(pos_weight, type-class weights, per-sample sampling weights) for the ``balance`` option."""
        mode = self.cfg["balance"]
        counts = {t: types.count(t) for t in set(types)}
        if mode == "oversample":  # each group (good, each real type, synthetic) drawn equally often
            return None, None, [1.0 / counts[t] for t in types]
        if mode == "none":
            return None, None, None
        n_pos, n_neg = float((y == 1).sum()), float((y == 0).sum())
        pos_weight = torch.tensor(n_neg / n_pos) if n_pos > 0 else None
        type_weights = None
        if self.classes:
            freq = np.array([counts.get(c, 0) for c in self.classes], np.float64)
            type_weights = np.where(freq > 0, freq.sum() / (len(freq) * np.maximum(freq, 1)), 0.0).tolist()
        return pos_weight, type_weights, None

    def fit(self, train: list[Sample], val: list[Sample] | None = None, progress: bool = True) -> dict:
        started = time.perf_counter()
        self._setup_torch()
        if not train:
            raise DetectorError(f"{FAMILY}: the training split is empty")
        synth = self._wants_synthetic(train)
        x, y, types = self._prepare(train, 0, synth)
        if (y == 1).sum() == 0 or (y == 0).sum() == 0:
            raise DetectorError(
                f"{FAMILY}: training needs both good and defective images, got {int((y == 0).sum())} good and "
                f"{int((y == 1).sum())} defective (set synthetic_defects=true to synthesize defects)")
        self._n_synthetic = types.count(SYNTHETIC)
        if self._n_synthetic:
            log.warning("%s: %d labelled defect(s) in the training split; adding %d synthetic ones (labelled "
                        "defects enter the training split with --scheme stratified; synthetic_defects=false "
                        "turns this off)", FAMILY, int(sum(s.label for s in train)),
                        self._n_synthetic)
        self.classes = sorted({t for t in types if t not in (GOOD, SYNTHETIC)})
        self.output_names = ["pred_score", "anomaly_map"] + (["type_probs"] if self.classes else [])
        val = list(val or [])
        val_synth = synth and bool(val) and not any(s.label == 1 for s in val)
        xv, yv, tv = self._prepare(val, 1, val_synth) if val else (None, None, None)

        net = CustomCNN(int(self.cfg["blocks"]), int(self.cfg["width"]), len(self.classes),
                        float(self.cfg["dropout"]), float(self.cfg["block_dropout"]), self.mean, self.std)
        self._net = net
        self._graph = CustomCNNGraph(net, self.input_size)
        type_index = {t: i for i, t in enumerate(self.classes)}
        y_t, x_t = torch.from_numpy(y), torch.from_numpy(x)
        t_t = torch.tensor([type_index.get(t, -1) for t in types], dtype=torch.long)
        pos_weight, type_weights, sample_weights = self._balance(y, types)
        type_w = torch.tensor(type_weights, dtype=torch.float32) if type_weights is not None else None

        def loss_fn(b_logit, t_logit, yb, tb) -> torch.Tensor:
            loss = F.binary_cross_entropy_with_logits(b_logit, yb, pos_weight=pos_weight)
            has_type = tb >= 0
            if t_logit is not None and bool(has_type.any()):
                loss = loss + float(self.cfg["type_loss_weight"]) * F.cross_entropy(
                    t_logit[has_type], tb[has_type], weight=type_w)
            return loss

        gen = make_generator(self.seed)
        aug_cfg = AugmentConfig()
        augment = bool(self.cfg["augment"])
        opt = torch.optim.AdamW(net.parameters(), lr=float(self.cfg["lr"]),
                                weight_decay=float(self.cfg["weight_decay"]))
        bs = int(self.cfg["batch_size"])
        weights_t = torch.tensor(sample_weights) if sample_weights is not None else None

        def train_epoch(_epoch: int) -> float:
            net.train()
            total, count = 0.0, 0
            for idx in minibatches(len(y), bs, gen, weights_t):
                if len(idx) < 2:  # batch norm cannot train on a single image
                    continue
                xb = augment_batch(x_t[idx], gen, aug_cfg) if augment else x_t[idx]
                b_logit, t_logit = net.logits(net.fmap(xb))
                loss = loss_fn(b_logit, t_logit, y_t[idx], t_t[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
                count += len(idx)
            return total / max(count, 1)

        val_result: dict[str, float] = {}
        has_val = xv is not None and len(xv) > 0

        def validate() -> float:
            net.eval()
            with torch.no_grad():
                xv_t = torch.from_numpy(xv)
                b_logit, t_logit = net.logits(torch.cat([net.fmap(xv_t[i:i + bs]) for i in range(0, len(xv_t), bs)]))
                tv_t = torch.tensor([type_index.get(t, -1) for t in tv], dtype=torch.long)
                loss = float(loss_fn(b_logit, t_logit, torch.from_numpy(yv), tv_t))
            auroc = binary_auroc(b_logit.numpy(), yv)
            val_result.update(val_loss=loss, val_auroc=auroc)
            if self.cfg["monitor"] == "auroc" and np.isfinite(auroc):
                return -auroc
            return loss

        stopper = EarlyStopping(patience=int(self.cfg["patience"]), mode="min")
        report = run_epochs(int(self.cfg["epochs"]), train_epoch, validate=validate if has_val else None,
                            stopper=stopper, module=net, show_progress=progress, desc=FAMILY)
        net.eval()
        if has_val:
            validate()
        report.update(
            seconds=time.perf_counter() - started, n_images=len(train), n_defects=int(sum(s.label for s in train)),
            n_synthetic=self._n_synthetic, n_types=len(self.classes),
            monitor=("val_" + self.cfg["monitor"]) if has_val else "train_loss", **val_result,
        )
        return report

    def export_module(self) -> nn.Module:
        if self._graph is None:
            raise DetectorError(f"{FAMILY}: call fit() before export_module()/predict()")
        return self._graph.eval()

    def card_info(self) -> dict:
        info = super().card_info()
        info["classes"] = list(self.classes)
        info["backbone"] = None
        info["extra"] = {
            "family": FAMILY, "blocks": int(self.cfg["blocks"]), "width": int(self.cfg["width"]),
            "synthetic_defects": self._n_synthetic, "balance": self.cfg["balance"],
            "anomaly_map": "class activation of the binary head (sigmoid), upsampled",
        }
        return info
