"""Budget: what a resolution costs where (Sec. III-B.2, Chapters 4 and 5).

A coarse patch's context richness is the normalized entropy of its DWT coefficients; a finer
code costs more, and costs less where the context is rich.
"""
from __future__ import annotations

import math

import torch

NUM_BINS = 64          # histogram bins for the entropy of the detail coefficients
COEFF_RANGE = 0.5      # the bins cover [-COEFF_RANGE, COEFF_RANGE]; larger values go to the end bins


def haar_dwt(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One level of the orthonormal 2-D Haar DWT of (B, 1, H, W) images, as ``pywt.dwt2(x, 'haar')``.

    Returns (cA, cH, cV, cD), each (B, 1, H/2, W/2): the approximation, then the horizontal,
    vertical and diagonal details.
    """
    a, b = images[..., 0::2, 0::2], images[..., 0::2, 1::2]   # top-left, top-right
    c, d = images[..., 1::2, 0::2], images[..., 1::2, 1::2]   # bottom-left, bottom-right
    return (a + b + c + d) / 2, (a + b - c - d) / 2, (a - b + c - d) / 2, (a - b - c + d) / 2


def patch_entropy(images: torch.Tensor, patch: int) -> torch.Tensor:
    """Normalized entropy H in [0, 1] of each patch's DWT detail coefficients: (B, 3, H, W) -> (B, h, w).

    Each patch of the grey image is Haar-transformed; the histogram of its detail coefficients
    (NUM_BINS bins) gives a Shannon entropy, divided by log(NUM_BINS). A flat patch has its details
    near zero (entropy near 0); a textured one spreads them (entropy near 1).
    """
    B, _, H, W = images.shape
    if H % patch or W % patch or patch % 2:
        raise ValueError(f"image size {H}x{W} must be a multiple of an even patch size, got patch={patch}")
    grey = images.float().mean(1, keepdim=True)
    _, ch, cv, cd = haar_dwt(grey)
    half = patch // 2
    details = torch.cat([ch, cv, cd], dim=1)                                    # (B, 3, H/2, W/2)
    h, w = H // patch, W // patch
    details = details.view(B, 3, h, half, w, half).permute(0, 2, 4, 1, 3, 5).reshape(B * h * w, -1)
    bins = ((details / COEFF_RANGE + 1) / 2 * NUM_BINS).long().clamp(0, NUM_BINS - 1)
    counts = torch.zeros(B * h * w, NUM_BINS, device=images.device).scatter_add_(1, bins, torch.ones_like(details))
    p = counts / counts.sum(1, keepdim=True)
    entropy = -(p * torch.log(p.clamp(min=1e-12))).sum(1) / math.log(NUM_BINS)
    return entropy.view(B, h, w)


def level_costs(num_levels: int) -> torch.Tensor:
    """c^r with c = 2^(R-1), divided by the finest cost so the finest level costs 1.

    For R = 3: c = 4 and the costs are (1, 4, 16) / 16 = (1/16, 1/4, 1), which is also the share
    of codes each level spends per coarse patch.
    """
    c = 2.0 ** (num_levels - 1)
    return c ** torch.arange(num_levels, dtype=torch.float) / c ** (num_levels - 1)


def budget_loss(scores: torch.Tensor, entropy: torch.Tensor, patch: int, eps: float = 0.05,
                values_per_patch: int | None = None) -> torch.Tensor:
    """The paper's L_Budget = Σ_ij c^r / H̃(I^ij), H̃ = H / Σ_ij H, in per-pixel-value units.

    scores (B, R, h, w) are the routing scores b; entropy (B, h, w) the normalized DWT entropy;
    ``patch`` the side of a coarse patch in pixels. Two choices of scale, both constant factors:
    H̃ is taken relative to the image's mean entropy (N·H̃ in the paper's terms, mean 1), and the
    sum over patches is divided by the number of pixel values 3·H·W, as the reconstruction term
    is a mean squared error. So λ neither depends on the number of patches nor swamps the
    reconstruction. ``eps`` keeps the cost of a perfectly flat patch finite.
    ``values_per_patch`` replaces 3·patch² where the reconstruction is not of pixels (the feature
    model counts one value per position of its finest grid: chapter 8b).
    """
    R = scores.shape[1]
    costs = level_costs(R).to(scores.device).view(1, R, 1, 1)
    richness = entropy / entropy.mean(dim=(1, 2), keepdim=True).clamp(min=1e-6)   # N·H̃, mean 1
    per_patch = (scores * costs).sum(1) / (richness + eps)                        # (B, h, w)
    return per_patch.mean() / (3 * patch * patch if values_per_patch is None else values_per_patch)


def lambda_at(progress: float, lambda_max: float, schedule: str) -> float:
    """λ at a point of training (progress in [0, 1]): constant, cosine or linear from 0 to λmax (Table II)."""
    p = min(max(progress, 0.0), 1.0)
    if schedule == "constant":
        return lambda_max
    if schedule == "linear":
        return lambda_max * p
    if schedule == "cosine":
        return lambda_max * (1 - math.cos(math.pi * p)) / 2
    raise ValueError(f"schedule must be constant, cosine or linear, got {schedule!r}")
