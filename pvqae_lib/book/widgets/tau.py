"""The τ explorer of Chapter 3: what the Gumbel-Softmax temperature does to the routing scores.

``tau_explorer`` draws many Gumbel-Softmax samples b = softmax((g + δ) / τ) of one patch's
logits g with the library's :func:`pvqae_lib.nn.routing.gumbel_softmax_sample` and summarizes them;
``plot_tau`` draws the summary. The point the plots make: the *hard* choice argmax(g + δ) does
not depend on τ at all (its frequencies are softmax(g) for every τ, the Gumbel-max trick); τ
only shapes the *soft* scores, i.e. the relaxation whose gradient the router learns from.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from ...nn.routing import gumbel_softmax_sample
from ..viz import LEVEL_COLORS, LEVEL_NAMES

TAU_RANGE = (1e-3, 1e3)      # the temperatures the explorer takes: beyond them float64 saturates


def tau_explorer(logits, tau: float, num_samples: int = 2000, seed: int = 0) -> dict:
    """Summarize ``num_samples`` Gumbel-Softmax samples of ``logits`` (..., R) at temperature ``tau``.

    Returns a dict of numpy arrays (``...`` is the leading shape of ``logits``, e.g. () for one
    patch or (h, w) for a map):

    - ``probs`` (..., R): softmax(g), the distribution the hard samples follow;
    - ``samples`` (num_samples, ..., R): the soft scores b, each summing to 1;
    - ``hard_allocation`` (num_samples, ...): argmax of each sample, the level the forward pass uses;
    - ``frequencies`` (..., R): the share of samples whose hard choice is each level;
    - ``soft_mean`` (..., R): the mean soft score;
    - ``peak`` (...): the mean of each sample's largest score (1 = one-hot, 1/R = uniform).

    Seeded and side-effect free: the global torch RNG is restored afterwards.
    """
    if not isinstance(tau, (int, float)) or not TAU_RANGE[0] <= tau <= TAU_RANGE[1]:
        raise ValueError(f"tau must be a number in [{TAU_RANGE[0]:g}, {TAU_RANGE[1]:g}] (outside it the samples "
                         f"are all one-hot or all uniform in float64), got {tau!r}")
    g = torch.as_tensor(np.asarray(logits, dtype=np.float64))
    if not torch.isfinite(g).all():
        raise ValueError("logits must be finite numbers")
    R = g.shape[-1]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        samples = gumbel_softmax_sample(g.expand(num_samples, *g.shape), tau, hard=False)   # (N, ..., R)
    hard = samples.argmax(-1)                                                                # (N, ...)
    frequencies = torch.nn.functional.one_hot(hard, R).double().mean(0)
    return {"probs": torch.softmax(g, -1).numpy(), "samples": samples.numpy(), "hard_allocation": hard.numpy(),
            "frequencies": frequencies.numpy(), "soft_mean": samples.mean(0).numpy(),
            "peak": samples.max(-1).values.mean(0).numpy()}


def simplex_xy(points: np.ndarray) -> np.ndarray:
    """Barycentric points (N, 3) on the probability triangle -> (N, 2) plane coordinates,
    with the corners coarse (0, 0), middle (1, 0), fine (1/2, √3/2)."""
    corners = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, np.sqrt(3) / 2]])
    return np.asarray(points) @ corners


def plot_tau(result: dict, tau: float | None = None, axes=None, max_points: int = 600):
    """Draw one ``tau_explorer`` result for a single patch with R = 3 levels.

    Left: softmax(g), the hard-sample frequencies and the mean soft score, per level.
    Right: the soft samples on the probability triangle (a corner = a one-hot score).
    Returns the figure.
    """
    probs, samples = result["probs"], result["samples"]
    if probs.ndim != 1 or probs.shape[0] != 3:
        raise ValueError(f"plot_tau draws one patch with 3 levels, got probs of shape {probs.shape}")
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.4), gridspec_kw={"width_ratios": [1.2, 1]})
    ax_bar, ax_tri = axes
    fig = ax_bar.figure
    x, width = np.arange(3), 0.27
    for k, (key, label, colour) in enumerate([("probs", "softmax(g)", "0.55"),
                                              ("frequencies", "hard-sample frequency", "#2a9d8f"),
                                              ("soft_mean", "mean soft score", "#8e6fb5")]):
        ax_bar.bar(x + (k - 1) * width, result[key], width, label=label, color=colour)
    ax_bar.set_xticks(x, LEVEL_NAMES)
    ax_bar.set_ylim(0, 1)
    ax_bar.set_ylabel("probability / score")
    ax_bar.legend(fontsize=8, loc="upper right")
    ax_bar.set_title(f"peak score {float(result['peak']):.2f} (1 = one-hot)", fontsize=9)

    corners = simplex_xy(np.eye(3))
    ax_tri.plot(*np.vstack([corners, corners[:1]]).T, color="0.6", lw=0.8)
    xy = simplex_xy(samples[:max_points])
    ax_tri.scatter(xy[:, 0], xy[:, 1], s=6, alpha=0.35,
                   c=[LEVEL_COLORS[i] for i in result["hard_allocation"][:max_points]], linewidths=0)
    for (cx, cy), name, dy in zip(corners, LEVEL_NAMES, (-0.08, -0.08, 0.05)):
        ax_tri.text(cx, cy + dy, name, ha="center", fontsize=8)
    ax_tri.set_xlim(-0.12, 1.12)
    ax_tri.set_ylim(-0.14, 0.96)
    ax_tri.set_aspect("equal")
    ax_tri.axis("off")
    ax_tri.set_title("soft samples b (colour: hard choice)", fontsize=9)
    if tau is not None:
        fig.suptitle(f"Gumbel-Softmax at τ = {tau:g}", fontsize=10)
    return fig
