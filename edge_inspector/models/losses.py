"""SSIM in plain torch (and the fixed Gaussian blur it shares with the anomaly-map smoothing).

Why our own: no torchmetrics/kornia/skimage here, and the autoencoder's loss must be
differentiable in torch. The definition follows Wang et al. (2004) exactly as scikit-image's
``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)`` computes
it: an 11x11 Gaussian window (sigma 1.5), C1 = (0.01 L)^2, C2 = (0.03 L)^2, and the mean taken over
the "valid" region only (no padded borders), so values can be checked against a numpy/scipy
reference to float precision.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

K1 = 0.01
K2 = 0.03


def gaussian_kernel1d(sigma: float, radius: int | None = None) -> torch.Tensor:
    """Normalised 1-D Gaussian taps; ``radius`` defaults to scipy's ``int(4 * sigma + 0.5)``."""
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    if radius is None:
        radius = int(4.0 * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _separable_filter(x: torch.Tensor, k1d: torch.Tensor) -> torch.Tensor:
    """Depthwise 'valid' convolution of an (N, C, H, W) tensor with the outer product of ``k1d``."""
    c = x.shape[1]
    k = k1d.to(dtype=x.dtype, device=x.device)
    kh = k.view(1, 1, -1, 1).expand(c, 1, -1, 1)
    kw = k.view(1, 1, 1, -1).expand(c, 1, 1, -1)
    return F.conv2d(F.conv2d(x, kh, groups=c), kw, groups=c)


def ssim_map(x: torch.Tensor, y: torch.Tensor, *, data_range: float = 1.0, window: int = 11,
             sigma: float = 1.5) -> torch.Tensor:
    """Per-pixel SSIM of two (N, C, H, W) batches over the valid region: (N, C, H-window+1, W-window+1).

    Raises ValueError when the shapes differ or the images are smaller than the window (a silent
    fallback would hand the trainer a loss that means something else).
    """
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"ssim: expected two (N, C, H, W) tensors of the same shape, got {tuple(x.shape)} "
                         f"and {tuple(y.shape)}")
    if window % 2 != 1 or x.shape[-1] < window or x.shape[-2] < window:
        raise ValueError(f"ssim: window {window} must be odd and fit in the {x.shape[-2]}x{x.shape[-1]} images")
    k = gaussian_kernel1d(sigma, radius=window // 2)
    c1 = (K1 * data_range) ** 2
    c2 = (K2 * data_range) ** 2
    mu_x = _separable_filter(x, k)
    mu_y = _separable_filter(y, k)
    xx = _separable_filter(x * x, k) - mu_x * mu_x
    yy = _separable_filter(y * y, k) - mu_y * mu_y
    xy = _separable_filter(x * y, k) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * xy + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (xx + yy + c2)
    return num / den


def ssim(x: torch.Tensor, y: torch.Tensor, *, data_range: float = 1.0, window: int = 11,
         sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM per image, shape (N,): 1 for identical images, lower the more structure differs."""
    return ssim_map(x, y, data_range=data_range, window=window, sigma=sigma).mean(dim=(1, 2, 3))


def ssim_loss(x: torch.Tensor, y: torch.Tensor, *, data_range: float = 1.0, window: int = 11) -> torch.Tensor:
    """1 - mean SSIM over the batch (a scalar to minimise)."""
    return 1.0 - ssim(x, y, data_range=data_range, window=window).mean()


def reconstruction_loss(x: torch.Tensor, recon: torch.Tensor, *, ssim_weight: float = 0.5,
                        window: int = 11) -> torch.Tensor:
    """MSE + ``ssim_weight`` * (1 - SSIM) for images in [0, 1]: MSE keeps colours right, SSIM keeps edges sharp
    (MSE alone gives blurry reconstructions whose error lights up every edge of a normal part)."""
    loss = F.mse_loss(recon, x)
    if ssim_weight > 0:
        window = min(window, _largest_odd(min(x.shape[-2:])))
        loss = loss + ssim_weight * ssim_loss(x, recon, window=window)
    return loss


def _largest_odd(n: int) -> int:
    return n if n % 2 == 1 else n - 1


class GaussianBlur(torch.nn.Module):
    """Fixed Gaussian smoothing of (N, 1, H, W) maps with edge padding, exportable to ONNX as two convs.

    Why edge ("replicate") padding: zero padding would darken the border of an anomaly map and hide
    defects at the edge of the image.
    """

    def __init__(self, sigma: float):
        super().__init__()
        self.sigma = float(sigma)
        radius = max(1, int(math.ceil(3.0 * sigma)))
        k = gaussian_kernel1d(max(sigma, 1e-3), radius=radius)
        self.radius = radius
        self.register_buffer("kh", k.view(1, 1, -1, 1).clone(), persistent=False)
        self.register_buffer("kw", k.view(1, 1, 1, -1).clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.radius
        x = F.pad(x, (r, r, r, r), mode="replicate")
        return F.conv2d(F.conv2d(x, self.kh), self.kw)
