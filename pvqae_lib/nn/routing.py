"""The Dynamic Routing Module (Sec. III-B.1, Fig. 3): one resolution per coarse patch (Chapter 3).

Levels are indexed r = 0 (coarsest, one code per coarse patch) .. R-1 (finest).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def gumbel_softmax_sample(logits: torch.Tensor, tau: float, hard: bool = True, dim: int = -1) -> torch.Tensor:
    """The paper's score b_r = softmax((g_r + δ_r) / τ), δ ~ Gumbel(0, 1) (Jang et al. 2017).

    With ``hard`` the forward value is the one-hot argmax and the gradient is that of the soft
    score (straight-through), so the decoder always sees exactly one resolution per patch.
    """
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    u = torch.rand_like(logits).clamp_(1e-10, 1 - 1e-10)
    soft = F.softmax((logits - torch.log(-torch.log(u))) / tau, dim=dim)
    if not hard:
        return soft
    one_hot = F.one_hot(soft.argmax(dim), soft.shape[dim]).movedim(-1, dim).to(soft.dtype)
    return soft + (one_hot - soft).detach()


def routed_share(scores: torch.Tensor, level: int, size) -> torch.Tensor:
    """Which positions of level ``level``'s grid (``size``) were routed to it, (B, h_r, w_r) in
    [0, 1]: the coarse-patch scores b_r repeated (nearest) onto that grid, detached. Only these
    positions count as the level's codebook usage (dead-code restarts)."""
    return F.interpolate(scores[:, level:level + 1].detach(), size=size)[:, 0]


class DynamicRouter(nn.Module):
    """Average-pool every level to the coarsest grid, concatenate, and score the levels with an MLP.

    The MLP has one hidden layer (the paper's choice "to reduce computation"), written as 1x1
    convolutions so it acts on every coarse patch at once. Returns logits (B, R, h, w).
    """

    def __init__(self, level_channels: list[int], hidden: int):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Conv2d(sum(level_channels), hidden, 1), nn.GELU(), nn.Conv2d(hidden, len(level_channels), 1))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """features: one map per level, coarsest first; the coarsest sets the grid."""
        h, w = features[0].shape[-2:]
        pooled = [f if f.shape[-2:] == (h, w) else F.adaptive_avg_pool2d(f, (h, w)) for f in features]
        return self.mlp(torch.cat(pooled, dim=1))

    @staticmethod
    def route(logits: torch.Tensor, tau: float, training: bool) -> torch.Tensor:
        """Scores b (B, R, h, w): Gumbel-Softmax samples while training, the hard argmax at evaluation."""
        if training:
            return gumbel_softmax_sample(logits, tau, hard=True, dim=1)
        return F.one_hot(logits.argmax(1), logits.shape[1]).permute(0, 3, 1, 2).to(logits.dtype)
