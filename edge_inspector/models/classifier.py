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
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.types import GOOD, Sample
from .base import Detector, DetectorError
from .training import (
    AugmentConfig,
    EarlyStopping,
    augment_batch,
    binary_auroc,
    make_generator,
    minibatches,
    run_epochs,
)

SYNTHETIC = "synthetic"

DEFAULTS: dict[str, Any] = {
    "epochs": 8,
    "batch_size": 16,
    "lr": 1e-3,  # heads and conv head
    "backbone_lr_scale": 0.1,  # unfrozen MBConv blocks learn slower than the new heads
    "weight_decay": 1e-4,
    "dropout": 0.2,
    "patience": 3,
    "monitor": "loss",  # early stopping on val "loss" or val "auroc"
    "freeze_blocks": None,  # None: freeze every block up to output stride 16
    "balance": "weights",  # "weights" (class-weighted losses) | "oversample" | "none"
    "type_loss_weight": 1.0,
    "augment": True,
    "augment_views": 2,  # cached augmented copies per image; 0 = fresh augmentation every batch (uncached)
    "synthetic_defects": "auto",  # "auto": when < min_defects real defects; True: always; False: never
    "min_defects": 8,
    "pretrained": True,
}


class ClassifierNet(nn.Module):
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

    def logits(self, fmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        pooled = self.dropout(fmap.mean(dim=(2, 3)))
        return self.binary(pooled)[:, 0], (self.types(pooled) if self.types is not None else None)

    def train(self, mode: bool = True) -> ClassifierNet:
        """Only dropout follows ``mode``: batch norm always keeps its ImageNet statistics (see module doc)."""
        super().train(mode)
        for m in self.backbone.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        return self


class ClassifierGraph(nn.Module):
    """Exported graph: image -> (pred_score [N], anomaly_map [N, H, W], type_probs [N, K] if K > 0)."""

    def __init__(self, net: ClassifierNet, input_size: tuple[int, int]):
        super().__init__()
        self.net = net
        self.input_size = tuple(input_size)

    def forward(self, x01: torch.Tensor):
        fmap = self.net.top(self.net.front(x01))
        pooled = fmap.mean(dim=(2, 3))
        logit = self.net.binary(pooled)[:, 0]
        w = self.net.binary.weight.view(1, -1, 1, 1)
        cam = (fmap * w).sum(dim=1, keepdim=True) + self.net.binary.bias.view(1, 1, 1, 1)
        cam = F.interpolate(cam, size=self.input_size, mode="bilinear", align_corners=False)[:, 0]
        outputs = [torch.sigmoid(logit), torch.sigmoid(cam)]
        if self.net.types is not None:
            outputs.append(torch.softmax(self.net.types(pooled), dim=1))
        return tuple(outputs)


def _to_bgr8(batch: np.ndarray) -> list[np.ndarray]:
    """float32 (N, 3, H, W) RGB [0, 1] -> BGR uint8 images, the form data/augment.py works on."""
    rgb = np.clip(np.round(batch.transpose(0, 2, 3, 1) * 255.0), 0, 255).astype(np.uint8)
    return [np.ascontiguousarray(im[:, :, ::-1]) for im in rgb]


def _from_bgr8(images: list[np.ndarray]) -> np.ndarray:
    rgb = np.stack([im[:, :, ::-1] for im in images]).astype(np.float32) / 255.0
    return np.ascontiguousarray(rgb.transpose(0, 3, 1, 2))


class ClassifierDetector(Detector):
    """Supervised defect/ok classifier with a defect-type head (see module docstring)."""

    kind: ClassVar[str] = "classifier"

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.cfg = self._check(self._take_options(DEFAULTS))
        self.classes: list[str] = []
        self.output_names = ["pred_score", "anomaly_map", "type_probs"]
        self._net: ClassifierNet | None = None
        self._graph: ClassifierGraph | None = None
        self._n_synthetic = 0

    def _check(self, cfg: dict[str, Any]) -> dict[str, Any]:
        if cfg["balance"] not in ("weights", "oversample", "none"):
            raise DetectorError(f"classifier: option balance={cfg['balance']!r}; expected 'weights', "
                                "'oversample' or 'none'")
        if cfg["monitor"] not in ("loss", "auroc"):
            raise DetectorError(f"classifier: option monitor={cfg['monitor']!r}; expected 'loss' or 'auroc'")
        if cfg["synthetic_defects"] not in ("auto", True, False):
            raise DetectorError(f"classifier: option synthetic_defects={cfg['synthetic_defects']!r}; "
                                "expected 'auto', true or false")
        if not 0.0 <= float(cfg["dropout"]) < 1.0:
            raise DetectorError(f"classifier: option dropout={cfg['dropout']}; expected a value in [0, 1)")
        for key in ("epochs", "batch_size", "patience", "augment_views"):
            if int(cfg[key]) < (0 if key in ("epochs", "augment_views") else 1):
                raise DetectorError(f"classifier: option {key}={cfg[key]} must be positive")
        return cfg

    # -- data ----------------------------------------------------------------------------------------
    def _synthesize(self, good: np.ndarray, stream: int) -> np.ndarray:
        """One synthetic defect per good image, seeded by (seed, stream)."""
        from ..data.augment import synthesize_defects

        rng = np.random.default_rng((self.seed, 1000 + stream))
        images, _masks, _types = synthesize_defects(_to_bgr8(good), rng)
        return _from_bgr8(list(images))

    def _prepare(self, samples: list[Sample], stream: int, synthesize: bool
                 ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Load images; add synthetic defects when asked. Returns (x, labels, types) with
        ``types[i]`` = the real defect type, "good", or "synthetic"."""
        x = self.load(samples) if samples else np.zeros((0, 3, *self.input_size), np.float32)
        labels = np.array([s.label for s in samples], np.float32)
        types = [s.defect_type if s.label == 1 else GOOD for s in samples]
        if synthesize:
            good = x[labels == 0]
            if len(good):
                synth = self._synthesize(good, stream)
                x = np.concatenate([x, synth])
                labels = np.concatenate([labels, np.ones(len(synth), np.float32)])
                types += [SYNTHETIC] * len(synth)
        return x, labels, types

    def _wants_synthetic(self, train: list[Sample]) -> bool:
        opt = self.cfg["synthetic_defects"]
        if opt == "auto":
            return sum(s.label == 1 for s in train) < int(self.cfg["min_defects"])
        return bool(opt)

    def _freeze_count(self, backbone) -> int:
        n = self.cfg["freeze_blocks"]
        total = len(backbone._blocks)
        if n is None:
            n = sum(1 for s in backbone.block_strides if s <= 16)
        n = int(n)
        if not 0 <= n <= total:
            raise DetectorError(f"classifier: option freeze_blocks={n}; {self.backbone_name} has {total} blocks")
        return n

    # -- training --------------------------------------------------------------------------------------
    def fit(self, train: list[Sample], val: list[Sample] | None = None, progress: bool = True) -> dict:
        from .backbone import load_backbone

        started = time.perf_counter()
        self._setup_torch()
        if not train:
            raise DetectorError("classifier: the training split is empty")
        synth = self._wants_synthetic(train)
        x, y, types = self._prepare(train, 0, synth)
        if (y == 1).sum() == 0 or (y == 0).sum() == 0:
            raise DetectorError(
                f"classifier: training needs both good and defective images, got {int((y == 0).sum())} good and "
                f"{int((y == 1).sum())} defective (set synthetic_defects=true to synthesize defects)")
        self._n_synthetic = types.count(SYNTHETIC)
        self.classes = sorted({t for t in types if t not in (GOOD, SYNTHETIC)})
        self.output_names = ["pred_score", "anomaly_map"] + (["type_probs"] if self.classes else [])
        val = list(val or [])
        val_synth = synth and bool(val) and not any(s.label == 1 for s in val)
        xv, yv, tv = self._prepare(val, 1, val_synth) if val else (None, None, None)

        backbone = load_backbone(self.backbone_name, pretrained=bool(self.cfg["pretrained"]))
        net = ClassifierNet(backbone, self._freeze_count(backbone), len(self.classes), float(self.cfg["dropout"]))
        for m in net.frozen_modules():
            for p in m.parameters():
                p.requires_grad_(False)
        self._net = net
        self._graph = ClassifierGraph(net, self.input_size)

        type_index = {t: i for i, t in enumerate(self.classes)}
        pos_weight, type_weights, sample_weights = self._balance(y, types)
        type_w = torch.tensor(type_weights, dtype=torch.float32) if type_weights is not None else None

        def loss_fn(binary_logit, type_logits, yb, tb) -> torch.Tensor:
            loss = F.binary_cross_entropy_with_logits(binary_logit, yb, pos_weight=pos_weight)
            has_type = tb >= 0
            if type_logits is not None and bool(has_type.any()):
                loss = loss + float(self.cfg["type_loss_weight"]) * F.cross_entropy(
                    type_logits[has_type], tb[has_type], weight=type_w)
            return loss

        gen = make_generator(self.seed)
        aug_cfg = AugmentConfig()
        x_t = torch.from_numpy(x)
        views = int(self.cfg["augment_views"]) if self.cfg["augment"] else 0
        online = bool(self.cfg["augment"]) and views == 0
        with torch.no_grad():  # the frozen front runs once per image (and per cached augmented view)
            cached = None
            if not online:
                parts = [self._front_all(net, x_t)]
                parts += [self._front_all(net, x_t, lambda b: augment_batch(b, gen, aug_cfg)) for _ in range(views)]
                cached = torch.cat(parts)
            cached_v = self._front_all(net, torch.from_numpy(xv)) if xv is not None and len(xv) else None
        copies = 1 + views if cached is not None else 1
        y_t = torch.from_numpy(y).repeat(copies)
        t_t = torch.tensor([type_index.get(t, -1) for t in types], dtype=torch.long).repeat(copies)
        weights_t = torch.tensor(sample_weights).repeat(copies) if sample_weights is not None else None
        trainable = [p for m in net.trainable_backbone() for p in m.parameters()]
        heads = list(net.binary.parameters()) + (list(net.types.parameters()) if net.types is not None else [])
        lr = float(self.cfg["lr"])
        opt = torch.optim.AdamW([
            {"params": trainable, "lr": lr * float(self.cfg["backbone_lr_scale"])},
            {"params": heads, "lr": lr},
        ], weight_decay=float(self.cfg["weight_decay"]))
        bs = int(self.cfg["batch_size"])

        def train_epoch(_epoch: int) -> float:
            net.train()
            total, count = 0.0, 0
            for idx in minibatches(len(y_t), bs, gen, weights_t):
                if cached is not None:
                    h = cached[idx]
                else:
                    with torch.no_grad():
                        h = net.front(augment_batch(x_t[idx], gen, aug_cfg))
                b_logit, t_logit = net.logits(net.top(h))
                loss = loss_fn(b_logit, t_logit, y_t[idx], t_t[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
                count += len(idx)
            return total / max(count, 1)

        yv_t = torch.from_numpy(yv) if yv is not None else None
        tv_t = torch.tensor([type_index.get(t, -1) for t in tv], dtype=torch.long) if tv is not None else None
        val_result: dict[str, float] = {}

        def validate() -> float:
            net.eval()
            with torch.no_grad():
                b_logit, t_logit = net.logits(torch.cat([net.top(cached_v[i:i + bs])
                                                         for i in range(0, len(cached_v), bs)]))
                loss = float(loss_fn(b_logit, t_logit, yv_t, tv_t))
            auroc = binary_auroc(b_logit.numpy(), yv)
            val_result.update(val_loss=loss, val_auroc=auroc)
            if self.cfg["monitor"] == "auroc" and np.isfinite(auroc):
                return -auroc  # EarlyStopping minimises
            return loss

        has_val = cached_v is not None
        stopper = EarlyStopping(patience=int(self.cfg["patience"]), mode="min")
        report = run_epochs(int(self.cfg["epochs"]), train_epoch, validate=validate if has_val else None,
                            stopper=stopper, module=net, show_progress=progress, desc="classifier")
        net.eval()
        if has_val:
            validate()  # figures of the restored best weights
        report.update(
            seconds=time.perf_counter() - started, n_images=len(train), n_defects=int(sum(s.label for s in train)),
            n_synthetic=self._n_synthetic, n_types=len(self.classes), freeze_blocks=net.freeze_blocks,
            feature_cache=cached is not None, augmented_views=views,
            monitor=("val_" + self.cfg["monitor"]) if has_val else "train_loss",
            **val_result,
        )
        return report

    @staticmethod
    def _front_all(net: ClassifierNet, x: torch.Tensor, transform=None, chunk: int = 16) -> torch.Tensor:
        """Frozen-front activations of ``x`` (optionally transformed first), in chunks to bound memory."""
        net.eval()
        return torch.cat([net.front(transform(x[i:i + chunk]) if transform else x[i:i + chunk])
                          for i in range(0, len(x), chunk)])

    def _balance(self, y: np.ndarray, types: list[str]):
        """(pos_weight, type-class weights, per-sample sampling weights) for the ``balance`` option."""
        mode = self.cfg["balance"]
        counts = {t: types.count(t) for t in set(types)}
        if mode == "oversample":
            # each group (good, each real type, synthetic) is drawn equally often
            return None, None, [1.0 / counts[t] for t in types]
        if mode == "none":
            return None, None, None
        n_pos, n_neg = float((y == 1).sum()), float((y == 0).sum())
        pos_weight = torch.tensor(n_neg / n_pos) if n_pos > 0 else None
        type_weights = None
        if self.classes:
            freq = np.array([counts.get(c, 0) for c in self.classes], np.float64)
            w = np.where(freq > 0, freq.sum() / (len(freq) * np.maximum(freq, 1)), 0.0)
            type_weights = w.tolist()
        return pos_weight, type_weights, None

    # -- contract ---------------------------------------------------------------------------------------
    def export_module(self) -> nn.Module:
        if self._graph is None:
            raise DetectorError("classifier: call fit() before export_module()/predict()")
        return self._graph

    def card_info(self) -> dict:
        info = super().card_info()
        info["classes"] = list(self.classes)
        net = self._net
        info["extra"] = {
            "freeze_blocks": net.freeze_blocks if net is not None else None,
            "synthetic_defects": self._n_synthetic,
            "anomaly_map": "class activation of the binary head (sigmoid), stride 32 upsampled",
            "balance": self.cfg["balance"],
        }
        return info
