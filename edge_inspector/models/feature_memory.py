"""PatchCore-style feature-memory detector on EfficientNet-Lite features.

Training only stores knowledge: patch features of normal images (stride 8, 16 and 32 taps, the
deeper ones upsampled, 3x3 local averaging for a little context) are reduced to a coreset, the
memory bank, and every training image is scored leave-one-out for calibration. At test time each
patch's distance to its nearest memory entry is its anomaly score; the map is smoothed with a fixed
Gaussian and upsampled to the input size; the image score is the mean of its top patches
(``score_fraction``; 0 gives the plain maximum), read inside a border band (``score_border``) while
the map keeps the whole frame. A region branch (``region_window``, models/region_memory.py) adds a
second, small memory of features averaged over windows a third of the map wide: a change of a whole
region's texture, which no single patch shows, lifts the map there. Everything after the pixels -- normalisation,
backbone, nearest-neighbour search (as matmuls, no cdist), smoothing -- is one torch module,
exported as one ONNX graph with the memory bank as a constant, so the daemon runs exactly what was
evaluated.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.types import Sample
from .backbone import FeatureTrunk, fold_batchnorm, load_backbone
from .base import Detector, DetectorError, FitReport
from .coreset import greedy_coreset
from .nearest import nearest_squared
from .options import FeatureMemoryOptions
from .region_memory import RegionMemory, fit_region_memory

log = logging.getLogger(__name__)

# Why the defaults (models/options.FeatureMemoryOptions declares them, with ranges):
# - taps (8, 16, 32): the stride-32 tap adds the context that EfficientNet-Lite's shallow stride-16
#   stage lacks (PatchCore's WideResNet-50 layer3 is far deeper), while stride 8 keeps small defects a
#   few cells wide. Measured on three real sets, native split, <= 200 training images, image / pixel
#   AUROC (8,16) -> (8,16,32): magnetic_tile 0.796/0.758 -> 0.846/0.780, kolektorsdd 0.909/0.940 ->
#   0.942/0.960, mpdd 1.000/0.989 -> 1.000/0.984. (16, 32) alone scored 0.864/0.795, 0.942/0.953,
#   0.994/0.973: about the same mean, but a stride-16 map loses defects of a few dozen pixels.
#   Adding the stride-4 tap averaged 2x2 onto the stride-8 map (taps=[8,4,16,32]; whole native
#   train split) moved image / pixel AUROC magnetic_tile 0.901/0.807 -> 0.901/0.814, kolektorsdd
#   0.959/0.958 -> 0.960/0.965, mpdd 1.000/0.984 -> 1.000/0.986, +10 % inference time; but on the
#   demo line it passed 1 of 40 defective parts (none without it): too mixed for a default.
# - tap_balance "none": scaling each tap to the same mean squared norm (PatchCore pools each layer to
#   one width for that reason) moved image / pixel AUROC kolektorsdd 0.959/0.958 -> 0.960/0.964,
#   magnetic_tile 0.901/0.807 -> 0.903/0.804, mpdd (320 px) 1.000/0.986 -> 1.000/0.988, but mpdd's
#   escape at the calibrated threshold 0.210 -> 0.395 (bench/results/accuracy_tap_balance.txt): an option.
# - pca_dims 0 (all dims): projecting the patch features on 128 / 192 principal axes of the training
#   patches keeps the ranking (image AUROC within 0.008 on the three sets) and makes the daemon
#   1.4-1.6x faster (the distance search is most of the model), but the escape at the calibrated
#   threshold rose on all three (kolektorsdd 0.423 -> 0.500 / 0.519, magnetic_tile 0.459 -> 0.500 /
#   0.482, mpdd 0.235 -> 0.370 / 0.593 at 192 / 128): the dropped axes are those along which good
#   patches hardly vary, where a defect departs from them (bench/results/accuracy_pca.txt): an option.
# - coverage_quantile: see _coreset; coreset_ratio 0.01 is PatchCore's fixed fraction, used when it is 0.
# - score_fraction 0.05: image score = mean of the top 5 % of map patches (see score_features).
# - score_border 16 px: the image score leaves out the map's outer 16 input pixels (2 cells at stride 8)
#   at each edge. The backbone zero-pads every convolution, so frame-edge patches differ from all others
#   and, on varied surfaces, sit far from the bank: the map's peak was on its outer cell in 97 % of
#   magnetic_tile's and 95 % of kolektorsdd's test good parts (ad-hoc count). 16 px is the band the
#   usual resize-256 / centre-crop-224 protocol of PatchCore's benchmarks drops; here the map (heatmap,
#   pixel metrics) keeps it. Native split, whole train split, image / pixel AUROC, FRR, escape, 0 -> 16
#   px: magnetic_tile 0.901/0.807 0.021 0.472 -> 0.934/0.807 0.026 0.459; kolektorsdd 0.959/0.958 0.029
#   0.385 -> 0.960/0.958 0.019 0.423 (oracle escape 0.442 -> 0.308); mpdd 1.000/0.986 0.000 0.210 ->
#   1.000/0.986 0.000 0.235; demo line 2/160 -> 1/160 false rejects, 0/40 escapes both. 1 or 3 cells
#   gave magnetic_tile 0.926 / 0.930 (ad-hoc). A defect only in the band still shows on the map and
#   enters the score through the pooled and smoothed cells next to it, but weaker: `-o score_border=0`
#   for parts whose defects sit on the frame's edge.
# - oof leave_one_out: see leave_one_out_scores.
# - region_window 0.33: the region branch (models/region_memory.py, why and what it costs). Native split, whole
#   train split, image / pixel AUROC, FRR, escape, off -> on: magnetic_tile 0.934/0.807 0.026 0.459 -> 0.956/0.838
#   0.000 0.431; kolektorsdd 0.960/0.958 0.019 0.423 -> 0.964/0.961 0.019 0.308; mpdd 1.000/0.986 0.000 0.235 ->
#   1.000/0.988 0.000 0.272; demo line 1/160 false rejects 0/40 escapes -> 1/160 1/40 (its scratches are a few
#   pixels: tools/demo.sh turns it off). `auto` tries it off when validation holds labelled defects.


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """Normalised 2-D Gaussian (1, 1, k, k) with k = 2 * ceil(3 sigma) + 1; a 1x1 identity for sigma 0."""
    if sigma <= 0:
        return torch.ones(1, 1, 1, 1)
    radius = max(1, int(math.ceil(3 * sigma)))
    ax = torch.arange(-radius, radius + 1, dtype=torch.float32)
    g = torch.exp(-(ax**2) / (2 * sigma**2))
    k2 = torch.outer(g, g)
    return (k2 / k2.sum()).view(1, 1, 2 * radius + 1, 2 * radius + 1)


class PatchEmbedder(nn.Module):
    """RGB [0,1] images -> (N, D, h, w) locally aggregated patch features at the first tap's stride."""

    def __init__(self, trunk: FeatureTrunk, neighbourhood: int):
        super().__init__()
        self.trunk = trunk
        self.neighbourhood = int(neighbourhood)
        # per-channel factors set by balance_taps (None: the taps as the backbone gives them)
        self.register_buffer("channel_scale", None)
        # principal axes (p, D) and mean (1, D, 1, 1) set by fit_projection (None: all D channels)
        self.register_buffer("projection", None)
        self.register_buffer("projection_mean", None)

    def reset(self) -> None:
        """Forget what a previous fit learnt (tap scale, projection): features as the backbone gives them."""
        self.channel_scale = None
        self.projection = None
        self.projection_mean = None

    def tap_slices(self) -> list[slice]:
        """The channel range of each tap in the concatenated features, in ``taps`` order."""
        out, start = [], 0
        for t in self.trunk.taps:
            out.append(slice(start, start + self.trunk.channels[t]))
            start += self.trunk.channels[t]
        return out

    def balance_taps(self, maps: torch.Tensor) -> torch.Tensor:
        """Give every tap the same share of the squared patch distance; returns ``maps`` rescaled.

        Concatenated as they come, a tap weighs by its channel count times its activations' size:
        Lite1's stride-32 tap (320 channels of large values) outweighs the stride-8 detail (40
        channels). PatchCore pools each layer to the same width for this reason. Each tap is scaled
        so that its mean squared norm over the training patches is the taps' average one."""
        slices = self.tap_slices()
        energy = [float((maps[:, sl] ** 2).sum(1).mean()) for sl in slices]
        target = sum(energy) / len(energy)
        scale = torch.ones(maps.shape[1])
        for sl, e in zip(slices, energy, strict=True):
            scale[sl] = math.sqrt(target / e) if e > 0 else 1.0
        self.channel_scale = scale.view(1, -1, 1, 1)
        return maps * self.channel_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.trunk(x)
        size = maps[0].shape[-2:]
        parts = [maps[0]] + [F.interpolate(m, size=size, mode="bilinear", align_corners=False) for m in maps[1:]]
        f = torch.cat(parts, dim=1)
        if self.channel_scale is not None:
            f = f * self.channel_scale
        if self.neighbourhood > 1:
            k = self.neighbourhood
            f = F.avg_pool2d(f, k, stride=1, padding=k // 2, count_include_pad=False)
        if self.projection is not None:
            f = F.conv2d(f - self.projection_mean, self.projection[:, :, None, None])
        return f

    def fit_projection(self, maps: torch.Tensor, dims: int, max_samples: int = 100_000,
                       seed: int = 0) -> tuple[torch.Tensor, float]:
        """Project the patch features on their ``dims`` principal axes; returns (projected maps, the
        share of the training patches' variance kept).

        The nearest-neighbour search costs memory size x feature dims per patch, most of the model's
        inference; neighbouring patch features are strongly correlated (pooled, upsampled taps), so
        few axes keep nearly all of the variance. The axes come from the covariance of up to
        ``max_samples`` random training patches (float64 eigendecomposition of a D x D matrix)."""
        feats = maps.permute(0, 2, 3, 1).reshape(-1, maps.shape[1])
        g = torch.Generator().manual_seed(seed)
        sample = feats[torch.randperm(len(feats), generator=g)[:max_samples]]
        mean = sample.mean(0)
        centred = sample - mean
        cov = (centred.T @ centred).double() / len(sample)
        vals, vecs = torch.linalg.eigh(cov)  # ascending
        self.projection = vecs[:, -dims:].flip(1).T.float().contiguous()
        self.projection_mean = mean.view(1, -1, 1, 1).contiguous()
        kept = float(vals[-dims:].clamp(min=0).sum() / vals.clamp(min=0).sum().clamp(min=1e-30))
        return F.conv2d(maps - self.projection_mean, self.projection[:, :, None, None]), kept


class FeatureMemoryModule(nn.Module):
    """The exported graph: image -> (pred_score [N], anomaly_map [N, H, W])."""

    def __init__(self, embedder: PatchEmbedder, memory: torch.Tensor, input_size: tuple[int, int],
                 sigma_features: float, score_fraction: float = 0.0, border_cells: int = 0):
        super().__init__()
        self.score_fraction = float(score_fraction)
        self.border_cells = int(border_cells)
        self.embedder = embedder
        # the bank is stored centred on its mean: what keeps the exported map within tolerance (models/nearest.py)
        centre = memory.mean(0)
        centred = memory - centre
        self.register_buffer("centre", centre.view(1, 1, -1))  # (1, 1, D)
        self.register_buffer("memory_t", centred.t().contiguous())  # (D, M): one matmul per batch
        self.register_buffer("memory_sq", (centred * centred).sum(1))  # (M,)
        # Distances below 1 % of the bank's RMS norm count as exact matches: sqrt's slope near 0
        # would otherwise blow float32 rounding noise of a perfect match up to visible map values.
        floor = 1e-2 * float(self.memory_sq.mean().sqrt()) if len(memory) else 0.0
        self.register_buffer("floor_sq", torch.tensor(floor * floor))
        self.register_buffer("kernel", gaussian_kernel(sigma_features))
        self.input_size = tuple(input_size)
        self.region: RegionMemory | None = None  # the region branch (attach_region), off by default

    def attach_region(self, region: RegionMemory, patch_scores: np.ndarray, region_scores: np.ndarray) -> None:
        """Add the region branch; the two maps are summed after each is put on the scale of its own
        out-of-fold training image scores (``patch_scores``: the patch detector's, ``region_scores``:
        the region map's maximum), so that neither branch rules by its units alone. The image score is
        then read from the summed map as before (top fraction inside the border band)."""
        self.region = region
        for name, values in (("patch", patch_scores), ("region", region_scores)):
            loc = float(np.mean(values))
            scale = max(float(np.std(values)), 1e-6 * max(abs(loc), 1.0))
            self.register_buffer(f"{name}_loc", torch.tensor(loc))
            self.register_buffer(f"{name}_scale", torch.tensor(scale))

    def patch_distances(self, f: torch.Tensor, excluded: torch.Tensor | None = None) -> torch.Tensor:
        """(N, D, h, w) features -> (N, 1, h, w) Euclidean distance to the nearest memory entry.

        ``excluded`` (N, M) bool marks entries image n may not match (leave-one-out scoring of
        training images at fit time; never in the exported graph)."""
        h, w = f.shape[-2:]
        q = f.flatten(2).transpose(1, 2) - self.centre  # (N, hw, D)
        d2 = nearest_squared(q, self.memory_t, self.memory_sq, excluded)  # (N, hw)
        nearest = torch.maximum(d2, self.floor_sq).sqrt()
        return nearest.reshape(-1, 1, int(h), int(w))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.score_features(self.embedder(image))

    def smooth(self, dist: torch.Tensor) -> torch.Tensor:
        """(N, 1, h, w) patch distances through the map's Gaussian (borders replicated), at feature resolution."""
        r = self.kernel.shape[-1] // 2
        return F.conv2d(F.pad(dist, (r, r, r, r), mode="replicate"), self.kernel) if r else dist

    def inner(self, m: torch.Tensor, scale: float | tuple[float, float] = 1.0) -> torch.Tensor:
        """(N, 1, h, w) map without its outer ``border_cells`` (x ``scale`` pixels per cell, rounded; a
        (rows, columns) pair when the axes differ) at each edge: what the image score reads. The whole
        map is kept when the band would leave less than half of it."""
        sy, sx = scale if isinstance(scale, tuple) else (scale, scale)
        by, bx = int(round(self.border_cells * sy)), int(round(self.border_cells * sx))
        h, w = int(m.shape[-2]), int(m.shape[-1])
        if by <= 0 or bx <= 0 or 4 * by > h or 4 * bx > w:
            return m
        return m[..., by:h - by, bx:w - bx]

    def score_features(self, f: torch.Tensor, excluded: torch.Tensor | None = None,
                       region_excluded: torch.Tensor | None = None, patch: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """Embedded (N, D, h, w) patches -> (pred_score, anomaly_map): the graph after the backbone,
        also used to score training images out-of-fold without embedding them twice. ``patch``: the
        smoothed patch distances of ``f`` when already computed (fit time only; ``excluded`` unused then)."""
        dist = self.smooth(self.patch_distances(f, excluded)) if patch is None else patch
        if self.region is not None:
            # one map: the region distances on the patch grid, both on their training scores' scale
            region = F.interpolate(self.region(f, region_excluded), size=dist.shape[-2:], mode="bilinear",
                                   align_corners=False)
            dist = (dist - self.patch_loc) / self.patch_scale + (region - self.region_loc) / self.region_scale
        amap = F.interpolate(dist, size=self.input_size, mode="bilinear", align_corners=False)[:, 0]
        if self.score_fraction <= 0:
            # the maximum of the map as delivered (inside the border band): a heatmap's peak equals its score.
            # Input pixels per map cell on each axis (exact only when the input is a multiple of the stride).
            per_cell = (self.input_size[0] / int(dist.shape[-2]), self.input_size[1] / int(dist.shape[-1]))
            return self.inner(amap[:, None], per_cell)[:, 0].flatten(1).max(dim=1).values, amap
        # Mean of the most anomalous patches: one noisy patch no longer decides, while a defect
        # covering a few patches still does (measured on magnetic_tile/kolektorsdd: +0.08/+0.11 AUROC).
        flat = self.inner(dist).flatten(1)
        k = max(1, int(round(self.score_fraction * int(flat.shape[1]))))  # H, W are fixed per model
        return flat.topk(k, dim=1).values.mean(dim=1), amap


class FeatureMemoryDetector(Detector):
    """PatchCore-style detector: unsupervised, fits on normal images only, in seconds."""

    kind: ClassVar[str] = "feature_memory"
    options_model: ClassVar[type[FeatureMemoryOptions]] = FeatureMemoryOptions
    # EfficientNet-Lite1 (one more block per stage than Lite0, same widths): measured on the three
    # shared sets, native split, <= 200 training images, image AUROC Lite0 -> Lite1 -> Lite2:
    # kolektorsdd 0.941 -> 0.959 -> 0.952, magnetic_tile 0.834 -> 0.848 -> 0.842, mpdd 1.000 -> 1.000;
    # Lite2 adds cost without gain. About 1.3x Lite0's inference time.
    default_backbone: ClassVar[str] = "lite1"

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.config = self._take_options()
        self.output_names = ["pred_score", "anomaly_map"]
        self._module: FeatureMemoryModule | None = None
        self._embedder: PatchEmbedder | None = None
        self.oof_scores: np.ndarray | None = None

    def _build_embedder(self) -> PatchEmbedder:
        if self._embedder is None:
            net = load_backbone(self.backbone_name, pretrained=bool(self.config.pretrained))
            self._embedder = PatchEmbedder(net.trunk(self.config.taps), self.config.neighbourhood).eval()
        return self._embedder

    def embed_maps(self, samples: list[Sample], progress: bool = False) -> torch.Tensor:
        """(N, D, h, w) patch features of the samples, extracted in batches."""
        embedder = self._build_embedder()
        bs = int(self.config.batch_size)
        chunks = []
        starts = range(0, len(samples), bs)
        if progress:
            from tqdm import tqdm

            starts = tqdm(starts, desc="features", unit="batch", disable=None)
        run = self._feature_runner(embedder)
        with torch.no_grad():
            for start in starts:
                chunks.append(run(self.load(samples[start:start + bs])))
        return torch.cat(chunks)

    def _feature_runner(self, embedder: PatchEmbedder):
        """A function (N, 3, H, W) float32 array -> (N, D, h, w) tensor of the embedder's features.

        The fit-time pass is most of a fit, so it runs the embedder exported to ONNX Runtime (the
        runtime the daemon uses; threads as the fit's torch budget): measured on 2 AMD EPYC cores,
        8 Lite1 images at 448x176, 25 ms per image vs 53 ms for PyTorch with the batch norms folded
        in channels-last layout (the previous pass), features equal to 3e-5. Where the export or the
        session cannot be built, that PyTorch pass is used (same features; logged)."""
        import io
        import warnings

        h, w = self.input_size
        try:
            import onnxruntime as ort

            from ..backends.onnx import session_options

            buffer = io.BytesIO()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracer warnings about fixed H/W: they are fixed
                torch.onnx.export(embedder, (torch.zeros(1, 3, h, w),), buffer, input_names=["image"],
                                  output_names=["features"], dynamic_axes={"image": {0: "n"}, "features": {0: "n"}},
                                  opset_version=17, do_constant_folding=True, dynamo=False)
            session = ort.InferenceSession(buffer.getvalue(), session_options(max(1, torch.get_num_threads())),
                                           providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - the torch pass gives the same features, only slower
            log.warning("feature_memory: ONNX Runtime feature pass unavailable (%s); using PyTorch", exc)
            # batch norms folded into the convolutions, channels-last: ~1.6x faster than eager on a CPU
            fast = fold_batchnorm(embedder).to(memory_format=torch.channels_last)
            return lambda x: fast(torch.from_numpy(x).contiguous(memory_format=torch.channels_last)).contiguous()
        return lambda x: torch.from_numpy(session.run(None, {"image": np.ascontiguousarray(x, np.float32)})[0])

    def _memory(self, feats: torch.Tensor, owners: torch.Tensor) -> torch.Tensor:
        return feats[self._coreset(feats, owners)].contiguous()

    def _coreset(self, feats: torch.Tensor, owners: torch.Tensor) -> torch.Tensor:
        """Indices of the rows of ``feats`` kept in the memory bank (``owners``: each row's image).

        By ratio (default): ``coreset_ratio`` of the patches (PatchCore's 1 %), at least ``min_memory``.
        By coverage (``coverage_quantile`` > 0): greedy k-center stops once every candidate patch lies
        within that quantile of the distance from a patch to the nearest patch of another training
        image, so the bank grows with the variety of the parts rather than with the image count.
        Measured, native split, whole train split, image / pixel AUROC (bank size), 1 % ratio ->
        quantile 0.99 / 0.95 / 0.90: kolektorsdd 0.959/0.958 (2415) -> 0.956/0.956 (1222) /
        0.960/0.962 (3937) / 0.962/0.963 (6071); magnetic_tile 0.901/0.807 (4782) -> 0.887/0.790
        (2366) / 0.900/0.808 (6227) / 0.903/0.817 (9505). On the demo line (synthetic, noisy
        surfaces, 200 images of 128 px) 0.95 built a bank 6x the ratio's (9299 vs 1568) that matched
        its faintest scratch closely enough to pass it (1 of 40 defects passed vs none). Coverage
        therefore stays an option: equal accuracy at 1.3-1.6x the bank on the real sets, and a
        larger bank costs inference time (the nearest-neighbour search grows with it).
        """
        n = len(feats)
        quantile = float(self.config.coverage_quantile)
        common = {"projection_dim": int(self.config.projection_dim),
                  "max_candidates": int(self.config.max_candidates), "seed": self.seed}
        if quantile > 0:
            return greedy_coreset(feats, min(n, int(self.config.max_memory)), owners=owners,
                                  coverage_quantile=quantile, min_select=min(n, int(self.config.min_memory)),
                                  **common)
        return greedy_coreset(feats, self.memory_size(n), **common)

    def _build_module(self, memory: torch.Tensor) -> FeatureMemoryModule:
        stride = self.config.taps[0]
        return FeatureMemoryModule(self._build_embedder(), memory, self.input_size,
                                   float(self.config.sigma) / stride,
                                   float(self.config.score_fraction),
                                   int(round(self.config.score_border / stride))).eval()

    def leave_one_out_scores(self, maps: torch.Tensor, owners: torch.Tensor,
                             region_owners: torch.Tensor | None = None,
                             cache: dict[int, torch.Tensor] | None = None) -> np.ndarray | None:
        """Raw scores of the training images, each against the bank without the entries taken from it.

        ``owners`` (M,) is the training image each memory entry came from. A new good part meets
        the bank of all N training images; an image scored against the other N - 1 images' entries
        is the closest honest stand-in (k-fold banks lack a fifth of the images, so a look that
        only a few training parts share scores as if nobody had it). The bank's entries were chosen
        with the image present, which leaves a small pessimistic bias (a coreset built without it
        would place one of its entries nearer): measured against an exact rebuild (one coreset per
        held-out image, mpdd_metal_plate's 33 training images) the scores are 1.2 higher on average
        and their tail the same (bench/results/accuracy_native.txt, session 14). One coreset in all:
        cheaper than k folds or N rebuilds. ``region_owners``: the same for the region branch's entries.
        ``cache`` keeps the leave-one-out patch distances of each batch between calls: the scores with the
        region branch attached need the same ones again (the patch search is most of the cost).
        """
        n = len(maps)
        if n < 2:
            return None
        module = self.export_module()
        scores = np.empty(n, np.float64)
        with torch.no_grad():
            for start in range(0, n, 8):
                idx = torch.arange(start, min(n, start + 8))
                patch = None if cache is None else cache.get(start)
                if patch is None:
                    excluded = owners[None, :] == idx[:, None]  # (b, M)
                    patch = module.smooth(module.patch_distances(maps[idx], excluded))
                    if cache is not None:
                        cache[start] = patch
                region_excluded = None if region_owners is None else region_owners[None, :] == idx[:, None]
                scores[start:start + len(idx)] = module.score_features(
                    maps[idx], None, region_excluded, patch=patch)[0].double().numpy()
        return scores

    def _add_region(self, maps: torch.Tensor, owners: torch.Tensor, cache: dict[int, torch.Tensor]) -> int:
        """Fit the region branch (models/region_memory.py) on the training maps and attach it; the
        training images are then re-scored leave-one-out through both branches. Returns its size."""
        module = self.export_module()
        region, region_owners = fit_region_memory(
            maps, float(self.config.region_window), projection_dim=int(self.config.projection_dim),
            max_candidates=int(self.config.max_candidates), seed=self.seed)
        n = len(maps)
        region_scores = np.empty(n, np.float64)
        with torch.no_grad():
            for start in range(0, n, 8):
                idx = torch.arange(start, min(n, start + 8))
                d = region(maps[idx], region_owners[None, :] == idx[:, None])
                region_scores[start:start + len(idx)] = d.flatten(1).max(dim=1).values.double().numpy()
        module.attach_region(region, self.oof_scores, region_scores)
        self.oof_scores = self.leave_one_out_scores(maps, owners, region_owners, cache=cache)
        return region.size

    def out_of_fold_scores(self, maps: torch.Tensor, progress: bool = False) -> np.ndarray | None:
        """Raw scores of the training images, each from a memory bank built without its fold.

        A training image's own patches are in the memory bank, so its score is far below what a
        new good part scores; thresholds set on such scores reject too many good parts. K-fold
        (seeded) gives every training image an honest score at the cost of K more coresets.
        """
        folds = int(self.config.oof_folds)
        n = len(maps)
        if folds < 2 or n < 2 * folds:
            return None
        order = np.random.default_rng(self.seed + 1).permutation(n)
        scores = np.empty(n, np.float64)
        chunks = np.array_split(order, folds)
        if progress:
            from tqdm import tqdm

            chunks = tqdm(chunks, desc="out-of-fold", unit="fold", disable=None)
        d = maps.shape[1]
        for held in chunks:
            keep = np.setdiff1d(np.arange(n), held)
            owners = torch.from_numpy(keep).repeat_interleave(maps.shape[2] * maps.shape[3])
            module = self._build_module(self._memory(maps[keep].permute(0, 2, 3, 1).reshape(-1, d), owners))
            with torch.no_grad():
                for start in range(0, len(held), 8):
                    idx = held[start:start + 8]
                    scores[idx] = module.score_features(maps[idx])[0].double().numpy()
        return scores

    def memory_size(self, n_features: int) -> int:
        wanted = max(int(round(self.config.coreset_ratio * n_features)), int(self.config.min_memory))
        return min(n_features, wanted, int(self.config.max_memory))

    def fit(self, train: list[Sample], val: list[Sample] | None = None, progress: bool = True) -> FitReport:
        if not train:
            raise DetectorError("feature_memory: no training images")
        # The memory bank is "what normal looks like": a defective image in it would make that defect
        # score as normal. A stratified split (auto, plain folders) puts defects in train; skip them.
        normal = [s for s in train if s.label == 0]
        if not normal:
            raise DetectorError(f"feature_memory: the {len(train)} training images are all defective; "
                                "it needs normal (good) images")
        if len(normal) < len(train):
            log.info("feature_memory: fitting on the %d normal of %d training images", len(normal), len(train))
        train = normal
        self._setup_torch()
        t0 = time.perf_counter()
        self._build_embedder().reset()
        maps = self.embed_maps(train, progress=progress)
        if self.config.tap_balance == "equal":
            maps = self._build_embedder().balance_taps(maps)
        kept_variance = 1.0
        if 0 < int(self.config.pca_dims) < maps.shape[1]:
            maps, kept_variance = self._build_embedder().fit_projection(maps, int(self.config.pca_dims),
                                                                        seed=self.seed)
        feats = maps.permute(0, 2, 3, 1).reshape(-1, maps.shape[1])
        t1 = time.perf_counter()
        owners = torch.arange(len(maps)).repeat_interleave(maps.shape[2] * maps.shape[3])
        chosen = self._coreset(feats, owners)
        memory = feats[chosen].contiguous()
        n_mem = len(memory)
        t2 = time.perf_counter()
        self._module = self._build_module(memory)
        mode = self.config.oof if int(self.config.oof_folds) else "off"
        cache: dict[int, torch.Tensor] = {}  # leave-one-out patch distances, reused by the region branch
        if mode == "leave_one_out":
            self.oof_scores = self.leave_one_out_scores(maps, owners[chosen], cache=cache)
            self.oof_method = "out-of-fold (leave-one-out)"
        elif mode == "kfold":
            self.oof_scores = self.out_of_fold_scores(maps, progress=progress)
            self.oof_method = f"out-of-fold ({int(self.config.oof_folds)}-fold)"
        region_size = 0
        if float(self.config.region_window) > 0:
            if self.oof_scores is not None:
                region_size = self._add_region(maps, owners[chosen], cache)
            elif "region_window" in self.config.model_fields_set:
                raise DetectorError(f"feature_memory: option region_window={self.config.region_window} needs "
                                    f"out-of-fold scores of at least 2 training images (got {len(train)} "
                                    f"images, oof={mode}); set region_window=0 or oof=leave_one_out")
            else:
                log.info("feature_memory: no region branch (%d training image(s): no out-of-fold scores to "
                         "scale it)", len(train))
        t3 = time.perf_counter()
        report = FitReport(seconds=time.perf_counter() - t0, n_images=len(train), extra={
            "n_features": int(len(feats)), "feature_dim": int(feats.shape[1]), "memory_size": int(n_mem),
            "region_memory_size": region_size,
            "feature_seconds": t1 - t0, "coreset_seconds": t2 - t1, "oof_seconds": t3 - t2,
            "pca_kept_variance": kept_variance,
        })
        log.info("feature_memory fit: %d images, %d features -> memory %d x %d in %.1f s",
                 len(train), len(feats), n_mem, feats.shape[1], report.seconds)
        return report

    def export_module(self) -> FeatureMemoryModule:
        if self._module is None:
            raise DetectorError("feature_memory: call fit() before exporting or predicting")
        return self._module

    def predict(self, batch: np.ndarray, chunk: int = 8) -> dict[str, np.ndarray]:
        return super().predict(batch, chunk=chunk)

    def card_info(self):  # -> models.base.CardInfo
        from dataclasses import replace

        module = self.export_module()
        extra = {
            "taps": list(self.config.taps), "memory_size": int(module.memory_sq.numel()),
            "feature_dim": int(module.memory_t.shape[0]), "coreset_ratio": self.config.coreset_ratio,
            "neighbourhood": self.config.neighbourhood, "sigma": self.config.sigma,
            "tap_balance": self.config.tap_balance, "pca_dims": self.config.pca_dims,
            "map_stride": self.config.taps[0], "score_fraction": self.config.score_fraction,
            "score_border": self.config.score_border,
            "coverage_quantile": self.config.coverage_quantile, "out_of_fold": self.config.oof,
            "region_window": self.config.region_window,
            "region_memory_size": 0 if module.region is None else module.region.size,
        }
        return replace(super().card_info(), extra=extra)
