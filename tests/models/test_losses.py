"""SSIM and the Gaussian blur, checked against an independent numpy/scipy reference and closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from edge_inspector.models.losses import GaussianBlur, reconstruction_loss, ssim, ssim_loss, ssim_map


def ssim_reference(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    """Wang et al. SSIM the way scikit-image computes it (gaussian_weights, sigma 1.5, truncate 3.5,
    population covariance, borders of (win-1)/2 cropped), for one 2-D image pair in float64."""
    filt = dict(sigma=1.5, truncate=3.5, mode="reflect")
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    ux, uy = gaussian_filter(a, **filt), gaussian_filter(b, **filt)
    vx = gaussian_filter(a * a, **filt) - ux * ux
    vy = gaussian_filter(b * b, **filt) - uy * uy
    vxy = gaussian_filter(a * b, **filt) - ux * uy
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    pad = 5
    return float(s[pad:-pad, pad:-pad].mean())


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a.astype(np.float32))[None, None]


def test_identical_images_give_one():
    x = torch.rand(2, 3, 32, 40, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(ssim(x, x), torch.ones(2), atol=1e-6)
    assert float(ssim_loss(x, x)) == pytest.approx(0.0, abs=1e-6)


def test_constant_images_match_the_closed_form():
    # flat images: variances are 0, so SSIM = (2ab + C1) / (a^2 + b^2 + C1)
    a, b, c1 = 0.2, 0.6, 0.01**2
    x = torch.full((1, 1, 16, 16), a)
    y = torch.full((1, 1, 16, 16), b)
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    assert float(ssim(x, y)) == pytest.approx(expected, rel=1e-4)  # float32 cancellation in E[x^2] - mu^2
    assert expected < 0.9  # the check has teeth: a luminance change alone is penalised


@pytest.mark.parametrize("case", ["noise", "blur", "inverted", "shifted"])
def test_matches_numpy_scipy_reference(case):
    rng = np.random.default_rng(3)
    a = gaussian_filter(rng.random((48, 40)), 1.0)
    b = {
        "noise": np.clip(a + rng.normal(0, 0.05, a.shape), 0, 1),
        "blur": gaussian_filter(a, 2.0),
        "inverted": 1.0 - a,
        "shifted": np.roll(a, 3, axis=1),
    }[case]
    got = float(ssim(_t(a), _t(b)))
    assert got == pytest.approx(ssim_reference(a, b), abs=2e-5)
    assert got < 0.99


def test_inverted_structure_is_negative_and_map_has_valid_shape():
    rng = np.random.default_rng(1)
    a = rng.random((20, 24))
    m = ssim_map(_t(a), _t(1.0 - a))
    assert m.shape == (1, 1, 10, 14)  # valid region of an 11x11 window
    assert float(m.mean()) < 0


def test_data_range_matters():
    rng = np.random.default_rng(2)
    a = rng.random((24, 24)) * 255
    b = np.clip(a + rng.normal(0, 10, a.shape), 0, 255)
    got = float(ssim(_t(a), _t(b), data_range=255.0))
    assert got == pytest.approx(ssim_reference(a, b, data_range=255.0), abs=2e-5)


def test_rejects_mismatched_or_too_small_inputs():
    with pytest.raises(ValueError, match="same shape"):
        ssim(torch.zeros(1, 1, 16, 16), torch.zeros(1, 1, 16, 17))
    with pytest.raises(ValueError, match="window"):
        ssim(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))


def test_reconstruction_loss_is_differentiable_and_adds_ssim():
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    r = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1), requires_grad=True)
    mse_only = reconstruction_loss(x, r, ssim_weight=0.0)
    both = reconstruction_loss(x, r, ssim_weight=0.5)
    both.backward()
    assert r.grad is not None and float(r.grad.abs().sum()) > 0
    assert float(both.detach()) > float(mse_only.detach())
    # images smaller than the 11 px window fall back to the largest odd window that fits
    assert torch.isfinite(reconstruction_loss(x[..., :9, :9], r[..., :9, :9].detach()))


def test_gaussian_blur_keeps_constants_and_mass_at_the_border():
    blur = GaussianBlur(2.0)
    flat = torch.full((1, 1, 12, 12), 3.0)
    assert torch.allclose(blur(flat), flat, atol=1e-5)  # replicate padding: no dark border
    spike = torch.zeros(1, 1, 31, 31)
    spike[0, 0, 15, 15] = 1.0
    out = blur(spike)
    assert out.shape == spike.shape
    assert float(out.sum()) == pytest.approx(1.0, abs=1e-4)
    assert float(out[0, 0, 15, 15]) == pytest.approx(float(out.max()))
    assert float(out[0, 0, 15, 15]) < 0.1  # it really spreads
