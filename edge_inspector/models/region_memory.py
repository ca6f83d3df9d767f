"""The region branch of the feature-memory detector: a second memory of window-averaged patch features.

Why: a patch memory judges each stride-8 cell by its neighbourhood of a few cells. A defect that is a
change of a whole region's texture or shade (magnetic_tile's 'uneven' tiles, whose lower half turns
coarser) is made of patches that each look normal somewhere on some good part: the patch map lights
only the boundary. Averaging the patch features over a window of about a third of the map's short side
summarises a region's texture; a second, small memory of such windows from the good training images
says whether the region as a whole was ever seen. Multi-scale memories are the usual remedy for
region-wide defects (EfficientAD's global branch, PatchCore's larger neighbourhoods); this one costs a
few per cent of the patch search.

Measured through bench/accuracy.py (native split, whole train split; image / pixel AUROC, false-reject and
escape rates at the calibrated threshold, patch map alone -> with the region branch): magnetic_tile
0.934/0.807 0.026 0.459 -> 0.956/0.838 0.000 0.431, kolektorsdd 0.960/0.958 0.019 0.423 -> 0.964/0.961
0.019 0.308, mpdd_metal_plate 1.000/0.986 0.000 0.235 -> 1.000/0.988 0.000 0.272 (bench/results/
accuracy_native.txt, session 17). Its cost is on defects of a few pixels: for them the region term is
noise added to the patch score (the demo line's scratches: 0 -> 1 of 40 passed), hence the option.

How the two are combined, and why: each map is put on the scale of its own out-of-fold training
scores (minus the mean, over the standard deviation, of the good training images' image scores), and
the two are summed cell by cell into the one map the image score is read from. Measured alternatives
(the same three sets): summing the two image scores instead of reading one map (escape mpdd 0.185,
magnetic_tile image 0.951, but the score then exceeds the heatmap's peak); the cell-wise maximum
(mpdd pixel AUROC 0.978, and an export parity failure on kolektorsdd); only the region's excess over
its mean (a little lower on all three).

The window features are standardised per dimension by the training windows (their scale differs from
the patch features', and the region distance must not be ruled by a few large channels); every window
of every training image is kept unless there are more than ``MAX_REGION_MEMORY``, then a greedy
k-center coreset of that many. The branch's distances are upsampled to the map's size; the detector
adds them to the patch map after putting both on the scale of their own out-of-fold training scores.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .coreset import greedy_coreset
from .nearest import nearest_squared

MAX_REGION_MEMORY = 8192  # windows kept: 8192 x ~500 dims is ~16 MB in the exported graph


def window_cells(window: float, map_hw: tuple[int, int]) -> tuple[int, int]:
    """(window, stride) in feature cells: ``window`` x the map's short side (at least 2 cells), half-overlapping."""
    k = max(2, int(round(window * min(map_hw))))
    k = min(k, *map_hw)
    return k, max(1, k // 2)


class RegionMemory(nn.Module):
    """(N, D, h, w) patch features -> (N, 1, a, b) distance of each window to its nearest good window."""

    def __init__(self, memory: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, kernel: int, stride: int):
        super().__init__()
        self.kernel, self.stride = int(kernel), int(stride)
        self.register_buffer("mean", mean.view(1, -1, 1, 1))
        self.register_buffer("inv_std", (1.0 / std).view(1, -1, 1, 1))
        centre = memory.mean(0)
        centred = memory - centre
        self.register_buffer("centre", centre.view(1, 1, -1))
        self.register_buffer("memory_t", centred.t().contiguous())  # (D, M)
        self.register_buffer("memory_sq", (centred * centred).sum(1))  # (M,)

    @property
    def size(self) -> int:
        return int(self.memory_sq.numel())

    def windows(self, f: torch.Tensor) -> torch.Tensor:
        """(N, D, h, w) -> (N, D, a, b) standardised window averages."""
        pooled = F.avg_pool2d(f, self.kernel, stride=self.stride)
        return (pooled - self.mean) * self.inv_std

    def forward(self, f: torch.Tensor, excluded: torch.Tensor | None = None) -> torch.Tensor:
        """``excluded`` (N, M) bool: entries image n may not match (leave-one-out at fit time only)."""
        w = self.windows(f)
        a, b = w.shape[-2:]
        q = w.flatten(2).transpose(1, 2) - self.centre  # (N, ab, D)
        d2 = nearest_squared(q, self.memory_t, self.memory_sq, excluded)
        return d2.clamp_min(0.0).sqrt().reshape(-1, 1, int(a), int(b))


def fit_region_memory(maps: torch.Tensor, window: float, *, projection_dim: int, max_candidates: int,
                      seed: int) -> tuple[RegionMemory, torch.Tensor]:
    """The branch from the training images' (N, D, h, w) patch features; returns it and the owner
    (training image index) of each memory entry, for leave-one-out scoring."""
    kernel, stride = window_cells(window, tuple(maps.shape[-2:]))
    pooled = F.avg_pool2d(maps, kernel, stride=stride)
    n, d, a, b = pooled.shape
    rows = pooled.permute(0, 2, 3, 1).reshape(-1, d)
    mean, std = rows.mean(0), rows.std(0).clamp_min(1e-6)
    rows = (rows - mean) / std
    owners = torch.arange(n).repeat_interleave(a * b)
    if len(rows) > MAX_REGION_MEMORY:
        keep = greedy_coreset(rows, MAX_REGION_MEMORY, projection_dim=projection_dim,
                              max_candidates=max(max_candidates, MAX_REGION_MEMORY), seed=seed + 11)
        rows, owners = rows[keep], owners[keep]
    return RegionMemory(rows.contiguous(), mean, std, kernel, stride), owners
