"""The λ explorer of Chapter 5: what the terminal budget weight λmax does to one image.

Chapter 5 trains one model per λmax (the Fig. 5 sweep of Cheng, Qu & Lee 2025). ``lambda_view`` is
the widget's callback as a plain function: given those models as ``{λmax: Trained}``, one λmax and
one test image, it returns the router's allocation (one level per coarse patch), the
reconstruction from that allocation, its squared-error map and the share of each level.
``plot_lambda_view`` draws one view, ``plot_lambda_views`` all λmax side by side (the widget's
static fallback). Neither needs a browser; tests/test_widgets_lam.py checks them.
"""
from __future__ import annotations

import time
from dataclasses import replace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from ...engine.pipeline import evaluate
from ...nn.model import recon_score
from ...runs.results import beyond_spread as spread_rule
from .. import book_model
from .. import sweep_profile as book_sweep_profile
from ..viz import LEVEL_NAMES, level_handles, overlay_levels, to_numpy_image


def pick_model(models: dict, lam: float):
    """The model trained with λmax = ``lam`` (compared to 1e-9, so 1.25 finds 1.250000001)."""
    for key, trained in models.items():
        if abs(float(key) - float(lam)) < 1e-9:
            return trained
    known = ", ".join(f"{float(k):g}" for k in sorted(models))
    raise KeyError(f"no model trained with lambda_max={lam:g}; trained: {known}")


@torch.no_grad()
def lambda_view(models: dict, lam: float, image: torch.Tensor) -> dict:
    """Route and reconstruct one image (3, H, W) in [0, 1] with the model trained at λmax = ``lam``.

    Returns a dict: ``lam``; ``levels`` (h, w) int array, the routed level of each coarse patch
    (0 coarse .. R-1 fine, the hard argmax the model uses at evaluation); ``recon`` (3, H, W) float
    array, the reconstruction decoded from those levels (not clipped); ``error`` (H, W), its squared
    error summed over colours, ``pv.scoring.recon_score`` (the paper's S_recon); ``shares`` (R,),
    the share of coarse patches at each level (sums to 1); ``mse`` the mean squared error per value.
    """
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be one (3, H, W) tensor, got shape {tuple(image.shape)}")
    trained = pick_model(models, lam)
    model = trained.model.eval()
    device = next(model.parameters()).device
    x = image[None].float().to(device)                                          # (1, 3, H, W)
    out = model(x)
    levels = out.scores.argmax(1)[0].cpu()                                      # (h, w)
    recon = out.recon.float().cpu()                                             # (1, 3, H, W)
    error = recon_score(recon, x.cpu())[0]                                      # (H, W)
    R = out.scores.shape[1]
    shares = torch.bincount(levels.flatten(), minlength=R).double() / levels.numel()
    return {"lam": float(lam), "levels": levels.numpy(), "recon": recon[0].numpy(), "error": error.numpy(),
            "shares": shares.numpy(), "mse": float((recon - x.cpu()).pow(2).mean())}


def _panels(axes, view: dict, image, error_vmax: float | None, labels: bool = True, alpha: float = 0.6):
    """Three panels of one view: allocation over the image (title: λmax and the shares
    coarse/middle/fine in %), reconstruction, error map."""
    shares = "/".join(f"{100 * s:.0f}" for s in view["shares"])
    overlay_levels(axes[0], image, view["levels"],
                   f"λmax={view['lam']:g}: {shares} %" if labels else f"λmax={view['lam']:g}\n{shares} %", alpha=alpha)
    axes[1].imshow(to_numpy_image(view["recon"]))
    axes[1].set_title(f"reconstruction (MSE {view['mse']:.4f})" if labels else f"MSE {view['mse']:.4f}",
                      fontsize=9)
    axes[1].axis("off")
    im = axes[2].imshow(view["error"], cmap="inferno", vmin=0, vmax=error_vmax)
    axes[2].set_title("squared error" if labels else "", fontsize=9)
    axes[2].axis("off")
    return im


def _legend(fig, y: float = 0.0):
    fig.legend(handles=level_handles(len(LEVEL_NAMES)), loc="lower center", ncol=3, frameon=False, fontsize=9,
               bbox_to_anchor=(0.5, y))


def plot_lambda_view(view: dict, image, error_vmax: float | None = None, fig=None):
    """One view as a 1 × 4 figure: the image, its allocation (title: shares coarse/middle/fine in %),
    the reconstruction and the squared-error map (on ``error_vmax`` if given, so views compare)."""
    fig = fig or plt.figure(figsize=(9.6, 2.9))
    axes = fig.subplots(1, 4)
    axes[0].imshow(to_numpy_image(image))
    axes[0].set_title("test image", fontsize=9)
    axes[0].axis("off")
    im = _panels(axes[1:], view, image, error_vmax)
    fig.colorbar(im, ax=axes[3], fraction=0.046, pad=0.04)
    _legend(fig)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def plot_lambda_views(models: dict, image, mask=None):
    """Every λmax of ``models`` as one column (rows: allocation, reconstruction, error on one shared
    scale), the image itself in the first column: the widget's static fallback."""
    views = [lambda_view(models, lam, image) for lam in sorted(models)]
    vmax = max(float(np.percentile(v["error"], 99.5)) for v in views) or None
    n = len(views)
    fig, axes = plt.subplots(3, n + 1, figsize=(1.9 * (n + 1) + 0.6, 6.3), squeeze=False)
    axes[0, 0].imshow(to_numpy_image(image))
    if mask is not None and np.asarray(mask).any():
        axes[0, 0].contour(np.asarray(mask).squeeze(), levels=[0.5], colors="yellow", linewidths=0.8)
    axes[0, 0].set_title("test image", fontsize=9)
    for ax, text in zip(axes[:, 0], ("routed level", "reconstruction", "squared error")):
        ax.axis("off")
        ax.text(0.5, 0.5 if ax is not axes[0, 0] else -0.12, text, ha="center", va="center", fontsize=9,
                transform=ax.transAxes)
    for col, view in enumerate(views, start=1):
        im = _panels(axes[:, col], view, image, vmax, labels=False)
    fig.colorbar(im, ax=axes[2, :], fraction=0.03, pad=0.02, label="squared error")
    _legend(fig)
    return fig


# --- The chapter's sweeps: one cached model per setting, and what the seeds say about a gap ----------------

SCHEDULES = ("constant", "cosine", "linear")   # Table II, each ending at λmax = 1
LAMBDA_MAXES = (0.5, 1.0, 2.5)                 # Fig. 5, linear schedule
SEEDS = (0, 1, 2)


def sweep_profile(profile):
    """Chapter 5's shortened profile for its sweeps: ``pv.book.sweep_profile`` (fewer epochs), then a
    third of the training and test images, half the batch size (more, smaller steps for the same
    compute) and a sixth of the prior's training steps."""

    sp = book_sweep_profile(profile)
    return replace(sp, num_train=sp.num_train // 3, num_test=sp.num_test // 3,
                   train=replace(sp.train, batch_size=max(1, sp.train.batch_size // 2)),
                   prior=replace(sp.prior, steps=max(1, sp.prior.steps // 6)))


def sweep_settings() -> list[dict]:
    """The overrides of every model Chapter 5 trains through the cache: the three schedules, then
    λmax × seeds with the linear schedule (seed 0 left implicit, so it shares the schedule run)."""
    runs = [{"schedule": s, "lambda_max": 1.0} for s in SCHEDULES]
    runs += [{"schedule": "linear", "lambda_max": lam, **({"seed": seed} if seed else {})}
             for lam in LAMBDA_MAXES for seed in SEEDS]
    unique = []
    for run in runs:
        if run not in unique:
            unique.append(run)
    return unique


def warm_sweeps(profile, progress: bool = False) -> dict:
    """Train (or load) every model of Chapter 5's sweeps into the book's cache, as
    ``pv.book.warm_book_cache`` does for the shared models, so the chapter's own run only loads
    them; returns seconds per model."""

    sp, seconds = sweep_profile(profile), {}
    for run in sweep_settings():
        t0 = time.time()
        book_model(sp, "pvqae", progress=progress, prior_kinds=("universal",), **run)
        seconds[str(run)] = round(time.time() - t0, 1)
    return seconds


def sweep_run(profile, test_set, **overrides) -> tuple:
    """One model of Chapter 5's sweeps: ``pv.book.book_model(profile, "pvqae", **overrides)`` with the
    universal prior only (the only prior the sweeps score with), evaluated on ``test_set``.
    Returns ``(trained, result, row)``; ``row`` is a dict of what the chapter tabulates: the
    overrides, image / pixel AUROC, PRO, the routed shares of the normal test images
    (``coarse`` / ``middle`` / ``fine``), their ``mean level`` (0 coarse .. 2 fine) and
    ``end budget`` (the unweighted budget loss over the last tenth of training)."""
    trained = book_model(profile, "pvqae", progress=False, prior_kinds=("universal",), **overrides)
    result = evaluate(trained, test_set, "universal")
    shares = np.asarray(result["resolution_share"]["normal"], dtype=float)
    budget = np.asarray(trained.history["budget"], dtype=float)
    row = {**overrides, "image AUROC": result["image_auroc"], "pixel AUROC": result["pixel_auroc"],
           "PRO": result["pro"], **dict(zip(LEVEL_NAMES, shares)),
           "mean level": float((shares * np.arange(len(shares))).sum()),
           "end budget": float(budget[-max(1, len(budget) // 10):].mean())}
    return trained, result, row


def seed_spread(rows, by: str, metrics) -> pd.DataFrame:
    """Mean and sample standard deviation over seeds: ``rows`` a DataFrame with a column ``by`` (the
    setting, e.g. ``lambda_max``) and one row per seed; one row per setting, columns
    ``<metric> mean``, ``<metric> std`` and ``seeds``."""
    grouped = pd.DataFrame(rows).groupby(by)
    out = pd.DataFrame({"seeds": grouped.size()})
    for metric in metrics:
        out[f"{metric} mean"] = grouped[metric].mean()
        out[f"{metric} std"] = grouped[metric].std(ddof=1).fillna(0.0)
    return out


def beyond_spread(spread, a, b, metric: str) -> bool:
    """Whether settings ``a`` and ``b`` of :func:`seed_spread` differ in ``metric`` by more than the
    sum of their seed standard deviations: :func:`pvqae_lib.runs.results.beyond_spread` on this table's columns."""
    return spread_rule(spread, a, b, metric, sep=" ")


__all__ = ["LAMBDA_MAXES", "SCHEDULES", "SEEDS", "beyond_spread", "lambda_view", "pick_model", "plot_lambda_view",
           "plot_lambda_views", "seed_spread", "sweep_profile", "sweep_run", "sweep_settings", "warm_sweeps"]
