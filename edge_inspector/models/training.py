"""Torch training-loop helpers shared by the trainable detectors: seeded batching, augmentation,
early stopping with best-weights restore, and tqdm progress.

Why shared: every detector must be reproducible for a given seed and stop on the same rule, so the
rules live in one place instead of being re-implemented (slightly differently) in each detector.
"""

from __future__ import annotations

import copy
import math
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .base import DetectorError


def make_generator(seed: int) -> torch.Generator:
    """A private torch RNG: shuffling and augmentation then never depend on what else used the global RNG."""
    g = torch.Generator()
    g.manual_seed(int(seed))
    return g


def minibatches(n: int, batch_size: int, generator: torch.Generator | None = None,
                weights: torch.Tensor | None = None) -> Iterator[torch.Tensor]:
    """Index batches over ``n`` items for one epoch.

    Without ``weights``: a seeded permutation (or 0..n-1 when ``generator`` is None). With
    ``weights`` (one per item): ``n`` draws with replacement proportional to them, i.e.
    oversampling of rare classes.
    """
    if n <= 0:
        return
    if batch_size <= 0:
        raise ValueError(f"batch_size must be > 0, got {batch_size}")
    if weights is not None:
        order = torch.multinomial(weights.double(), n, replacement=True, generator=generator)
    elif generator is not None:
        order = torch.randperm(n, generator=generator)
    else:
        order = torch.arange(n)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]


@dataclass
class AugmentConfig:
    """Photometric and small geometric jitter for [0, 1] RGB batches (parts move a little on a line)."""

    hflip: bool = True
    vflip: bool = True
    rotate_deg: float = 10.0
    shift: float = 0.05  # fraction of the image size
    brightness: float = 0.1  # additive, in [0, 1] units
    contrast: float = 0.1  # multiplicative around the image mean


def augment_batch(x: torch.Tensor, generator: torch.Generator, cfg: AugmentConfig | None = None) -> torch.Tensor:
    """Randomly flip, rotate, shift and colour-jitter an (N, 3, H, W) batch in [0, 1]; result stays in [0, 1].

    Geometry uses one affine grid sample (border padding so no black corners appear, which a
    classifier would otherwise learn as a "defect" cue).
    """
    cfg = cfg or AugmentConfig()
    n = x.shape[0]
    if n == 0:
        return x

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=generator)

    sx = torch.ones(n)
    sy = torch.ones(n)
    if cfg.hflip:
        sx = torch.where(torch.rand(n, generator=generator) < 0.5, -sx, sx)
    if cfg.vflip:
        sy = torch.where(torch.rand(n, generator=generator) < 0.5, -sy, sy)
    angle = uniform(-cfg.rotate_deg, cfg.rotate_deg) * (math.pi / 180.0)
    tx = uniform(-cfg.shift, cfg.shift) * 2.0
    ty = uniform(-cfg.shift, cfg.shift) * 2.0
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([
        torch.stack([cos * sx, -sin * sy, tx], dim=1),
        torch.stack([sin * sx, cos * sy, ty], dim=1),
    ], dim=1).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    y = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    contrast = uniform(1.0 - cfg.contrast, 1.0 + cfg.contrast).view(n, 1, 1, 1).to(x.dtype)
    brightness = uniform(-cfg.brightness, cfg.brightness).view(n, 1, 1, 1).to(x.dtype)
    mean = y.mean(dim=(1, 2, 3), keepdim=True)
    return ((y - mean) * contrast + mean + brightness).clamp(0.0, 1.0)


@dataclass
class EarlyStopping:
    """Stop when the monitored value has not improved by ``min_delta`` for ``patience`` epochs, and
    remember the best weights so the model that is exported is the best one, not the last one."""

    patience: int = 3
    mode: str = "min"  # "min" for a loss, "max" for AUROC
    min_delta: float = 1e-4
    best: float | None = None
    best_epoch: int = -1
    bad_epochs: int = 0
    best_state: dict | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.mode not in ("min", "max"):
            raise ValueError(f"EarlyStopping.mode must be 'min' or 'max', got {self.mode!r}")

    def step(self, value: float, epoch: int, module: nn.Module | None = None) -> bool:
        """Record one epoch's value; returns True when training should stop."""
        better = self.best is None or (
            value < self.best - self.min_delta if self.mode == "min" else value > self.best + self.min_delta
        )
        if better:
            self.best, self.best_epoch, self.bad_epochs = float(value), epoch, 0
            if module is not None:
                self.best_state = copy.deepcopy(module.state_dict())
        else:
            self.bad_epochs += 1
        return self.bad_epochs >= self.patience

    def restore(self, module: nn.Module) -> None:
        """Load the best weights seen (no-op when none were recorded)."""
        if self.best_state is not None:
            module.load_state_dict(self.best_state)


def progress(iterable, enabled: bool, desc: str, total: int | None = None):
    """tqdm over ``iterable`` when enabled and stderr is a terminal; the bare iterable otherwise."""
    if not enabled or not sys.stderr.isatty():
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=False, unit="epoch")


def run_epochs(epochs: int, train_epoch: Callable[[int], float], *, validate: Callable[[], float] | None,
               stopper: EarlyStopping, module: nn.Module, show_progress: bool, desc: str) -> dict:
    """Train for up to ``epochs``; after each epoch monitor ``validate()`` (or the train loss when there is
    no validation) with ``stopper``; restore the best weights at the end. Returns a fit report."""
    history: list[dict] = []
    bar = progress(range(epochs), show_progress, desc, total=epochs)
    for epoch in bar:
        train_loss = float(train_epoch(epoch))
        monitored = float(validate()) if validate is not None else train_loss
        history.append({"epoch": epoch, "train_loss": round(train_loss, 6), "monitor": round(monitored, 6)})
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{train_loss:.4f}", monitor=f"{monitored:.4f}")
        if not math.isfinite(train_loss):
            raise DetectorError(f"{desc}: training loss became {train_loss} at epoch {epoch} "
                                     "(lower the learning rate)")
        if stopper.step(monitored, epoch, module):
            break
    stopper.restore(module)
    return {
        "epochs_run": len(history),
        "best_epoch": stopper.best_epoch,
        "best_monitor": stopper.best,
        "final_train_loss": history[-1]["train_loss"] if history else None,
        "history": history,
    }


def binary_auroc(scores, labels) -> float:
    """Rank-based AUROC (ties count half); NaN when only one class is present.

    Kept here (numpy only) so early stopping on a validation AUROC needs no scikit-learn.
    """
    import numpy as np

    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    _, group, counts = np.unique(s[order], return_inverse=True, return_counts=True)
    ends = np.cumsum(counts).astype(np.float64)  # 1-based rank of the last member of each tie group
    ranks = np.empty(len(s), dtype=np.float64)
    ranks[order] = (ends - (counts - 1) / 2.0)[group]  # average rank within the group
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))
