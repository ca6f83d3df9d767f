"""Supervised defect segmenter with mixed supervision: learns from the defect masks a line collected.

Design (after Božič et al., "Mixed supervision for surface-defect detection", 2021), and why:

* **Encoder**: the ImageNet-pretrained EfficientNet-Lite trunk up to output stride 16, read at
  strides 4, 8 and 16. The stem and every block up to stride 8 stay frozen (option
  ``freeze_blocks``: generic low-level features, and freezing them cuts an epoch's cost by a
  third), and every batch-norm layer keeps its ImageNet statistics: with a few dozen defects,
  re-estimating them would be noise. The image head starts as "the map's peak logit" (its weights
  on the other features are zero), so a well-trained pixel head is a good image scorer from the
  first epoch on. The frozen front runs once per image (and per
  cached augmented view), so an epoch costs only the trainable blocks and the decoder: minutes
  on two CPU cores.
* **Decoder**: FPN-style top-down path (1x1 laterals, upsample, add, 3x3 conv) to one defect
  logit per stride-4 cell. No batch norm in the decoder (batches are small and mixed).
* **Image head**: two strided 3x3 convs over the decoder's stride-4 features and the logit map,
  global average + max pooled, plus the maximum and mean of the logit map, into a linear
  defect/ok logit (``pred_score``) and, when at least two defect types were seen, a type head
  (``type_probs``). Following Božič et al., the image head's inputs are detached by default
  (``detach_image_head``): the classification loss does not pull the segmentation features
  around, while the head can still rely on the map's maximum.
* **Mixed supervision**: an image with a mask trains the pixel head (BCE + soft Dice against the
  mask max-pooled to the logit grid: a cell is defective when any of its pixels is, so a crack one
  pixel wide still gives full-strength targets); a good image trains it with an all-zero mask; a defective
  image without a (non-empty) mask trains the image head only. Every image trains the image head.
  The binary image loss is class weighted (``balance="weights"``) or defects are oversampled
  (``balance="oversample"``).
* **Augmentation**: the same random flip / small rotation / shift is applied to image and mask,
  brightness/contrast to the image only; ``augment_views`` copies per image are made up front and
  their frozen-front activations cached (``augment_views=0``: no augmentation).
* **Early stopping** on a validation split: the given one when it holds good and defective parts,
  otherwise a stratified, seeded ``val_fraction`` of the training images (plus any given val).
  It watches the loss of that split's *defective* images (``monitor="defect_loss"``): its good images
  set the threshold afterwards, and good images that chose the weights score lower than new ones
  (the calibrated false-reject rate would come out too high on the line).
  ``early_stopping="carved"`` always carves it from the training images and leaves the val split
  unseen by the weights' selection, for the calibration that follows.

Exported graph (only Conv, Relu/Clip, Add, Resize, Concat, ReduceMean/ReduceMax, Gemm, Sigmoid,
Softmax, Pad: operators TensorRT supports): ``image`` [N,3,H,W] RGB [0,1] ->
``pred_score`` [N] (defect probability), ``anomaly_map`` [N,H,W] (per-pixel defect probability
at input size), ``type_probs`` [N,K] when types exist.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.types import GOOD, Sample
from .base import CardInfo, Detector, DetectorError, FitReport
from .options import SegmenterOptions
from .training import AugmentConfig, EarlyStopping, binary_auroc, make_generator, minibatches, run_epochs

log = logging.getLogger(__name__)

# the options (epochs, freeze_blocks, dice_weight, ...) are SegmenterOptions in models/options.py
TAPS = (4, 8, 16)
CACHE_HALF_BYTES = 256 * 2**20  # cached activations above this size are kept in float16


# -- network -------------------------------------------------------------------------------------
class SegmenterNet(nn.Module):
    """EfficientNet-Lite trunk (frozen front + trainable top), FPN decoder, image and type heads."""

    def __init__(self, backbone, freeze_blocks: int, decoder_channels: int, head_channels: int,
                 n_types: int, detach_image_head: bool):
        super().__init__()
        tap_block = {t: backbone._tap_block(t) for t in TAPS}
        self.tap_at = {i: t for t, i in tap_block.items()}
        last = tap_block[16]
        if not 0 <= freeze_blocks <= last:
            raise DetectorError(f"segmenter: option freeze_blocks={freeze_blocks}; expected 0..{last} "
                                f"(the stride-16 tap of {backbone.variant} is block {last})")
        self.freeze_blocks = int(freeze_blocks)
        self.detach_image_head = bool(detach_image_head)
        self._conv_stem = backbone._conv_stem
        self._bn0 = backbone._bn0
        self.blocks = nn.ModuleList(list(backbone._blocks)[: last + 1])
        self.register_buffer("_mean", backbone._mean.clone(), persistent=False)
        self.register_buffer("_std", backbone._std.clone(), persistent=False)
        c = decoder_channels
        ch = {t: backbone.block_channels[tap_block[t]] for t in TAPS}
        self.lateral = nn.ModuleDict({str(t): nn.Conv2d(ch[t], c, 1) for t in TAPS})
        self.smooth8 = nn.Conv2d(c, c, 3, padding=1)
        self.smooth4 = nn.Conv2d(c, c, 3, padding=1)
        self.seg = nn.Conv2d(c, 1, 3, padding=1)
        h = head_channels
        self.head1 = nn.Conv2d(c + 1, h, 3, stride=2, padding=1)
        self.head2 = nn.Conv2d(h, h, 3, stride=2, padding=1)
        self.binary = nn.Linear(2 * h + 2, 1)
        with torch.no_grad():  # start as "the map's peak decides": a trained pixel head is a detector already
            self.binary.weight.zero_()
            self.binary.weight[0, 2 * h] = 1.0
            self.binary.bias.zero_()
        self.types = nn.Linear(2 * h + 2, n_types) if n_types >= 2 else None

    # frozen part: stem + the first ``freeze_blocks`` blocks (cacheable) -------------------------
    def frozen_modules(self) -> list[nn.Module]:
        return [self._conv_stem, self._bn0, *list(self.blocks)[: self.freeze_blocks]]

    def front(self, x01: torch.Tensor) -> list[torch.Tensor]:
        """RGB [0, 1] -> [activation after the last frozen block, then the taps produced on the way]."""
        y = F.relu6(self._bn0(self._conv_stem((x01 - self._mean) / self._std)))
        taps = []
        for i, block in enumerate(list(self.blocks)[: self.freeze_blocks]):
            y = block(y)
            if i in self.tap_at:
                taps.append(y)
        return [y, *taps]

    def top(self, cached: list[torch.Tensor]) -> dict[int, torch.Tensor]:
        """Cached front output -> feature maps at strides 4, 8, 16."""
        y, *early = cached
        out = dict(zip([t for i, t in sorted(self.tap_at.items()) if i < self.freeze_blocks], early, strict=True))
        for i in range(self.freeze_blocks, len(self.blocks)):
            y = self.blocks[i](y)
            if i in self.tap_at:
                out[self.tap_at[i]] = y
        return out

    def decode(self, feats: dict[int, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-down path: (stride-4 decoder features, stride-4 defect logits)."""
        p = self.lateral["16"](feats[16])
        l8 = self.lateral["8"](feats[8])
        p = F.relu(self.smooth8(l8 + F.interpolate(p, size=l8.shape[-2:], mode="bilinear", align_corners=False)))
        l4 = self.lateral["4"](feats[4])
        p = F.relu(self.smooth4(l4 + F.interpolate(p, size=l4.shape[-2:], mode="bilinear", align_corners=False)))
        return p, self.seg(p)

    def image_logits(self, d4: torch.Tensor, seg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Image head: (binary logit [N], type logits [N, K] or None)."""
        if self.detach_image_head:
            d4, seg = d4.detach(), seg.detach()
        z = F.relu(self.head1(torch.cat([d4, seg], dim=1)))
        z = F.relu(self.head2(z))
        v = torch.cat([z.mean(dim=(2, 3)), z.amax(dim=(2, 3)), seg.amax(dim=(2, 3)), seg.mean(dim=(2, 3))], dim=1)
        return self.binary(v)[:, 0], (self.types(v) if self.types is not None else None)

    def forward_cached(self, cached: list[torch.Tensor]):
        """(image logit, type logits, stride-4 defect logits) from cached front activations."""
        d4, seg = self.decode(self.top(cached))
        b, t = self.image_logits(d4, seg)
        return b, t, seg

    def train(self, mode: bool = True) -> SegmenterNet:
        """Batch norm always keeps its ImageNet statistics (see the module docstring)."""
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        return self


class SegmenterGraph(nn.Module):
    """Exported graph: image -> (pred_score [N], anomaly_map [N, H, W], type_probs [N, K] if K >= 2)."""

    def __init__(self, net: SegmenterNet, input_size: tuple[int, int]):
        super().__init__()
        self.net = net
        self.input_size = tuple(int(v) for v in input_size)

    def forward(self, x01: torch.Tensor):
        b, t, seg = self.net.forward_cached(self.net.front(x01))
        amap = F.interpolate(seg, size=self.input_size, mode="bilinear", align_corners=False)[:, 0]
        outputs = [torch.sigmoid(b), torch.sigmoid(amap)]
        if t is not None:
            outputs.append(torch.softmax(t, dim=1))
        return tuple(outputs)


# -- data ------------------------------------------------------------------------------------------
@dataclass
class SegData:
    """One split as arrays: images, masks at input size, labels, mask flags and type indices."""

    x: np.ndarray  # (N, 3, H, W) float32 RGB [0, 1]
    masks: np.ndarray  # (N, H, W) float32 {0, 1}
    y: np.ndarray  # (N,) float32 image labels
    has_mask: np.ndarray  # (N,) bool: the pixel head trains on this image
    types: np.ndarray  # (N,) int64 type index, -1 for good parts / unknown types


def augment_pair(x: torch.Tensor, m: torch.Tensor, generator: torch.Generator,
                 cfg: AugmentConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random flip / rotation / shift for images (N, 3, H, W) and masks (N, 1, H, W);
    brightness and contrast for the images only. Border padding, so no black corners appear."""
    n = x.shape[0]

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=generator)

    sx = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0) if cfg.hflip else torch.ones(n)
    sy = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0) if cfg.vflip else torch.ones(n)
    angle = uniform(-cfg.rotate_deg, cfg.rotate_deg) * (math.pi / 180.0)
    tx, ty = uniform(-cfg.shift, cfg.shift) * 2.0, uniform(-cfg.shift, cfg.shift) * 2.0
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos * sx, -sin * sy, tx], 1), torch.stack([sin * sx, cos * sy, ty], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    xa = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    ma = F.grid_sample(m, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    contrast = uniform(1.0 - cfg.contrast, 1.0 + cfg.contrast).view(n, 1, 1, 1)
    brightness = uniform(-cfg.brightness, cfg.brightness).view(n, 1, 1, 1)
    mean = xa.mean(dim=(1, 2, 3), keepdim=True)
    return ((xa - mean) * contrast + mean + brightness).clamp(0.0, 1.0), ma


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Soft Dice over the whole batch (smoothing 1): insensitive to how rare defect pixels are."""
    p = torch.sigmoid(logits)
    inter = (p * target).sum()
    return 1.0 - (2.0 * inter + 1.0) / (p.sum() + target.sum() + 1.0)


def stratified_carve(samples: list[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Split off ``fraction`` of each (label, defect type) group, seeded; groups of one stay in train."""
    rng = np.random.default_rng((seed, 77))
    keep, held = [], []
    groups: dict[tuple[int, str], list[Sample]] = {}
    for s in samples:
        groups.setdefault((s.label, s.defect_type), []).append(s)
    for key in sorted(groups):
        group = groups[key]
        order = rng.permutation(len(group))
        k = int(round(fraction * len(group)))
        if len(group) >= 2:
            k = min(max(k, 1), len(group) - 1)
        else:
            k = 0
        held += [group[i] for i in order[:k]]
        keep += [group[i] for i in order[k:]]
    return keep, held


class SegmenterDetector(Detector):
    """Supervised segmentation model (see the module docstring)."""

    kind: ClassVar[str] = "segmenter"
    options_model: ClassVar[type[SegmenterOptions]] = SegmenterOptions

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.cfg: SegmenterOptions = self._take_options()
        self.classes: list[str] = []
        self.output_names = ["pred_score", "anomaly_map"]
        self._net: SegmenterNet | None = None
        self._graph: SegmenterGraph | None = None
        self._fit_info: dict[str, Any] = {}

    # -- data ------------------------------------------------------------------------------------------
    def _arrays(self, samples: list[Sample]) -> SegData:
        from ..data.loading import load_masks

        h, w = self.input_size
        x = self.load(samples)
        masks = load_masks(samples, h, w).astype(np.float32)
        y = np.array([s.label for s in samples], np.float32)
        # a defect whose mask is missing or empty at this size cannot teach pixels; its label still counts
        has_mask = np.array([s.label == 0 or (s.mask_path is not None and bool(masks[i].any()))
                             for i, s in enumerate(samples)], bool)
        index = {t: i for i, t in enumerate(self.classes)}
        types = np.array([index.get(s.defect_type, -1) if s.label == 1 else -1 for s in samples], np.int64)
        return SegData(x, masks, y, has_mask, types)

    def _splits(self, train: list[Sample], val: list[Sample] | None) -> tuple[list[Sample], list[Sample]]:
        """The training images and the early-stopping images (see the module docstring)."""
        if self.cfg.early_stopping == "carved":
            return stratified_carve(train, float(self.cfg.val_fraction), self.seed)
        val = list(val or [])
        if {s.label for s in val} == {0, 1}:
            return train, val
        fit, held = stratified_carve(train, float(self.cfg.val_fraction), self.seed)
        return fit, held + val

    def _freeze_count(self, backbone) -> int:
        n = self.cfg.freeze_blocks
        if n is None:
            n = sum(1 for s in backbone.block_strides if s <= 8)
        return int(n)

    def _cache(self, net: SegmenterNet, x: torch.Tensor, chunk: int = 16) -> list[torch.Tensor]:
        """Frozen-front activations of ``x``, chunked; float16 when they would be large."""
        net.eval()
        parts: list[list[torch.Tensor]] = []
        with torch.no_grad():
            for i in range(0, len(x), chunk):
                parts.append(net.front(x[i:i + chunk]))
        out = [torch.cat([p[k] for p in parts]) for k in range(len(parts[0]))]
        if sum(t.numel() * 4 for t in out) > CACHE_HALF_BYTES:
            out = [t.half() for t in out]
        return out

    # -- training ------------------------------------------------------------------------------------
    def fit(self, train: list[Sample], val: list[Sample] | None = None, progress: bool = True) -> FitReport:
        from .backbone import load_backbone

        started, cpu_started = time.perf_counter(), time.process_time()
        if not train:
            raise DetectorError("segmenter: the training split is empty")
        n_good = sum(s.label == 0 for s in train)
        masked = [s for s in train if s.label == 1 and s.mask_path is not None]
        if n_good == 0 or not masked:
            raise DetectorError(
                f"segmenter: training needs good parts and defective parts with masks; got {n_good} good, "
                f"{sum(s.label == 1 for s in train)} defective of which {len(masked)} with a mask "
                "(use the classifier for labels without masks, feature_memory for good parts only)")
        self._setup_torch()
        fit_samples, val_samples = self._splits(train, val)
        types = sorted({s.defect_type for s in fit_samples if s.label == 1 and s.defect_type != GOOD})
        self.classes = types if len(types) >= 2 else []
        self.output_names = ["pred_score", "anomaly_map"] + (["type_probs"] if self.classes else [])
        data = self._arrays(fit_samples)
        vdata = self._arrays(val_samples) if val_samples else None
        t_load = time.perf_counter() - started

        backbone = load_backbone(self.backbone_name, pretrained=bool(self.cfg.pretrained))
        net = SegmenterNet(backbone, self._freeze_count(backbone), int(self.cfg.decoder_channels),
                           int(self.cfg.head_channels), len(self.classes), bool(self.cfg.detach_image_head))
        for m in net.frozen_modules():
            for p in m.parameters():
                p.requires_grad_(False)
        self._net = net
        self._graph = SegmenterGraph(net, self.input_size)

        gen = make_generator(self.seed)
        x_t, m_t = torch.from_numpy(data.x), torch.from_numpy(data.masks)[:, None]
        views = int(self.cfg.augment_views) if self.cfg.augment else 0
        xs, ms = [x_t], [m_t]
        aug = AugmentConfig()
        for _ in range(views):
            xa, ma = [], []
            for i in range(0, len(x_t), 32):
                a, b = augment_pair(x_t[i:i + 32], m_t[i:i + 32], gen, aug)
                xa.append(a)
                ma.append(b)
            xs.append(torch.cat(xa))
            ms.append(torch.cat(ma))
        cached = self._cache(net, torch.cat(xs))
        masks_all = torch.cat(ms)
        copies = 1 + views
        y_t = torch.from_numpy(data.y).repeat(copies)
        hm_t = torch.from_numpy(data.has_mask).repeat(copies)
        ty_t = torch.from_numpy(data.types).repeat(copies)
        del xs, ms
        cached_v = self._cache(net, torch.from_numpy(vdata.x)) if vdata is not None else None
        t_cache = time.perf_counter() - started - t_load

        with torch.no_grad():  # the logit grid's size from one forward (no padding arithmetic to get wrong)
            grid = tuple(net.forward_cached([c[:1].float() for c in cached])[2].shape[-2:])
        targets = F.adaptive_max_pool2d(masks_all, grid)  # a cell is defective when any of its pixels is
        targets_v = (F.adaptive_max_pool2d(torch.from_numpy(vdata.masks)[:, None], grid)
                     if vdata is not None else None)
        del masks_all

        n_pos, n_neg = float(data.y.sum()), float((data.y == 0).sum())
        mode = self.cfg.balance
        pos_weight = torch.tensor(n_neg / n_pos) if mode == "weights" and n_pos > 0 else None
        sample_w = None
        if mode == "oversample":
            w = np.where(data.y == 1, 0.5 / max(n_pos, 1), 0.5 / max(n_neg, 1))
            sample_w = torch.tensor(w).repeat(copies)
        type_w = None
        if self.classes and mode == "weights":
            freq = np.bincount(data.types[data.types >= 0], minlength=len(self.classes)).astype(np.float64)
            type_w = torch.tensor(np.where(freq > 0, freq.sum() / (len(freq) * np.maximum(freq, 1)), 0.0),
                                  dtype=torch.float32)
        dice_w = float(self.cfg.dice_weight)
        img_w = float(self.cfg.image_loss_weight)
        typ_w = float(self.cfg.type_loss_weight)

        def loss_fn(b, t, seg, y, hm, ty, tgt) -> torch.Tensor:
            loss = img_w * F.binary_cross_entropy_with_logits(b, y, pos_weight=pos_weight)
            if bool(hm.any()):
                s, g = seg[hm], tgt[hm]
                loss = loss + F.binary_cross_entropy_with_logits(s, g) + dice_w * dice_loss(s, g)
            known = ty >= 0
            if t is not None and bool(known.any()):
                loss = loss + typ_w * F.cross_entropy(t[known], ty[known], weight=type_w)
            return loss

        decoder = [p for n, p in net.named_parameters() if not n.startswith(("blocks.", "_conv_stem", "_bn0"))]
        encoder = [p for p in net.blocks[net.freeze_blocks:].parameters()]
        lr = float(self.cfg.lr)
        opt = torch.optim.AdamW([{"params": encoder, "lr": lr * float(self.cfg.backbone_lr_scale)},
                                 {"params": decoder, "lr": lr}], weight_decay=float(self.cfg.weight_decay))
        bs = int(self.cfg.batch_size)

        def batch(c: list[torch.Tensor], idx: torch.Tensor) -> list[torch.Tensor]:
            return [t[idx].float() for t in c]

        def train_epoch(_epoch: int) -> float:
            net.train()
            total, count = 0.0, 0
            for idx in minibatches(len(y_t), bs, gen, sample_w):
                if len(idx) < 2:  # a single image gives a degenerate Dice/weighting step
                    continue
                b, t, seg = net.forward_cached(batch(cached, idx))
                loss = loss_fn(b, t, seg, y_t[idx], hm_t[idx], ty_t[idx], targets[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
                count += len(idx)
            return total / max(count, 1)

        val_result: dict[str, float] = {}
        defective = torch.from_numpy(vdata.y > 0.5) if vdata is not None else None

        def validate() -> float:
            net.eval()
            with torch.no_grad():
                outs = [net.forward_cached(batch(cached_v, torch.arange(i, min(i + bs, len(vdata.y)))))
                        for i in range(0, len(vdata.y), bs)]
                b = torch.cat([o[0] for o in outs])
                seg = torch.cat([o[2] for o in outs])
                t = torch.cat([o[1] for o in outs]) if outs[0][1] is not None else None
                loss = float(loss_fn(b, t, seg, torch.from_numpy(vdata.y), torch.from_numpy(vdata.has_mask),
                                     torch.from_numpy(vdata.types), targets_v))
            auroc = binary_auroc(b.numpy(), vdata.y)
            px = targets_v.numpy().ravel() > 0.5
            pixel = binary_auroc(seg.numpy().ravel(), px) if px.any() else float("nan")
            val_result.update(val_loss=loss, val_auroc=auroc, val_pixel_auroc=pixel)
            if self.cfg.monitor == "auroc" and np.isfinite(auroc):
                return -auroc
            if self.cfg.monitor == "defect_loss" and bool(defective.any()):
                with torch.no_grad():
                    loss = float(loss_fn(b[defective], None if t is None else t[defective], seg[defective],
                                         torch.from_numpy(vdata.y)[defective],
                                         torch.from_numpy(vdata.has_mask)[defective],
                                         torch.from_numpy(vdata.types)[defective], targets_v[defective]))
                val_result.update(val_defect_loss=loss)
            return loss

        stopper = EarlyStopping(patience=int(self.cfg.patience), mode="min")
        report = run_epochs(int(self.cfg.epochs), train_epoch, validate=validate if vdata is not None else None,
                            stopper=stopper, module=net, show_progress=progress, desc="segmenter")
        net.eval()
        if vdata is not None:
            validate()  # figures of the restored best weights
        self._fit_info = {"freeze_blocks": net.freeze_blocks, "augment_views": views,
                          "n_masked": int(data.has_mask[data.y == 1].sum()), "n_val": len(val_samples)}
        seconds = time.perf_counter() - started
        report.update(
            cpu_seconds=round(time.process_time() - cpu_started, 3), n_fit=len(fit_samples),
            n_val=len(val_samples), n_defects=int(data.y.sum()), n_masked=self._fit_info["n_masked"],
            n_types=len(self.classes), augmented_views=views, load_seconds=round(t_load, 3),
            cache_seconds=round(t_cache, 3), monitor=("val_" + self.cfg.monitor) if vdata else "train_loss",
            **val_result,
        )
        log.info("segmenter fit: %d images (%d with masks), %d epochs in %.1f s", len(fit_samples),
                 int(data.has_mask.sum()), report["epochs_run"], seconds)
        return FitReport(seconds=seconds, n_images=len(train), extra=report)

    # -- contract --------------------------------------------------------------------------------------
    def export_module(self) -> nn.Module:
        if self._graph is None:
            raise DetectorError("segmenter: call fit() before export_module()/predict()")
        return self._graph

    def card_info(self) -> CardInfo:
        extra = {
            **self._fit_info,
            "anomaly_map": "per-pixel defect probability (sigmoid), stride-4 logits upsampled bilinearly",
            "pred_score": "image head probability (pooled decoder features + map max/mean)",
            "balance": self.cfg.balance, "detach_image_head": self.cfg.detach_image_head,
        }
        return replace(super().card_info(), classes=list(self.classes), extra=extra)

    def output_meanings(self) -> dict[str, str]:
        meanings = {
            "pred_score": "defect probability of the image, higher = more defective",
            "anomaly_map": "per-pixel defect probability at input resolution",
            "type_probs": "defect-type probabilities over classes",
        }
        return {name: meanings[name] for name in self.output_names}
