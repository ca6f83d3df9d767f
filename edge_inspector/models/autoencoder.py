"""Autoencoder detector: learn to reconstruct normal parts; what it cannot reconstruct is a defect.

Two targets (option ``target``):

* ``"features"`` (default): reconstruct frozen EfficientNet-Lite stride-8 features (standardised
  per channel on the training set) with a 1x1-conv bottleneck autoencoder (written as a
  per-position MLP). Each feature vector
  describes a small neighbourhood, so the AE learns the manifold of normal local appearance; it
  trains in seconds on cached features and is far less fooled by texture and lighting than pixels.
* ``"pixels"``: a small convolutional AE on the [0, 1] image itself, trained with MSE + SSIM
  (losses.py). Kept because it needs no backbone and localises well on plain surfaces.

In both modes the anomaly map is the per-pixel reconstruction error (channel mean of the squared
error), brought to input resolution and Gaussian-smoothed; the image score is the mean of the
top ``topk_ratio`` of the map (``score="max"`` takes the maximum). All of that is inside
``export_module``, so the ONNX graph returns exactly what was evaluated.
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
from .losses import GaussianBlur, reconstruction_loss
from .options import AutoencoderOptions
from .training import EarlyStopping, binary_auroc, make_generator, minibatches, run_epochs

# the options (target, epochs, taps, score, ...) are AutoencoderOptions in models/options.py


# -- networks -----------------------------------------------------------------------------------------
class TapExtractor(nn.Module):
    """The frozen front of an EfficientNet-Lite up to its deepest tap; returns the taps' maps
    concatenated at the finest tap's resolution (deeper maps upsampled bilinearly).

    Holds only the blocks it runs, so the exported graph and the parameter count carry no unused
    classifier weights.
    """

    def __init__(self, backbone, taps: tuple[int, ...]):
        super().__init__()
        self.taps = tuple(sorted(int(t) for t in taps))
        blocks = {t: backbone._tap_block(t) for t in self.taps}
        self.tap_blocks = tuple(blocks[t] for t in self.taps)
        self.stem = backbone._conv_stem
        self.bn0 = backbone._bn0
        self.blocks = nn.ModuleList(list(backbone._blocks)[: max(self.tap_blocks) + 1])
        self.channels = sum(backbone.block_channels[b] for b in self.tap_blocks)
        self.register_buffer("mean", backbone._mean.detach().clone(), persistent=False)
        self.register_buffer("std", backbone._std.detach().clone(), persistent=False)
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self.bn0(self.stem((x01 - self.mean) / self.std)))
        maps = []
        for i, block in enumerate(self.blocks):
            y = block(y)
            if i in self.tap_blocks:
                maps.append(y)
        size = maps[0].shape[-2:]
        maps = [maps[0]] + [F.interpolate(m, size=size, mode="bilinear", align_corners=False) for m in maps[1:]]
        return torch.cat(maps, dim=1) if len(maps) > 1 else maps[0]


class FeatureMLP(nn.Module):
    """Per-position autoencoder squeezing each feature vector through ``bottleneck`` units.

    Mathematically a stack of 1x1 convolutions, but written as Linear layers on channel-last
    vectors: on CPU that trains ~15x faster than 1x1 Conv2d, and training can shuffle positions
    across images. Accepts (M, C) vectors or (N, C, H, W) maps.
    """

    def __init__(self, channels: int, hidden: int, bottleneck: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(channels, hidden), nn.LeakyReLU(0.1),
            nn.Linear(hidden, bottleneck), nn.LeakyReLU(0.1),
            nn.Linear(bottleneck, hidden), nn.LeakyReLU(0.1),
            nn.Linear(hidden, channels),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() == 2:
            return self.net(z)
        return self.net(z.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class PixelAutoencoder(nn.Module):
    """Small conv AE (three stride-2 stages down and up); no batch norm, so training and
    inference behave the same with batches of a few images."""

    def __init__(self, base: int = 32, bottleneck: int = 64):
        super().__init__()
        b = base
        self.encoder = nn.Sequential(
            nn.Conv2d(3, b, 4, 2, 1), nn.LeakyReLU(0.1),
            nn.Conv2d(b, 2 * b, 4, 2, 1), nn.LeakyReLU(0.1),
            nn.Conv2d(2 * b, 4 * b, 4, 2, 1), nn.LeakyReLU(0.1),
            nn.Conv2d(4 * b, bottleneck, 3, 1, 1), nn.LeakyReLU(0.1),
        )
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(bottleneck, 4 * b, 4, 2, 1), nn.LeakyReLU(0.1),
            nn.ConvTranspose2d(4 * b, 2 * b, 4, 2, 1), nn.LeakyReLU(0.1),
            nn.ConvTranspose2d(2 * b, b, 4, 2, 1), nn.LeakyReLU(0.1),
            nn.Conv2d(b, 3, 3, 1, 1), nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.decoder(self.encoder(x))
        if y.shape[-2:] != x.shape[-2:]:  # input sizes that are not multiples of 8
            y = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return y


class MapHead(nn.Module):
    """Error map (N, 1, h, w) -> (pred_score [N], anomaly_map [N, H, W]) at input resolution."""

    def __init__(self, input_size: tuple[int, int], sigma: float, score: str, topk_ratio: float):
        super().__init__()
        self.input_size = tuple(input_size)
        self.blur = GaussianBlur(sigma)
        self.use_max = score == "max"
        self.k = max(1, int(round(topk_ratio * input_size[0] * input_size[1])))

    def forward(self, err: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if err.shape[-2:] != self.input_size:
            err = F.interpolate(err, size=self.input_size, mode="bilinear", align_corners=False)
        amap = self.blur(err)[:, 0]
        flat = amap.flatten(1)
        score = flat.max(dim=1).values if self.use_max else flat.topk(self.k, dim=1).values.mean(dim=1)
        return score, amap


class FeatureAEGraph(nn.Module):
    """Exported graph of the ``features`` target: image -> (pred_score, anomaly_map)."""

    def __init__(self, extractor: TapExtractor, ae: nn.Module, feat_mean: torch.Tensor, feat_std: torch.Tensor,
                 head: MapHead):
        super().__init__()
        self.extractor = extractor
        self.ae = ae
        self.register_buffer("feat_mean", feat_mean.view(1, -1, 1, 1).clone())
        self.register_buffer("feat_std", feat_std.view(1, -1, 1, 1).clone())
        self.head = head

    def standardize(self, feats: torch.Tensor) -> torch.Tensor:
        return (feats - self.feat_mean) / self.feat_std

    def forward(self, x01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.standardize(self.extractor(x01))
        err = (z - self.ae(z)).pow(2).mean(dim=1, keepdim=True)
        return self.head(err)


class PixelAEGraph(nn.Module):
    """Exported graph of the ``pixels`` target: image -> (pred_score, anomaly_map)."""

    def __init__(self, ae: PixelAutoencoder, head: MapHead):
        super().__init__()
        self.ae = ae
        self.head = head

    def forward(self, x01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        err = (x01 - self.ae(x01)).pow(2).mean(dim=1, keepdim=True)
        return self.head(err)


# -- the detector ---------------------------------------------------------------------------------------
class AutoencoderDetector(Detector):
    """Reconstruction-error detector trained on normal images only (defective training images are skipped)."""

    kind: ClassVar[str] = "autoencoder"
    options_model: ClassVar[type[AutoencoderOptions]] = AutoencoderOptions

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.cfg: AutoencoderOptions = self._take_options()
        if self.cfg.smooth_sigma is None:  # the one default that depends on the input size, not the options
            self.cfg.smooth_sigma = max(1.0, min(self.input_size) / 56.0)
        self.output_names = ["pred_score", "anomaly_map"]
        self._graph: nn.Module | None = None

    # -- training ---------------------------------------------------------------------------------------
    def fit(self, train: list[Sample], val: list[Sample] | None = None, progress: bool = True) -> FitReport:
        started = time.perf_counter()
        self._setup_torch()
        normal = [s for s in train if s.label == 0]
        if not normal:
            raise DetectorError(f"autoencoder: the training split has no normal images ({len(train)} samples, "
                                "all defective); it learns from normal parts only")
        val = list(val or [])
        val_normal = [s for s in val if s.label == 0]
        x = torch.from_numpy(self.load(normal))
        xv = torch.from_numpy(self.load(val_normal)) if val_normal else None
        head = MapHead(self.input_size, self.cfg.smooth_sigma, self.cfg.score, self.cfg.topk_ratio)
        if self.cfg.target == "features":
            report = self._fit_features(x, xv, head, progress)
        else:
            report = self._fit_pixels(x, xv, head, progress)
        if val and any(s.label == 1 for s in val) and val_normal:
            scores = self.predict(self.load(val))["pred_score"]
            report["val_auroc"] = binary_auroc(scores, [s.label for s in val])
        report.update(target=self.cfg.target, skipped_defective=len(train) - len(normal))
        return FitReport(seconds=time.perf_counter() - started, n_images=len(normal), extra=report)

    def _fit_features(self, x: torch.Tensor, xv: torch.Tensor | None, head: MapHead, show: bool) -> dict:
        from .backbone import load_backbone

        backbone = load_backbone(self.backbone_name, pretrained=bool(self.cfg.pretrained))
        extractor = TapExtractor(backbone, self.cfg.taps).eval()
        with torch.no_grad():  # frozen backbone: compute every feature map once
            feats = torch.cat([extractor(x[i:i + 16]) for i in range(0, len(x), 16)])
            feats_v = torch.cat([extractor(xv[i:i + 16]) for i in range(0, len(xv), 16)]) if xv is not None else None
        mean = feats.mean(dim=(0, 2, 3))
        std = feats.std(dim=(0, 2, 3)).clamp_min(1e-4)
        ae = FeatureMLP(extractor.channels, int(self.cfg.hidden), self.cfg.bottleneck)
        graph = FeatureAEGraph(extractor, ae, mean, std, head)
        positions = feats.shape[-2] * feats.shape[-1]

        def vectors(f: torch.Tensor) -> torch.Tensor:  # (N, C, h, w) -> (N*h*w, C), standardised
            return graph.standardize(f).permute(0, 2, 3, 1).reshape(-1, f.shape[1])

        zv = vectors(feats_v) if feats_v is not None else None
        report = self._train(ae, vectors(feats), zv, lambda a, b: F.mse_loss(b, a), show,
                             batch=self.cfg.batch_size * positions)
        self._graph = graph.eval()
        report["feature_channels"] = extractor.channels
        return report

    def _fit_pixels(self, x: torch.Tensor, xv: torch.Tensor | None, head: MapHead, show: bool) -> dict:
        ae = PixelAutoencoder(int(self.cfg.base_channels), self.cfg.bottleneck)
        w = float(self.cfg.ssim_weight)
        report = self._train(ae, x, xv, lambda a, b: reconstruction_loss(a, b, ssim_weight=w), show)
        self._graph = PixelAEGraph(ae, head).eval()
        return report

    def _train(self, ae: nn.Module, data: torch.Tensor, val: torch.Tensor | None, loss_fn, show: bool,
               batch: int | None = None) -> dict:
        """AdamW on ``loss_fn(input, reconstruction)`` over minibatches of ``data``'s first axis (images, or
        feature vectors); early stopping on the loss of the normal val images."""
        gen = make_generator(self.seed)
        opt = torch.optim.AdamW(ae.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        bs = int(batch or self.cfg.batch_size)

        def train_epoch(_epoch: int) -> float:
            ae.train()
            total = 0.0
            for idx in minibatches(len(data), bs, gen):
                batch = data[idx]
                loss = loss_fn(batch, ae(batch))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            return total / len(data)

        def validate() -> float:
            ae.eval()
            with torch.no_grad():
                losses = [float(loss_fn(val[i:i + bs], ae(val[i:i + bs]))) * len(val[i:i + bs])
                          for i in range(0, len(val), bs)]
            return sum(losses) / len(val)

        stopper = EarlyStopping(patience=int(self.cfg.patience), mode="min")
        report = run_epochs(self.cfg.epochs, train_epoch, validate=validate if val is not None else None,
                            stopper=stopper, module=ae, show_progress=show, desc=f"autoencoder[{self.cfg.target}]")
        report["monitor"] = "val_loss" if val is not None else "train_loss"
        if val is not None:
            report["val_loss"] = stopper.best
        ae.eval()
        return report

    # -- contract ---------------------------------------------------------------------------------------
    def export_module(self) -> nn.Module:
        if self._graph is None:
            raise DetectorError("autoencoder: call fit() before export_module()/predict()")
        return self._graph

    def card_info(self) -> CardInfo:
        cfg = self.cfg
        extra = {
            "target": cfg.target, "score": cfg.score, "topk_ratio": cfg.topk_ratio,
            "smooth_sigma": cfg.smooth_sigma, "bottleneck": cfg.bottleneck,
            **({"taps": list(cfg.taps)} if cfg.target == "features" else {"ssim_weight": cfg.ssim_weight}),
        }
        info = super().card_info()
        return replace(info, extra=extra, backbone=info.backbone if cfg.target == "features" else None)

