"""A discriminative segmentation head on top of a frozen autoencoder (LFQUIAD Sec. 3.3, Chapter 10).

As in DRÆM (Zavrtanik et al. 2021) and LFQUIAD's discriminative subnetwork, a small U-Net sees an
image next to its reconstruction, concat(x, x̂) (6 channels), and predicts a per-pixel anomaly logit.
It is trained on synthetic anomalies (:mod:`pvqae_lib.data.anomaly`) with LFQUIAD's Eq. (3),
L_dis = α₂·L_dice + β₂·L_focal with α₂ + β₂ = 1. The autoencoder stays frozen (eval mode, no
gradients): only the head learns, which keeps a CPU run short.
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import HeadConfig
from ..data.anomaly import AnomalyConfig, AnomalySynthesizer
from ..nn.prior import class_tokens
from ..progress import progress_bar
from .scorers import DetectorScorer, Scorer, evaluate_scorer
from .scoring import anomaly_maps, smoothed


def conv_block(cin: int, cout: int) -> nn.Sequential:
    """(3x3 conv → GroupNorm → ReLU) twice."""
    groups = max(1, cout // 4)
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(groups, cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(groups, cout), nn.ReLU(inplace=True))


class SegmentationHead(nn.Module):
    """U-Net-lite: three scales (width, 2·width, 4·width channels), skip connections, a 1x1 output.

    ``forward(x, recon)`` takes images and reconstructions (B, 3, H, W) in [0, 1] and returns
    anomaly logits (B, 1, H, W); H and W must be divisible by 4. The output bias starts every pixel
    at probability ``prior`` (the focal-loss paper's initialisation, Lin et al. 2017): anomalies are
    rare, and starting at p = 0.5 would make the first steps only learn "normal everywhere".
    """

    def __init__(self, width: int = 8, in_channels: int = 6, prior: float = 0.01):
        super().__init__()
        self.width = w = width
        self.enc1, self.enc2, self.enc3 = conv_block(in_channels, w), conv_block(w, 2 * w), conv_block(2 * w, 4 * w)
        self.dec2, self.dec1 = conv_block(4 * w + 2 * w, 2 * w), conv_block(2 * w + w, w)
        self.out = nn.Conv2d(w, 1, 1)
        nn.init.constant_(self.out.bias, -math.log((1 - prior) / prior))   # start at p = prior (RetinaNet)

    def forward(self, x: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
        h = torch.cat([x, recon], 1) * 2 - 1                                 # (B, 6, H, W) in [-1, 1]
        e1 = self.enc1(h)                                                    # (B, w, H, W)
        e2 = self.enc2(F.max_pool2d(e1, 2))                                  # (B, 2w, H/2, W/2)
        e3 = self.enc3(F.max_pool2d(e2, 2))                                  # (B, 4w, H/4, W/4)
        d2 = self.dec2(torch.cat([F.interpolate(e3, scale_factor=2.0, mode="bilinear", align_corners=False), e2], 1))
        d1 = self.dec1(torch.cat([F.interpolate(d2, scale_factor=2.0, mode="bilinear", align_corners=False), e1], 1))
        return self.out(d1)                                                  # (B, 1, H, W) logits


def dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Soft Dice loss over the whole batch, 1 − (2Σpt + s)/(Σp + Σt + s), p = sigmoid(logits).

    The sums run over every pixel of every image (as segmentation_models_pytorch does by default):
    a per-image Dice would give each anomaly-free image a loss near 1 until all of its
    probabilities are ≈ 0, which swamps the anomalous images. ``smooth`` keeps an all-normal batch defined.
    """
    p, t = torch.sigmoid(logits).flatten(), target.float().flatten()
    dice = (2 * (p * t).sum() + smooth) / (p.sum() + t.sum() + smooth)
    return 1 - dice


def focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float | None = 0.25,
               gamma: float = 2.0) -> torch.Tensor:
    """Focal loss (Lin et al. 2017), FL = −α_t (1 − p_t)^γ log p_t, averaged over pixels.

    p_t is the predicted probability of the true class; α_t = α on anomalous pixels and 1 − α on
    normal ones (``alpha=None``: no class weighting). γ = 2 as in RetinaNet and DRÆM.
    """
    t = target.float()
    ce = F.binary_cross_entropy_with_logits(logits, t, reduction="none")    # −log p_t, stable
    p_t = torch.exp(-ce)
    loss = (1 - p_t) ** gamma * ce
    if alpha is not None:
        loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
    return loss.mean()


def dice_focal_loss(logits: torch.Tensor, target: torch.Tensor, dice_weight: float = 0.5,
                    alpha: float | None = 0.25, gamma: float = 2.0) -> tuple[torch.Tensor, dict]:
    """LFQUIAD Eq. (3): L_dis = α₂·L_dice + β₂·L_focal with α₂ + β₂ = 1.

    The paper states only α₂ + β₂ = 1, not the values; α₂ = ``dice_weight`` = 0.5 here is our
    choice. Returns (loss, logs) with the unweighted terms.
    """
    dice = dice_loss(logits, target)
    focal = focal_loss(logits, target, alpha, gamma)
    loss = dice_weight * dice + (1 - dice_weight) * focal
    return loss, {"dice": dice.item(), "focal": focal.item()}


@torch.no_grad()
def reconstruct(model, images: torch.Tensor, prior=None, classes: torch.Tensor | None = None) -> torch.Tensor:
    """The frozen autoencoder's reconstruction (eval mode, no gradients), exactly the one scoring
    uses: with a prior, the image rebuilt with the predicted normal budget; else the model's own
    (router-chosen) reconstruction (:func:`pvqae_lib.engine.scoring.anomaly_maps`)."""
    return anomaly_maps(model, images, prior, classes).recon.clamp(0, 1)


def train_head(model, normal_set, cfg: HeadConfig | None = None, seed: int = 0,
               anomaly_cfg: AnomalyConfig | None = None, prior=None,
               progress: bool = False) -> tuple[SegmentationHead, dict]:
    """Train a :class:`SegmentationHead` (``cfg``: its steps, batch size, learning rate and width) for a
    frozen autoencoder ``model`` on synthetic anomalies.

    Each step: an :class:`~pvqae_lib.data.anomaly.AnomalySynthesizer` batch from ``normal_set`` (about
    half the images get an anomaly; object categories only on their foreground), the autoencoder's
    reconstruction of it (:func:`reconstruct`; ``prior`` makes it the prior-guided one, with each
    image's category as its class token when the prior is per-class), then one AdamW step on
    Eq. (3). LFQUIAD trains its head with lr 1e-4 for 800 epochs at batch 1; a short CPU run needs
    the larger 1e-3. Returns (head in eval mode, history with per-step 'loss', 'dice', 'focal').
    """
    cfg = cfg or HeadConfig()
    torch.manual_seed(seed)
    device = next(model.parameters()).device
    model.eval()
    synth = AnomalySynthesizer(normal_set, anomaly_cfg, seed=seed)
    head = SegmentationHead(cfg.width).to(device)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=1e-4)
    history = {"loss": [], "dice": [], "focal": []}
    t0 = time.time()
    for _ in progress_bar(range(cfg.steps), desc="head", disable=not progress):
        x, m, index = synth.sample_indexed(cfg.batch_size)
        x, m = x.to(device), m.to(device)
        recon = reconstruct(model, x, prior, _classes(prior, normal_set.categories[index], len(x), device))
        head.train()
        loss, logs = dice_focal_loss(head(x, recon), m)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history["loss"].append(loss.item())
        for k, v in logs.items():
            history[k].append(v)
    history["seconds"] = time.time() - t0
    return head.eval(), history


def _classes(prior, categories, B: int, device):
    """Class tokens for the prior (:func:`pvqae_lib.nn.prior.class_tokens`: the categories for a
    per-class prior); None without a prior, or for the universal one."""
    if prior is None or categories is None:
        return None
    return class_tokens(categories, prior.num_classes > 1).to(device)


@torch.no_grad()
def head_maps(head: SegmentationHead, model, images: torch.Tensor, prior=None, classes: torch.Tensor | None = None,
              sigma: float = 1.0, image_score: str = "max", top_k: float = 0.01) -> tuple[torch.Tensor, torch.Tensor]:
    """Anomaly maps (B, H, W) = sigmoid of the head's logits, Gaussian-smoothed with ``sigma`` pixels
    at 64 px (scaled with the size; 0: none, LFQUIAD's optional post-processing), and image scores (B,):

    - ``'max'``: maximum of the smoothed map (like :mod:`pvqae_lib.engine.scoring`; DRÆM uses the max of a
      box-filtered map);
    - ``'topk'``: mean of the top ``top_k`` fraction of pixels;
    - ``'mean'``: mean of the map, LFQUIAD Eq. (4).
    """
    head.eval()
    B, _, H, W = images.shape
    recon = reconstruct(model, images, prior, classes)
    maps = smoothed(torch.sigmoid(head(images, recon))[:, 0], sigma)
    flat = maps.flatten(1)
    if image_score == "max":
        scores = flat.amax(1)
    elif image_score == "topk":
        scores = flat.topk(max(1, int(round(top_k * H * W))), dim=1).values.mean(1)
    elif image_score == "mean":
        scores = flat.mean(1)
    else:
        raise ValueError(f"image_score must be max, topk or mean, got {image_score!r}")
    return maps, scores


def head_scores_of(head: SegmentationHead, model, data, prior=None, batch_size: int = 32, device=None,
                   **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """:func:`head_maps` of a whole ImageSet in batches: (maps (N, H, W), image scores (N,)) as
    numpy arrays on the CPU. ``kwargs`` go to :func:`head_maps` (``sigma``, ``image_score``, ``top_k``)."""
    device = device or next(model.parameters()).device
    maps, scores = [], []
    for start in range(0, len(data), batch_size):
        x = data.images[start:start + batch_size].to(device)
        cls = _classes(prior, data.categories[start:start + batch_size], len(x), device)
        m, s = head_maps(head, model, x, prior, cls, **kwargs)
        maps.append(m.cpu()), scores.append(s.cpu())
    return torch.cat(maps).numpy(), torch.cat(scores).numpy()


def evaluate_head(head: SegmentationHead, model, test_set, prior=None, batch_size: int = 32, **kwargs) -> dict:
    """Image AUROC, pixel AUROC and PRO of the head's maps, as means over categories, plus
    ``*_pooled`` numbers and ``per_category`` rows: :func:`pvqae_lib.engine.scorers.per_category` of a
    :class:`HeadScorer`, the aggregation ``pipeline.evaluate`` uses too.
    ``kwargs`` go to :func:`head_maps` (``sigma``, ``image_score``, ``top_k``)."""
    return evaluate_scorer(HeadScorer(head, model, prior, batch_size=batch_size, **kwargs), test_set)


__all__ = ["SegmentationHead", "HeadScorer", "dice_loss", "focal_loss", "dice_focal_loss", "reconstruct", "train_head",
           "head_maps", "head_scores_of", "evaluate_head"]


class HeadScorer(Scorer):
    """LFQUIAD's score (Sec. 3.5): the segmentation head's probabilities for an image beside the
    frozen autoencoder's reconstruction (:func:`pvqae_lib.engine.segmentation.head_maps`; ``sigma``,
    ``image_score`` and ``top_k`` go there; ``prior`` makes it the prior-guided reconstruction,
    with each image's category as class token when the prior is per-class). With ``routing``, the
    autoencoder's own S_recon arrays (``routed``, ``predicted``, ...) come too, for the router's
    resolution shares."""

    def __init__(self, head, model, prior=None, routing: bool = False, device=None, batch_size: int = 32,
                 **kwargs):
        self.head, self.model, self.prior = head, model, prior
        self.routing, self.device, self.batch_size, self.kwargs = routing, device, batch_size, kwargs

    def score(self, data) -> dict:
        sc = DetectorScorer(self.model, device=self.device).score(data) if self.routing else {}
        sc["s"], sc["image"] = head_scores_of(self.head, self.model, data, self.prior, batch_size=self.batch_size,
                                              device=self.device, **self.kwargs)
        return sc
