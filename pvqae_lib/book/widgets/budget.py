"""The budget explorer of Chapter 4: what a resolution map costs on a given image.

``budget_explorer`` takes one image and a level map (one resolution per coarse patch) and returns
the DWT context richness of every patch, the cost every patch adds to the paper's L_Budget and the
total, computed with the library's :func:`pvqae_lib.nn.budget.patch_entropy`, ``level_costs`` and
``budget_loss``; ``level_presets`` offers a few level maps to compare, and ``plot_budget`` draws one
result.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from ...nn.budget import budget_loss, level_costs, patch_entropy
from ..viz import LEVEL_NAMES, draw_level_grid, level_handles, to_numpy_image


def level_presets(entropy, num_levels: int = 3) -> dict:
    """Named level maps (h, w) of ints for an entropy map (h, w): every patch at one level, and
    "by entropy", which sends the poorest third of the patches to the coarsest level and the
    richest third to the finest (terciles of this image's entropy)."""
    h = np.asarray(entropy, dtype=float)
    presets = {f"all {LEVEL_NAMES[r] if num_levels == 3 else r}": np.full(h.shape, r, dtype=int)
               for r in range(num_levels)}
    edges = np.quantile(h, np.linspace(0, 1, num_levels + 1)[1:-1])
    presets["by entropy"] = np.searchsorted(edges, h, side="right").astype(int)
    return presets


def budget_explorer(image, levels, patch: int, num_levels: int = 3, eps: float = 0.05) -> dict:
    """Cost of routing ``image`` (3, H, W) with the level map ``levels`` (h, w) of ints in
    [0, num_levels); ``patch`` is the side of a coarse patch in pixels.

    Returns a dict of numpy arrays and floats:

    - ``entropy`` (h, w): normalized DWT entropy H of each coarse patch, in [0, 1];
    - ``richness`` (h, w): H relative to the image's mean entropy (N·H̃, mean 1);
    - ``cost_map`` (h, w): each patch's share of L_Budget, c^r / (N·H̃ + eps) in the library's units;
    - ``total``: ``cost_map.sum()``, equal to ``budget_loss`` of the one-hot scores of ``levels``;
    - ``level_share`` (num_levels,): the share of patches at each level;
    - ``codes``: how many codes the map spends, relative to routing every patch to the finest level.
    """
    if not isinstance(eps, (int, float)) or not 0 < eps <= 10:
        raise ValueError(f"eps must be a number in (0, 10] (it keeps a flat patch's cost finite), got {eps!r}")
    x = torch.as_tensor(image, dtype=torch.float32)[None]                         # (1, 3, H, W)
    entropy = patch_entropy(x, patch)                                               # (1, h, w)
    levels_t = torch.as_tensor(np.asarray(levels), dtype=torch.long)
    if levels_t.shape != entropy.shape[1:]:
        raise ValueError(f"levels must be {tuple(entropy.shape[1:])} (one level per coarse patch), "
                         f"got {tuple(levels_t.shape)}")
    R = num_levels
    if levels_t.min() < 0 or levels_t.max() >= R:
        raise ValueError(f"levels must lie in [0, {R - 1}], got {int(levels_t.min())}..{int(levels_t.max())}")
    scores = F.one_hot(levels_t, R).permute(2, 0, 1)[None].float()                 # (1, R, h, w)
    total = budget_loss(scores, entropy, patch, eps)
    richness = entropy / entropy.mean().clamp(min=1e-6)
    costs = level_costs(R)
    per_patch = costs[levels_t] / (richness[0] + eps)                               # as inside budget_loss
    cost_map = per_patch / (levels_t.numel() * 3 * patch * patch)                   # sums to the loss
    return {"entropy": entropy[0].numpy(), "richness": richness[0].numpy(), "cost_map": cost_map.numpy(),
            "total": float(total), "level_share": np.bincount(levels_t.flatten().numpy(), minlength=R)
            / levels_t.numel(), "codes": float(costs[levels_t].mean())}


def plot_budget(image, levels, result: dict, title: str | None = None, axes=None, cost_vmax: float | None = None):
    """Draw one ``budget_explorer`` result: the image, its entropy map, the level map, the cost map.

    ``cost_vmax`` fixes the colour scale of the cost map (to compare several results). Returns the figure.
    """
    if axes is None:
        fig, axes = plt.subplots(1, 4, figsize=(9.6, 2.9))
    fig = axes[0].figure
    img = to_numpy_image(torch.as_tensor(image))
    H, W = img.shape[:2]
    extent = (0, W, H, 0)
    axes[0].imshow(img)
    axes[0].set_title(title or "image", fontsize=9)
    im = axes[1].imshow(result["entropy"], cmap="viridis", vmin=0, vmax=1, extent=extent, interpolation="nearest")
    axes[1].set_title("DWT entropy H", fontsize=9)
    fig.colorbar(im, ax=axes[1], fraction=0.046, pad=0.03)
    axes[2].imshow(img, extent=extent)
    draw_level_grid(axes[2], levels, extent)
    share = "/".join(f"{s:.0%}" for s in result["level_share"][:3])
    axes[2].set_title(f"levels (c/m/f {share})", fontsize=9)
    im = axes[3].imshow(result["cost_map"] * 1e3, cmap="magma", vmin=0,
                        vmax=None if cost_vmax is None else cost_vmax * 1e3, extent=extent, interpolation="nearest")
    axes[3].set_title(f"cost (×10⁻³), total {result['total'] * 1e3:.3f}", fontsize=9)
    fig.colorbar(im, ax=axes[3], fraction=0.046, pad=0.03)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[2].legend(handles=level_handles(len(result["level_share"])), loc="upper center",
                   bbox_to_anchor=(0.5, -0.02), fontsize=7, frameon=False)
    return fig
