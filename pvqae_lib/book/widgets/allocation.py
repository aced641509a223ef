"""The allocation viewer of chapter 7 (Scoring and evaluation): one test image, its budgets and its scores.

``allocation_view`` is the widget's callback as a plain function: it scores one image of a test
``ImageSet`` exactly as the evaluation does (``pvqae_lib.engine.scoring.anomaly_maps``) and returns NumPy
arrays; ``plot_allocation_view`` draws one view, ``plot_allocation_views`` a few views as rows (the
static fallback of the widget). Neither needs a browser, so both are unit-tested
(tests/test_widgets_allocation.py).
"""
from __future__ import annotations

import numbers

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap

from ...config import ScoreConfig
from ...engine.scoring import anomaly_maps, blur_sigma
from ..viz import (
    LEVEL_COLORS,
    LEVEL_NAMES,
    level_legend,
    overlay_levels,
    panel_colorbar,
    show_heat,
    show_image,
    to_numpy_image,
)

PRIORS = ("none", "universal", "per-class")


def check_index(index, num_images: int) -> int:
    """``index`` as an int in [0, num_images); anything else raises a one-line error."""
    if isinstance(index, bool) or not isinstance(index, numbers.Integral):
        raise TypeError(f"index must be an integer, got {type(index).__name__} {index!r}")
    if not 0 <= int(index) < num_images:
        raise IndexError(f"index {index} is out of range: the test set has {num_images} images "
                         f"(valid indices 0..{num_images - 1})")
    return int(index)


def allocation_view(trained, test_set, index: int, prior: str = "universal", cfg=None, device=None) -> dict:
    """Score test image ``index`` of ``test_set`` with ``trained`` (a ``pipeline.Trained``).

    ``prior`` is 'universal', 'per-class' or 'none' (S = S_recon of the routed reconstruction; the
    only choice for the VQ-VAE, which has no prior). ``cfg`` is the ``ScoreConfig`` (default: the
    library's). Returns a dict of NumPy arrays and a few facts about the image:

    ``image`` (H, W, 3) in [0, 1]; ``mask`` (H, W) bool; ``routed`` and ``predicted`` (h, w) level
    indices (0 coarse .. R-1 fine) of the router's budget B and the prior's normal budget B̂_norm;
    ``disagree`` (h, w) bool where they differ; ``s_prior``, ``s_recon`` and ``s`` (H, W), where
    ``s = gaussian_blur(s_prior * s_recon, sigma)`` with ``sigma`` also returned; ``recon`` (H, W, 3);
    ``image_score`` (the maximum of ``s``), ``label``, ``kind``, ``category``, ``index``, ``prior``.
    """
    if prior not in PRIORS:
        raise ValueError(f"prior must be one of {', '.join(PRIORS)}, got {prior!r}")
    index = check_index(index, len(test_set))
    p = None
    if prior != "none":
        p = trained.priors.get(prior)
        if p is None:
            raise ValueError(f"this {trained.model_config.model} model has no {prior} prior; use prior='none'")
    device = device or next(trained.model.parameters()).device
    x = test_set.images[index:index + 1].to(device)
    classes = None
    if p is not None:
        classes = trained.prior_classes(prior, test_set.categories[index:index + 1]).to(device)
    sc = anomaly_maps(trained.model, x, p, classes, cfg)
    H = x.shape[-1]
    sigma = blur_sigma((cfg or ScoreConfig()).smooth_sigma, H)      # the same scaling as anomaly_maps
    routed, predicted = sc.routed[0].cpu().numpy(), sc.predicted[0].cpu().numpy()
    return {
        "index": index,
        "prior": prior,
        "image": to_numpy_image(test_set.images[index]),
        "mask": test_set.masks[index, 0].numpy() > 0.5,
        "label": int(test_set.labels[index]),
        "kind": test_set.kinds[index],
        "category": test_set.category_names[int(test_set.categories[index])],
        "routed": routed,
        "predicted": predicted,
        "disagree": routed != predicted,
        "s_prior": sc.s_prior[0].cpu().numpy(),
        "s_recon": sc.s_recon[0].cpu().numpy(),
        "s": sc.s[0].cpu().numpy(),
        "recon": to_numpy_image(sc.recon[0]),
        "image_score": float(sc.image[0]),
        "sigma": float(sigma),
    }


def _levels(ax, view, key, title):
    img = view["image"]
    H, W = img.shape[:2]
    ax.imshow(img)
    ax.imshow(view[key], cmap=ListedColormap(LEVEL_COLORS), vmin=0, vmax=len(LEVEL_COLORS) - 1, alpha=0.5,
              extent=(0, W, H, 0), interpolation="nearest")
    h, w = view[key].shape
    for k in range(1, w):                               # the coarse patch grid the budget is decided on
        ax.axvline(k * W / w, color="white", lw=0.3, alpha=0.6)
    for k in range(1, h):
        ax.axhline(k * H / h, color="white", lw=0.3, alpha=0.6)
    for i, j in zip(*np.nonzero(view["disagree"])):     # patches where B and B̂_norm differ
        ax.add_patch(plt.Rectangle((j * W / w, i * H / h), W / w, H / h, fill=False, ec="black", lw=1.2))
    ax.set_title(title, fontsize=8.5)
    ax.axis("off")


def _heat(ax, view, key, title, vmax=None):
    ax.imshow(view["image"])
    im = ax.imshow(view[key], cmap="jet", alpha=0.55, vmin=0, vmax=vmax)
    if view["mask"].any():
        ax.contour(view["mask"], levels=[0.5], colors="white", linewidths=0.9)
    ax.set_title(title, fontsize=8.5)
    ax.axis("off")
    panel_colorbar(ax, im)                               # every heat map with its scale
    return im


def _row(axes, view):
    """Six panels: image, routed B, predicted B̂_norm, S_prior (0 .. 4× the uniform share), S_recon and
    S (each from 0 to its own maximum)."""
    ax = axes[0]
    ax.imshow(view["image"])
    if view["mask"].any():
        ax.contour(view["mask"], levels=[0.5], colors="yellow", linewidths=0.9)
    ax.set_title(f"#{view['index']} {view['category']}/{view['kind']}", fontsize=8.5)
    ax.axis("off")
    n = int(view["disagree"].sum())
    _levels(axes[1], view, "routed", "routed budget $B$")
    _levels(axes[2], view, "predicted", r"predicted $\hat{B}_{norm}$" + f" ({n} differ)")
    # S_prior sums to 1 over the h·w patches: its colour scale is fixed at 0 .. 4× the uniform share
    # 1/(h·w), so an image whose budgets all agree with the prior shows a flat, cool map.
    uniform = 1.0 / view["routed"].size
    _heat(axes[3], view, "s_prior", f"$S_{{prior}}$ (max {view['s_prior'].max() / uniform:.2f}× uniform)",
          vmax=4 * uniform)
    _heat(axes[4], view, "s_recon", f"$S_{{recon}}$ (max {view['s_recon'].max():.3f})",
          vmax=max(float(view["s_recon"].max()), 1e-12))
    _heat(axes[5], view, "s", f"$S$ (image score {view['image_score']:.2e})",
          vmax=max(float(view["s"].max()), 1e-12))


def plot_allocation_view(view: dict, fig=None):
    """One view as a 2 × 3 figure: image, routed and predicted budgets (black boxes: they differ),
    then S_prior, S_recon and S over the image (white: the true defect outline)."""
    fig = fig or plt.figure(figsize=(8.4, 5.6))
    axes = fig.subplots(2, 3).ravel()
    _row(axes, view)
    _legend(fig)
    fig.suptitle(f"prior: {view['prior']}, label {'defective' if view['label'] else 'normal'}", fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def plot_allocation_views(views: list[dict]):
    """Several views side by side, one column of six panels per image (the widget's static fallback):
    image, routed B, predicted B̂_norm, S_prior, S_recon and S from top to bottom."""
    fig, axes = plt.subplots(6, len(views), figsize=(2.5 * len(views) + 0.2, 15.2), squeeze=False)
    for column, view in zip(axes.T, views):
        _row(column, view)
    _legend(fig)
    fig.tight_layout(rect=(0, 0.025, 1, 1))
    return fig


def _legend(fig):
    handles = [plt.Rectangle((0, 0), 1, 1, color=c, alpha=0.6) for c in LEVEL_COLORS]
    handles.append(plt.Rectangle((0, 0), 1, 1, fill=False, ec="black", lw=1.2))
    fig.legend(handles, [*LEVEL_NAMES, r"$B \neq \hat{B}_{norm}$"], loc="lower center", ncol=4, frameon=False,
               fontsize=9)


def plot_budget_maps(test_set, indices, routed, predicted: dict):
    """Chapter 6's budget figure: one row per test image ``indices[k]``, its image (defect outlined),
    the routed budget ``routed[k]`` (h, w) and each prior's predicted budget ``predicted[kind][k]``
    (h, w), drawn as outlined level grids (:func:`pvqae_lib.book.viz.overlay_levels`) with one legend;
    a predicted panel's title counts the patches where it differs from the routed budget."""
    fig, axes = plt.subplots(len(indices), 2 + len(predicted), figsize=(1.5 * (2 + len(predicted)),
                                                                      1.45 * len(indices) + 0.5), squeeze=False)
    for row, i in enumerate(indices):
        name = test_set.category_names[int(test_set.categories[i])]
        show_image(axes[row, 0], test_set.images[i], f"{name}/{test_set.kinds[i]}", test_set.masks[i])
        overlay_levels(axes[row, 1], test_set.images[i], routed[row], "routed $B$" if row == 0 else None)
        for col, (kind, levels) in enumerate(predicted.items(), start=2):
            differ = int((np.asarray(levels[row]) != np.asarray(routed[row])).sum())
            head = f"{kind} " + r"$\hat B_{norm}$" + "\n" if row == 0 else ""
            overlay_levels(axes[row, col], test_set.images[i], levels[row], f"{head}{differ} differ")
    for ax in axes.ravel():
        ax.set_xticks([]), ax.set_yticks([])
    level_legend(fig)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def plot_factors(test_set, s_prior_units, s_recon, s, prior_vmax: float = 4.0):
    """Chapter 7's score taken apart: one row per image of ``test_set`` (a small ImageSet), its image
    (defect outlined), ``s_prior_units`` (S_prior in units of the uniform share, on the fixed scale
    0 .. ``prior_vmax``), ``s_recon`` and ``s`` (each from 0 to its image's maximum); every heat map
    has its colorbar, and a label gives the map's maximum."""
    columns = {"$S_{prior}$ / uniform share": (s_prior_units, prior_vmax), "$S_{recon}$": (s_recon, None),
               "$S$ (smoothed)": (s, None)}
    fig, axes = plt.subplots(len(test_set), 4, figsize=(9.4, 2.2 * len(test_set)), squeeze=False)
    for i in range(len(test_set)):
        mask = test_set.masks[i, 0].numpy()
        name = test_set.category_names[int(test_set.categories[i])]
        show_image(axes[i, 0], test_set.images[i], f"{name}/{test_set.kinds[i]}", mask)
        for j, (title, (maps, vmax)) in enumerate(columns.items(), start=1):
            show_heat(axes[i, j], test_set.images[i], maps[i], title if i == 0 else None, mask,
                      vmax=vmax or max(float(maps[i].max()), 1e-12), colorbar=True)
            axes[i, j].text(0.02, 0.03, f"max {maps[i].max():.3g}", transform=axes[i, j].transAxes, color="white",
                            fontsize=7.5, bbox=dict(fc="black", alpha=0.5, lw=0))
    fig.tight_layout()
    return fig


__all__ = ["PRIORS", "allocation_view", "check_index", "plot_allocation_view", "plot_allocation_views",
           "plot_budget_maps", "plot_factors"]
