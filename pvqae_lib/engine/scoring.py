"""Anomaly maps: S = S_prior × S_recon (Sec. III-C.2, Chapter 7), one path for every detector."""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from ..config import ScoreConfig
from ..nn.detector import batch_of


class Scores(NamedTuple):
    s: torch.Tensor            # (B, H, W) the anomaly map, smoothed
    s_prior: torch.Tensor      # (B, H, W) S_prior up-sampled to pixels (ones without a prior)
    s_recon: torch.Tensor      # (B, H, W) S_recon
    image: torch.Tensor        # (B,) image score: the maximum of the map
    routed: torch.Tensor       # (B, h, w) the budget the router chose, B
    predicted: torch.Tensor    # (B, h, w) the predicted normal budget B̂_norm (= routed without a prior)
    recon: torch.Tensor | None  # (B, 3, H, W) the reconstruction S_recon was measured on (None: a memory)


def prior_score(routed: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """S_prior^ij = CE(b^ij, b̂^ij_norm) / Σ_ij CE(b^ij, b̂^ij_norm).

    routed (B, h, w) long: the router's one-hot budget b, as indices; probs (B, h·w, R): the
    prior's predicted normal budget. With a one-hot b the cross-entropy is -log b̂[b].
    """
    B, h, w = routed.shape
    ce = -torch.log(probs.gather(-1, routed.reshape(B, -1, 1)).squeeze(-1).clamp(min=1e-8))   # (B, N)
    return (ce / ce.sum(1, keepdim=True).clamp(min=1e-12)).view(B, h, w)


def mean_colour_error(recon: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """The part of the reconstruction error that a wrong average colour explains, per image.

    (B, 3, H, W) -> (B,): the squared difference of the two images' per-channel means, averaged
    over the channels, in the units of the mean of :func:`recon_score` / 3 (squared error per
    value). It is never larger than that mean; their ratio is the share of the error that shifting
    the whole reconstruction by one colour would remove (chapter 7b: the weave's codes lose its colour).
    """
    shift = recon.float().mean((2, 3)) - images.float().mean((2, 3))   # (B, 3)
    return shift.pow(2).mean(1)


def gaussian_blur(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian smoothing of (B, H, W) maps, reflect-padded; sigma in pixels (0: none)."""
    if sigma <= 0:
        return maps
    radius = max(1, int(round(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=maps.dtype, device=maps.device)
    k = torch.exp(-x ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    out = F.pad(maps[:, None], (radius, radius, radius, radius), mode="reflect")
    out = F.conv2d(out, k.view(1, 1, 1, -1))
    out = F.conv2d(out, k.view(1, 1, -1, 1))
    return out[:, 0]


def standardize(maps, normal_maps):
    """(S - μ) / σ at each pixel, with μ and σ the mean and spread of ``normal_maps`` at that pixel.

    maps (B, H, W) and normal_maps (N, H, W), NumPy arrays from :func:`score_dataset`. Not in the
    paper, which scores S itself: a book choice for small images. At 64 px a texture's
    reconstruction error is highest along the image border, where the encoder sees only part of its
    context, so the maximum of a normal texture's map lies on that frame and the image score ranks
    frames rather than defects (chapter 7b measures it). Comparing each pixel with what normal images
    score at the same place removes the frame and keeps the border in the score.
    """
    mean, std = normal_maps.mean(0), normal_maps.std(0)
    return (maps - mean) / (std + 1e-3 * std.mean() + 1e-12)   # the floor keeps constant pixels finite


BORDER_PX_AT_64 = 4   # the frame chapters 7b and 8 inspect: 4 px at 64 px, scaled with the image


def border_band(size: int) -> tuple[int, float]:
    """The frame along the border of a ``size`` px image that chapters 7b and 8 inspect:
    (its width in pixels, the share of the image's area it covers). 4 px at 64 px, in proportion
    at other sizes (at least 1 px)."""
    width = max(1, BORDER_PX_AT_64 * size // 64)
    return width, 1 - (1 - 2 * width / size) ** 2


def peak_positions(maps):
    """(rows, columns) of each map's maximum, the pixel that gives the image score; maps (B, H, W)."""
    B, H, W = maps.shape
    peak = maps.reshape(B, -1).argmax(1)
    return peak // W, peak % W


def peak_on_border(maps, width: int):
    """For each map of (B, H, W), whether its maximum, the image score, lies within ``width`` pixels
    of the image border. A share far above the border band's share of the area means the border
    decides the image score (chapter 7b)."""
    _, H, W = maps.shape
    y, x = peak_positions(maps)
    return (y < width) | (x < width) | (y >= H - width) | (x >= W - width)


def peak_in_mask(maps, masks):
    """For each map of (B, H, W), whether its maximum lies inside the boolean mask (B, H, W) of
    the same image: does the image score come from the defect itself (chapter 8)?"""
    y, x = peak_positions(maps)
    return masks[range(len(masks)), y, x]


def combine(s_prior: torch.Tensor, s_recon: torch.Tensor, power: float = 1.0) -> torch.Tensor:
    """The paper's pixel-wise product S = S_prior × S_recon; with ``power`` γ < 1 the milder
    S = S_prior^γ × S_recon (ScoreConfig.prior_power: the prior as a modulation, chapter 8b)."""
    return (s_prior if power == 1 else s_prior.pow(power)) * s_recon


def blur_sigma(sigma_at_64: float, size: int) -> float:
    """A smoothing given in pixels of a 64 px image (ScoreConfig.smooth_sigma and head_sigma), in
    pixels of a ``size`` px image: the blur covers the same share of every image."""
    return sigma_at_64 * size / 64


def smoothed(maps: torch.Tensor, sigma_at_64: float) -> torch.Tensor:
    """The maps (B, H, W) blurred by ``sigma_at_64`` pixels at 64 px (:func:`blur_sigma`)."""
    return gaussian_blur(maps, blur_sigma(sigma_at_64, maps.shape[-2]))


def to_image(maps: torch.Tensor, size) -> torch.Tensor:
    """Maps (B, 1, h, w) brought to the image's ``size`` bilinearly, (B, H, W)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps[:, 0]
    return F.interpolate(maps, size=tuple(size), mode="bilinear", align_corners=False)[:, 0]


@torch.no_grad()
def anomaly_maps(model, inputs, prior=None, classes: torch.Tensor | None = None, cfg: ScoreConfig | None = None,
                 size=None) -> Scores:
    """Score a batch with any detector in eval mode (the contract of :mod:`pvqae_lib.nn.detector`):
    ``inputs`` are what it takes (images (B, 3, H, W) in [0, 1], or their pyramid's maps), ``size``
    the images' (H, W) (default: the inputs' own, for images).

    With a prior (a routed detector): the router gives B, the prior predicts B̂_norm, the output is
    made again with B̂_norm (so unexpected detail cannot be bought back), and
    S = S_prior × S_recon, where S_prior is up-sampled bilinearly from the coarse grid. Without one
    (the VQ-VAE, PatchCore, the ablation), S = S_recon of the detector's own output. S_recon is the
    detector's evidence (a reconstruction error, a distance to the nearest normal code or patch)
    brought to the image; S is smoothed (``cfg.smooth_sigma`` at 64 px) and its maximum is the image
    score.
    """
    cfg = cfg or ScoreConfig()
    model.eval()
    size = tuple(size or inputs.shape[-2:])
    out = model(inputs)
    routed = out.scores.argmax(1)
    B = routed.shape[0]
    if prior is not None and model.routes:
        probs = prior.predict(routed.flatten(1), classes)
        predicted = probs.argmax(-1).view_as(routed)
        rerouted = model.reroute(inputs, out, predicted)
        s_prior = to_image(prior_score(routed, probs)[:, None], size)
    else:
        predicted, rerouted = routed, out
        s_prior = torch.ones(B, *size, device=routed.device)
    s_recon = to_image(model.evidence(inputs, rerouted, cfg), size)
    s = smoothed(combine(s_prior, s_recon, cfg.prior_power), cfg.smooth_sigma)
    return Scores(s, s_prior, s_recon, s.flatten(1).amax(1), routed, predicted, getattr(rerouted, "recon", None))


def score_dataset(model, data, prior=None, class_ids=None, cfg: ScoreConfig | None = None,
                  batch_size: int = 32, device=None) -> dict:
    """Score an ImageSet in batches with any detector; returns numpy arrays (maps, image scores,
    budgets) on the CPU. The detector's backbone turns the images into its inputs first (a
    pyramid's maps come from the feature cache). ``class_ids`` maps each image to its prior class
    token (all zeros for a universal prior)."""
    device = device or model.device
    inputs = model.inputs(data.images)
    size = data.images.shape[-2:]
    parts = {k: [] for k in ("s", "s_prior", "s_recon", "image", "routed", "predicted")}
    for start in range(0, len(data), batch_size):
        index = slice(start, start + batch_size)
        cls = None if class_ids is None else class_ids[index].to(device)
        sc = anomaly_maps(model, batch_of(inputs, index, device), prior, cls, cfg, size)
        for k in parts:
            parts[k].append(getattr(sc, k).cpu())
    return {k: torch.cat(v).numpy() for k, v in parts.items()}
