"""Supervised two-head training (binary defect/ok + defect type) shared by the classifier and the custom CNN.

Why shared: both detectors promise the same data handling (synthetic defects when few are labelled,
class weights or oversampling, the same loss, early stopping on the val split, the same fit report),
so the daemon, calibration and compare can treat them alike. Keeping one copy means a fix to that
handling reaches both, instead of one of them silently drifting; only the network and how a batch
becomes a feature map stay with each detector.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.types import GOOD, Sample
from .base import DetectorError, FitReport
from .training import EarlyStopping, binary_auroc, minibatches, run_epochs

SYNTHETIC = "synthetic"

LossFn = Callable[[torch.Tensor, "torch.Tensor | None", torch.Tensor, torch.Tensor], torch.Tensor]


def synthetic_defects(good: np.ndarray, seed: int, stream: int) -> np.ndarray:
    """One synthetic defect (cut-paste, scratch, noise patch from data/augment.py) per good image of a
    float32 (N, 3, H, W) RGB [0, 1] batch, seeded by (seed, stream); returns the same layout.

    data/augment.py works on BGR uint8 images, hence the round trip."""
    from ..data.augment import synthesize_defects

    rgb = np.clip(np.round(good.transpose(0, 2, 3, 1) * 255.0), 0, 255).astype(np.uint8)
    bgr = [np.ascontiguousarray(im[:, :, ::-1]) for im in rgb]
    images, _masks, _types = synthesize_defects(bgr, np.random.default_rng((seed, 1000 + stream)))
    out = np.stack([im[:, :, ::-1] for im in images]).astype(np.float32) / 255.0
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


class TwoHeadNet(nn.Module):
    """A network ending in global average pooling, ``dropout``, a ``binary`` head and an optional ``types`` head."""

    dropout: nn.Module
    binary: nn.Linear
    types: nn.Linear | None

    def logits(self, fmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        pooled = self.dropout(fmap.mean(dim=(2, 3)))
        return self.binary(pooled)[:, 0], (self.types(pooled) if self.types is not None else None)


class TwoHeadGraph(nn.Module):
    """Exported graph: image -> (pred_score [N], anomaly_map [N, H, W], type_probs [N, K] if K > 0).

    The anomaly map is the binary head applied at every position of the last feature map: the logit
    is linear in the pooled features, so the map's mean is exactly the image logit (no gradients,
    exportable). Subclasses say how an image becomes that feature map (``fmap``)."""

    def __init__(self, net: TwoHeadNet, input_size: tuple[int, int]):
        super().__init__()
        self.net = net
        self.input_size = tuple(input_size)

    def fmap(self, x01: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x01: torch.Tensor):
        fmap = self.fmap(x01)
        pooled = fmap.mean(dim=(2, 3))
        logit = self.net.binary(pooled)[:, 0]
        w = self.net.binary.weight.view(1, -1, 1, 1)
        cam = (fmap * w).sum(dim=1, keepdim=True) + self.net.binary.bias.view(1, 1, 1, 1)
        cam = F.interpolate(cam, size=self.input_size, mode="bilinear", align_corners=False)[:, 0]
        outputs = [torch.sigmoid(logit), torch.sigmoid(cam)]
        if self.net.types is not None:
            outputs.append(torch.softmax(self.net.types(pooled), dim=1))
        return tuple(outputs)


@dataclass
class FitData:
    """Training and (optional) validation arrays; ``types[i]`` is the real defect type, "good" or "synthetic"."""

    x: np.ndarray
    y: np.ndarray
    types: list[str]
    xv: np.ndarray | None
    yv: np.ndarray | None
    tv: list[str] | None


class SupervisedTraining:
    """Mixin for a ``Detector`` with ``cfg`` options ``synthetic_defects``, ``min_defects``, ``balance``,
    ``type_loss_weight``, ``patience`` and ``monitor``; it owns ``classes``, ``output_names`` and
    ``_n_synthetic`` once ``_fit_data`` has run."""

    cfg: Any  # the detector's options model (models/options.py: ClassifierOptions, CustomCNNOptions)
    classes: list[str]
    output_names: list[str]
    _n_synthetic: int

    def _wants_synthetic(self, train: list[Sample]) -> bool:
        opt = self.cfg.synthetic_defects
        if opt == "auto":
            return sum(s.label == 1 for s in train) < int(self.cfg.min_defects)
        return bool(opt)

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

    def _fit_data(self, name: str, train: list[Sample], val: list[Sample] | None,
                  on_synthetic: Callable[[], None] | None = None) -> FitData:
        """Training set (topped up with synthetic defects per ``synthetic_defects``) and the val set, which
        gets synthetic defects only when training did and it has no real ones (else its AUROC is undefined).
        Sets ``classes`` from the real defect types, so synthetic ones never reach the type head."""
        if not train:
            raise DetectorError(f"{name}: the training split is empty")
        synth = self._wants_synthetic(train)
        x, y, types = self._prepare(train, 0, synth)
        if (y == 1).sum() == 0 or (y == 0).sum() == 0:
            raise DetectorError(
                f"{name}: training needs both good and defective images, got {int((y == 0).sum())} good and "
                f"{int((y == 1).sum())} defective (set synthetic_defects=true to synthesize defects)")
        self._n_synthetic = types.count(SYNTHETIC)
        if self._n_synthetic and on_synthetic is not None:
            on_synthetic()
        self.classes = sorted({t for t in types if t not in (GOOD, SYNTHETIC)})
        self.output_names = ["pred_score", "anomaly_map"] + (["type_probs"] if self.classes else [])
        val = list(val or [])
        val_synth = synth and bool(val) and not any(s.label == 1 for s in val)
        xv, yv, tv = self._prepare(val, 1, val_synth) if val else (None, None, None)
        return FitData(x, y, types, xv, yv, tv)

    def _balance(self, y: np.ndarray, types: list[str]):
        """(pos_weight, type-class weights, per-sample sampling weights) for the ``balance`` option."""
        mode = self.cfg.balance
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

    def _type_targets(self, types: list[str]) -> torch.Tensor:
        """Type-head targets; -1 (good, synthetic) is left out of the type loss."""
        index = {t: i for i, t in enumerate(self.classes)}
        return torch.tensor([index.get(t, -1) for t in types], dtype=torch.long)

    def _loss(self, data: FitData) -> tuple[LossFn, list[float] | None]:
        """The two-head loss weighted per ``balance``, and the per-sample sampling weights (oversampling)."""
        pos_weight, type_weights, sample_weights = self._balance(data.y, data.types)
        type_w = torch.tensor(type_weights, dtype=torch.float32) if type_weights is not None else None
        type_loss_weight = float(self.cfg.type_loss_weight)

        def loss_fn(b_logit, t_logit, yb, tb) -> torch.Tensor:
            loss = F.binary_cross_entropy_with_logits(b_logit, yb, pos_weight=pos_weight)
            has_type = tb >= 0
            if t_logit is not None and bool(has_type.any()):
                loss = loss + type_loss_weight * F.cross_entropy(t_logit[has_type], tb[has_type], weight=type_w)
            return loss

        return loss_fn, sample_weights

    def _train_and_report(self, name: str, net: nn.Module, data: FitData, loss_fn: LossFn, *,
                          train: list[Sample], started: float, progress: bool,
                          train_epoch: Callable[[int], float],
                          val_fmap: Callable[[], torch.Tensor] | None, **extra: Any) -> FitReport:
        """Early stopping on the val loss or AUROC (``monitor``), or the train loss without a val split;
        ``val_fmap`` gives the val feature maps. ``extra`` goes into the report before the monitor figures."""
        has_val = val_fmap is not None
        yv_t = torch.from_numpy(data.yv) if has_val else None
        tv_t = self._type_targets(data.tv) if has_val else None
        val_result: dict[str, float] = {}

        def validate() -> float:
            net.eval()
            with torch.no_grad():
                b_logit, t_logit = net.logits(val_fmap())
                loss = float(loss_fn(b_logit, t_logit, yv_t, tv_t))
            auroc = binary_auroc(b_logit.numpy(), data.yv)
            val_result.update(val_loss=loss, val_auroc=auroc)
            if self.cfg.monitor == "auroc" and np.isfinite(auroc):
                return -auroc  # EarlyStopping minimises
            return loss

        stopper = EarlyStopping(patience=int(self.cfg.patience), mode="min")
        report = run_epochs(int(self.cfg.epochs), train_epoch, validate=validate if has_val else None,
                            stopper=stopper, module=net, show_progress=progress, desc=name)
        net.eval()
        if has_val:
            validate()  # figures of the restored best weights
        report.update(
            n_defects=int(sum(s.label for s in train)),
            n_synthetic=self._n_synthetic, n_types=len(self.classes), **extra,
            monitor=("val_" + self.cfg.monitor) if has_val else "train_loss", **val_result,
        )
        return FitReport(seconds=time.perf_counter() - started, n_images=len(train), extra=report)


def epoch_trainer(net: nn.Module, opt: torch.optim.Optimizer, loss_fn: LossFn, fmap: Callable[[torch.Tensor],
                  torch.Tensor], y: torch.Tensor, t: torch.Tensor, batch_size: int, generator: torch.Generator,
                  weights: torch.Tensor | None, min_batch: int = 1) -> Callable[[int], float]:
    """One epoch over seeded (or oversampled) minibatches; ``fmap(idx)`` turns a batch of indices into the
    feature map. Batches smaller than ``min_batch`` are skipped (batch norm cannot train on one image)."""

    def train_epoch(_epoch: int) -> float:
        net.train()
        total, count = 0.0, 0
        for idx in minibatches(len(y), batch_size, generator, weights):
            if len(idx) < min_batch:
                continue
            b_logit, t_logit = net.logits(fmap(idx))
            loss = loss_fn(b_logit, t_logit, y[idx], t[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        return total / max(count, 1)

    return train_epoch
