"""The structural similarity index (SSIM, Wang et al. 2004) and LFQUIAD's reconstruction loss.

LFQUIAD (Lin & Lai, Sec. 3.2, Eq. 2) trains its reconstructive subnetwork on

    L_rec = α₁·L_mse(I_r, I) + β₁·L_ssim(I_r, I),   α₁ + β₁ = 1,

with L_ssim the structural dissimilarity 1 − SSIM (as in DRÆM, whose loss it follows). The paper
does not give β₁; ``TrainConfig.ssim_weight`` = 0.5 weighs both terms equally, as DRÆM's L2 + SSIM.

SSIM here is the usual one: an 11×11 Gaussian window with σ = 1.5, C₁ = (0.01·L)², C₂ = (0.03·L)²
for data range L, computed per colour channel at every position where the window fits inside the
image ("valid", no padding) and averaged. That is what ``skimage.metrics.structural_similarity(...,
gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=L, channel_axis=...)``
returns, which crops the padded border before averaging. It is differentiable, so it serves as a loss.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def gaussian_window(size: int = 11, sigma: float = 1.5, dtype=torch.float32, device=None) -> torch.Tensor:
    """A normalised 2-D Gaussian window (size, size)."""
    x = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim_map(x: torch.Tensor, y: torch.Tensor, window_size: int = 11, sigma: float = 1.5,
             data_range: float = 1.0, k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """SSIM at every valid window position of every channel: (B, C, H, W) -> (B, C, H-w+1, W-w+1).

    SSIM = (2μₓμᵧ + C₁)(2σₓᵧ + C₂) / ((μₓ² + μᵧ² + C₁)(σₓ² + σᵧ² + C₂)), the means, variances and
    covariance weighted by the Gaussian window.
    """
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"ssim needs two (B, C, H, W) tensors of one shape, got {tuple(x.shape)}, {tuple(y.shape)}")
    if min(x.shape[-2:]) < window_size:
        raise ValueError(f"images of {tuple(x.shape[-2:])} px are smaller than the {window_size} px SSIM window")
    dtype = torch.promote_types(x.dtype, torch.float32)            # float32, or float64 if given
    x, y = x.to(dtype), y.to(dtype)
    C = x.shape[1]
    w = gaussian_window(window_size, sigma, x.dtype, x.device).expand(C, 1, window_size, window_size)

    def blur(t):
        return F.conv2d(t, w, groups=C)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x ** 2
    var_y = blur(y * y) - mu_y ** 2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))


def ssim(x: torch.Tensor, y: torch.Tensor, **kwargs) -> torch.Tensor:
    """The mean SSIM of each image pair, (B,): 1 for identical images. ``kwargs`` go to :func:`ssim_map`."""
    return ssim_map(x, y, **kwargs).flatten(1).mean(1)


def reconstruction_loss(recon: torch.Tensor, target: torch.Tensor, ssim_weight: float) -> torch.Tensor:
    """LFQUIAD Eq. 2: L_rec = α₁·MSE(I_r, I) + β₁·(1 − SSIM(I_r, I)), β₁ = ``ssim_weight``, α₁ = 1 − β₁
    (a batch mean). ``ssim_weight`` = 0 is the plain mean squared error."""
    mse = F.mse_loss(recon.float(), target.float())
    if ssim_weight == 0:
        return mse
    return (1 - ssim_weight) * mse + ssim_weight * (1 - ssim(recon, target).mean())


__all__ = ["gaussian_window", "ssim_map", "ssim", "reconstruction_loss"]
