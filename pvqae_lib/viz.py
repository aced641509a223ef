"""Plots the chapters share: image grids, resolution maps, anomaly heat maps, training curves."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.colors import ListedColormap

LEVEL_COLORS = ["#4c72b0", "#dd8452", "#c44e52"]          # coarse, middle, fine
LEVEL_NAMES = ["coarse", "middle", "fine"]


def to_numpy_image(image) -> np.ndarray:
    """(3, H, W) tensor in [0, 1] -> (H, W, 3) array for imshow."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().float().numpy()
    return np.clip(np.transpose(image, (1, 2, 0)), 0, 1)


def show_image(ax, image, title: str | None = None, mask=None):
    """An image, with the outline of its defect mask in yellow when given."""
    ax.imshow(to_numpy_image(image))
    if mask is not None and np.asarray(mask).any():
        ax.contour(np.asarray(mask).squeeze(), levels=[0.5], colors="yellow", linewidths=0.8)
    ax.set_title(title or "", fontsize=9)
    ax.axis("off")


def overlay_levels(ax, image, levels, title: str | None = None, alpha: float = 0.45):
    """The routed resolution of each coarse patch over the image (blue coarse, orange middle, red fine)."""
    img = to_numpy_image(image)
    H, W = img.shape[:2]
    ax.imshow(img)
    ax.imshow(np.asarray(levels), cmap=ListedColormap(LEVEL_COLORS), vmin=0, vmax=2, alpha=alpha,
              extent=(0, W, H, 0), interpolation="nearest")
    ax.set_title(title or "", fontsize=9)
    ax.axis("off")


def show_heat(ax, image, heat, title: str | None = None, mask=None, vmax: float | None = None):
    """An anomaly map over the image (hot = anomalous), with the true mask outlined."""
    ax.imshow(to_numpy_image(image))
    ax.imshow(np.asarray(heat), cmap="jet", alpha=0.5, vmin=0, vmax=vmax)
    if mask is not None and np.asarray(mask).any():
        ax.contour(np.asarray(mask).squeeze(), levels=[0.5], colors="white", linewidths=0.8)
    ax.set_title(title or "", fontsize=9)
    ax.axis("off")


def heat_overlay(image, heat, vmax: float, alpha: float = 0.5) -> np.ndarray:
    """The picture :func:`show_heat` draws, as an (H, W, 3) uint8 array to save as a file: the map
    in 'jet' colours from 0 (blue) to ``vmax`` (red, and anything above it) over the image."""
    colours = plt.get_cmap("jet")(np.clip(np.asarray(heat, dtype=float) / max(vmax, 1e-12), 0, 1))[..., :3]
    picture = (1 - alpha) * to_numpy_image(image) + alpha * colours
    return np.round(picture * 255).astype(np.uint8)


def level_legend(fig):
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in LEVEL_COLORS]
    fig.legend(handles, LEVEL_NAMES, loc="lower center", ncol=3, frameon=False)


def heatmap_figure(images, masks, maps: dict, titles=None):
    """Rows of images; columns: the image with its mask, then one heat map per entry of ``maps``.

    ``maps`` is {column title: (N, H, W) array}; each column is scaled to its own 99.5th percentile,
    so methods whose scores live on different scales can be compared by their shape.
    """
    n, cols = len(images), 1 + len(maps)
    fig, axes = plt.subplots(n, cols, figsize=(2.1 * cols, 2.1 * n), squeeze=False)
    for i in range(n):
        show_image(axes[i, 0], images[i], (titles[i] if titles else None), masks[i])
        for j, (name, m) in enumerate(maps.items(), start=1):
            vmax = float(np.percentile(m, 99.5))
            show_heat(axes[i, j], images[i], m[i], name if i == 0 else None, masks[i], vmax)
    fig.tight_layout()
    return fig


def plot_history(history: dict, keys=("rec", "budget", "lambda"), ax=None, smooth: int = 10):
    """Training curves from a history dict, smoothed by a running mean."""
    ax = ax or plt.gca()
    for k in keys:
        if k in history and len(history[k]):
            v = np.asarray(history[k], dtype=float)
            if smooth > 1 and len(v) > smooth:
                v = np.convolve(v, np.ones(smooth) / smooth, mode="valid")
            ax.plot(v, label=k)
    ax.set_xlabel("step")
    ax.legend()
    return ax


def plot_shares(history: dict, num_levels: int = 3, ax=None, smooth: int = 10):
    """Share of coarse patches routed to each level over training."""
    ax = ax or plt.gca()
    for r in range(num_levels):
        v = np.asarray(history.get(f"share_{r}", []), dtype=float)
        if smooth > 1 and len(v) > smooth:
            v = np.convolve(v, np.ones(smooth) / smooth, mode="valid")
        ax.plot(v, color=LEVEL_COLORS[r], label=LEVEL_NAMES[r])
    ax.set_xlabel("step")
    ax.set_ylabel("share of patches")
    ax.set_ylim(0, 1)
    ax.legend()
    return ax


def allocation_and_maps(images, routed, maps: dict):
    """Rows of images: the routed level of every coarse patch over the image (defect outlined),
    then one anomaly map per entry of ``maps`` ({title: (N, H, W)}), each column with its own
    colour scale and a colorbar. ``images`` is an ImageSet."""
    n, cols = len(images), 1 + len(maps)
    fig, axes = plt.subplots(n, cols, figsize=(2.4 * cols + 0.6, 2.2 * n), squeeze=False)
    masks = images.masks[:, 0].numpy()
    for i in range(n):
        overlay_levels(axes[i, 0], images.images[i], routed[i], title=images.kinds[i])
        if masks[i].any():
            axes[i, 0].contour(masks[i], levels=[0.5], colors="white", linewidths=0.8)
        for j, (name, m) in enumerate(maps.items(), start=1):
            ax = axes[i, j]
            ax.imshow(to_numpy_image(images.images[i]))
            im = ax.imshow(np.asarray(m[i]), cmap="jet", alpha=0.5, vmin=float(np.percentile(m, 1)),
                           vmax=float(np.max(m)))      # one scale per column, from its 1st percentile up
            if masks[i].any():
                ax.contour(masks[i], levels=[0.5], colors="white", linewidths=0.8)
            ax.set_title(name if i == 0 else None)
            ax.axis("off")
            fig.colorbar(im, ax=ax, fraction=0.046)
    level_legend(fig)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig
