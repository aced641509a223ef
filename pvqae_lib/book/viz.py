"""Plots the chapters share: image grids, resolution maps, anomaly heat maps, training curves."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import FuncFormatter
from scipy import ndimage

LEVEL_COLORS = ["#3b6fb6", "#e8a90c", "#c2185b"]          # coarse (blue), middle (gold), fine (magenta)
LEVEL_NAMES = ["coarse", "middle", "fine"]


def to_numpy_image(image) -> np.ndarray:
    """(3, H, W) tensor in [0, 1] -> (H, W, 3) array for imshow."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().float().numpy()
    return np.clip(np.transpose(image, (1, 2, 0)), 0, 1)


def show_image(ax, image, title: str | None = None, mask=None, color: str = "yellow", margin: int = 0):
    """An image, with the outline of its defect mask (yellow unless ``color``) when given; with
    ``margin`` > 0 the outline is drawn that many pixels outside the defect, so the defect itself
    stays visible."""
    ax.imshow(to_numpy_image(image), interpolation="nearest")
    if mask is not None and np.asarray(mask).any():
        outline = np.asarray(mask).squeeze() > 0.5
        if margin > 0:
            outline = ndimage.binary_dilation(outline, iterations=margin)
        ax.contour(outline, levels=[0.5], colors=color, linewidths=0.8)
    ax.set_title(title or "", fontsize=9)
    ax.axis("off")


def draw_level_grid(ax, levels, extent, alpha: float = 0.25, linewidth: float = 1.2):
    """Draw a level map (h, w) of ints as an outlined grid over ``extent`` = (0, W, H, 0): every
    coarse patch filled lightly in its level's colour, outlined in it, and cut into the cells its
    level spends (1, 2 x 2 or 4 x 4 codes: the finer the level, the denser the grid), so the levels
    can be told apart by the grid alone, in grey print too."""
    levels = np.asarray(levels).astype(int)
    h, w = levels.shape
    W, H = extent[1], extent[2]
    ph, pw = H / h, W / w
    for i in range(h):
        for j in range(w):
            r = int(levels[i, j])
            colour = LEVEL_COLORS[r % len(LEVEL_COLORS)]
            x0, y0 = j * pw, i * ph
            ax.add_patch(Rectangle((x0, y0), pw, ph, facecolor=colour, alpha=alpha, edgecolor="none"))
            cells = 2 ** r
            for k in range(1, cells):                     # the codes inside the patch
                ax.plot([x0 + k * pw / cells] * 2, [y0, y0 + ph], color=colour, lw=0.5 * linewidth)
                ax.plot([x0, x0 + pw], [y0 + k * ph / cells] * 2, color=colour, lw=0.5 * linewidth)
            ax.add_patch(Rectangle((x0 + 0.5, y0 + 0.5), pw - 1, ph - 1, facecolor="none", edgecolor=colour,
                                   lw=linewidth))
    ax.set_xlim(0, W)
    ax.set_ylim(H, 0)


def overlay_levels(ax, image, levels, title: str | None = None, alpha: float = 0.25):
    """The routed resolution of each coarse patch over the image, as an outlined grid
    (:func:`draw_level_grid`: blue coarse = 1 code, orange middle = 2 x 2, red fine = 4 x 4);
    add the key with :func:`level_legend`."""
    img = to_numpy_image(image)
    H, W = img.shape[:2]
    ax.imshow(img, extent=(0, W, H, 0))
    draw_level_grid(ax, levels, (0, W, H, 0), alpha=alpha)
    ax.set_title(title or "", fontsize=9)
    ax.axis("off")


def show_heat(ax, image, heat, title: str | None = None, mask=None, vmax: float | None = None,
              colorbar: bool = False, vmin: float = 0.0):
    """An anomaly map over the image (hot = anomalous), with the true mask outlined; returns the
    map's image handle, for a colorbar shared by several panels. ``colorbar=True`` draws this
    panel's own colorbar (from ``vmin`` to ``vmax``, the map's maximum when None)."""
    ax.imshow(to_numpy_image(image))
    im = ax.imshow(np.asarray(heat), cmap="jet", alpha=0.5, vmin=vmin, vmax=vmax)
    return _finish_panel(ax, im, mask, "white", 0.8, title, 9, colorbar)


def _finish_panel(ax, im, mask, mask_color: str, line_width: float, title, fontsize: int, colorbar: bool):
    """What every map panel ends with: the defect mask outlined, the title, no axes, its own colorbar
    when asked for; returns the map's image handle."""
    if mask is not None and np.asarray(mask).any():
        ax.contour(np.asarray(mask).squeeze(), levels=[0.5], colors=mask_color, linewidths=line_width)
    ax.set_title(title or "", fontsize=fontsize)
    ax.axis("off")
    if colorbar:
        panel_colorbar(ax, im)
    return im


def panel_colorbar(ax, im):
    """A map panel's own colorbar, beside it, with every tick written out in full (e.g. ``8e-05``):
    matplotlib's default puts a shared factor such as "1e-5" above the bar, where it overprints the
    panel's title."""
    return ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.03, format=FuncFormatter(lambda v, _: f"{v:.3g}"))


def show_patch_map(ax, image, values, title: str | None = None, mask=None, cmap: str = "viridis",
                   vmin: float = 0.0, vmax: float = 1.0, colorbar: bool = False):
    """A map with one value per coarse patch (h, w), e.g. the DWT entropy, drawn on the image's
    pixel grid (blocky, no smoothing) with the defect mask outlined in red; returns the image
    handle (for a shared colorbar), or draws this panel's own colorbar with ``colorbar=True``."""
    H, W = np.asarray(image.shape[-2:])
    im = ax.imshow(np.asarray(values), cmap=cmap, vmin=vmin, vmax=vmax, extent=(0, W, H, 0),
                   interpolation="nearest")
    return _finish_panel(ax, im, mask, "red", 0.9, title, 8, colorbar)


def heat_overlay(image, heat, vmax: float, alpha: float = 0.5) -> np.ndarray:
    """The picture :func:`show_heat` draws, as an (H, W, 3) uint8 array to save as a file: the map
    in 'jet' colours from 0 (blue) to ``vmax`` (red, and anything above it) over the image."""
    colours = plt.get_cmap("jet")(np.clip(np.asarray(heat, dtype=float) / max(vmax, 1e-12), 0, 1))[..., :3]
    picture = (1 - alpha) * to_numpy_image(image) + alpha * colours
    return np.round(picture * 255).astype(np.uint8)


def level_handles(num_levels: int = 3):
    """Legend handles for the levels as :func:`draw_level_grid` draws them (outlined, lightly filled)."""
    return [Patch(facecolor=LEVEL_COLORS[r], alpha=0.6, edgecolor=LEVEL_COLORS[r], lw=1.5,
                  label=f"{LEVEL_NAMES[r]} ({4 ** r} code{'s' if r else ''} per patch)")
            for r in range(num_levels)]


def level_legend(fig, num_levels: int = 3, loc: str = "lower center"):
    """The key of the allocation maps, below the figure: one entry per level."""
    fig.legend(handles=level_handles(num_levels), loc=loc, ncol=num_levels, frameon=False, fontsize=8)


def heatmap_figure(images, masks, maps: dict, titles=None):
    """Rows of images; columns: the image with its mask, then one heat map per entry of ``maps``.

    ``maps`` is {column title: (N, H, W) array}; each column is scaled to its own 99.5th percentile,
    so methods whose scores live on different scales can be compared by their shape, and each column
    has its colorbar below it.
    """
    n, cols = len(images), 1 + len(maps)
    fig, axes = plt.subplots(n, cols, figsize=(2.1 * cols, 2.1 * n + 0.5), squeeze=False, layout="constrained")
    for i in range(n):
        show_image(axes[i, 0], images[i], (titles[i] if titles else None), masks[i])
    for j, (name, m) in enumerate(maps.items(), start=1):
        vmax = float(np.percentile(m, 99.5))
        for i in range(n):
            im = show_heat(axes[i, j], images[i], m[i], name if i == 0 else None, masks[i], vmax)
        fig.colorbar(im, ax=list(axes[:, j]), location="bottom", shrink=0.9, pad=0.02, aspect=12)
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


def level_share_by(values, levels, bins: int = 5, num_levels: int = 3, edges=None):
    """The table behind a routing-against-richness plot: patches binned by ``values`` (e.g. their
    DWT entropy, any shape) into ``bins`` equal-count bins (quantiles, or the given ``edges``), and
    per bin the mean value, the number of patches and the share routed to each level of ``levels``
    (same shape, ints). Returns a pandas DataFrame, one row per bin, with a column
    ``finer than coarse`` (the share above level 0)."""
    values = np.asarray(values, dtype=float).ravel()
    levels = np.asarray(levels).astype(int).ravel()
    if values.shape != levels.shape:
        raise ValueError(f"values and levels must have the same shape, got {values.shape} and {levels.shape}")
    if edges is None:
        edges = np.quantile(values, np.linspace(0, 1, bins + 1))
    which = np.clip(np.searchsorted(edges[1:-1], values, side="right"), 0, len(edges) - 2)
    rows = []
    for b in range(len(edges) - 1):
        sel = which == b
        share = np.bincount(levels[sel], minlength=num_levels)[:num_levels] / max(int(sel.sum()), 1)
        rows.append({"bin": b + 1, "from": edges[b], "to": edges[b + 1],
                     "mean": values[sel].mean() if sel.any() else np.nan, "patches": int(sel.sum()),
                     **{LEVEL_NAMES[r]: share[r] for r in range(num_levels)},
                     "finer than coarse": 1 - share[0]})
    return pd.DataFrame(rows)


def plot_level_share(ax, table, xlabel: str = "DWT entropy H of the patch (bin mean)", label=None, **style):
    """Draw a :func:`level_share_by` table: the share of patches routed finer than the coarse level
    against each bin's mean value."""
    ax.plot(table["mean"], table["finer than coarse"], "o-", label=label, **style)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("share routed finer than coarse")
    ax.set_ylim(0, 1)
    return ax


def share_gap_interval(values, levels, bins: int = 5, num_boot: int = 200, seed: int = 0,
                       confidence: float = 0.95):
    """How much more often the richest bin of ``values`` is routed finer than coarse than the poorest
    (:func:`level_share_by`'s ``finer than coarse``, last bin minus first), with a bootstrap interval
    that resamples the images (the first axis of ``values`` and ``levels``, (N, ...)) and keeps the
    bin edges of the whole set. Returns (gap, low, high)."""
    values, levels = np.asarray(values, dtype=float), np.asarray(levels)
    edges = np.quantile(values, np.linspace(0, 1, bins + 1))

    def gap(rows):
        finer = level_share_by(values[rows], levels[rows], edges=edges)["finer than coarse"]
        return float(finer.iloc[-1] - finer.iloc[0])

    rng = np.random.default_rng(seed)
    n = len(values)
    boot = [gap(rng.integers(0, n, n)) for _ in range(num_boot)]
    low, high = np.percentile(boot, [50 * (1 - confidence), 100 - 50 * (1 - confidence)])
    return gap(np.arange(n)), float(low), float(high)
