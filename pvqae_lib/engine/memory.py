"""Fitting the detectors that remember rather than learn by gradient (``fitted_by == 'memory'``):
PatchCore's coreset, and PVQAE's codebooks read as a memory bank (:mod:`pvqae_lib.nn.codebank`) with
its cross-fitted router. The engine's other half, the training loop, is :mod:`pvqae_lib.engine.train`."""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from ..data.anomaly import AnomalyConfig, paint_anomalies
from ..nn.codebank import train_router
from ..nn.factory import backbone_of, build_model
from .batches import image_entropy


def fit_memory(images: torch.Tensor, profile, device=None, progress: bool = True):
    """Fill the memory of the detector ``profile.model`` names from the normal training ``images``:
    returns (model in eval mode, history)."""
    m, t = profile.model, profile.train
    levels = backbone_of(m)(images, device=device, progress=progress)
    if m.model == "patchcore":
        t0 = time.time()
        model = build_model(m).fit(levels, seed=t.seed).to(device or "cpu")
        return model.eval(), {"coreset_seconds": time.time() - t0, "memory_size": len(model.memory)}
    return fit_code_bank(images, levels, profile, device, progress)


def painted_training_maps(images: torch.Tensor, model, profile, patch: int, progress: bool = False):
    """Up to ``profile.train.painted_images`` of ``images`` (seeded choice), each with a synthetic
    anomaly (:func:`pvqae_lib.data.anomaly.paint_anomalies`, DRÆM's recipe): (their pyramid maps, the
    share of each coarse patch the anomaly covers (M, h, w), their DWT entropy (M, h, w))."""
    t = profile.train
    g = torch.Generator().manual_seed(t.seed + 7)
    pick = torch.randperm(len(images), generator=g)[:t.painted_images]
    painted, masks = paint_anomalies(images[pick], g, cfg=AnomalyConfig(anomaly_prob=1.0))
    coverage = F.avg_pool2d(masks, patch)[:, 0]
    return model.inputs(painted, progress=progress), coverage, image_entropy(painted, patch)


def fit_code_bank(images: torch.Tensor, levels: list[torch.Tensor], profile, device=None, progress: bool = False):
    """PVQAE's codebooks as a memory bank (:mod:`pvqae_lib.nn.codebank`): k-means codebooks on the
    pyramid descriptors of the normal training maps, then (pvqae) the router, trained with the
    budget and ``profile.train.router_objective``.

    The router is cross-fitted: it learns on the distances of half the training images to
    codebooks fitted on the other half (and on synthetic anomalies painted into the first half),
    because a codebook sits closer to the very descriptors it was fitted on, the more so the
    fewer positions a level has (the coarse grid): trained on those, the router would learn the
    codebook's over-fitting, not which level tells normal from anomalous. The final codebooks are
    then fitted on every training image. Returns (model, history)."""
    m, t = profile.model, profile.train
    torch.manual_seed(t.seed)                     # the router's first weights
    model = build_model(m).to(device or "cpu")
    history: dict = {}
    if model.routes:
        t0 = time.time()
        n = len(images)
        if n < 2:
            raise ValueError(f"the code bank's router needs at least 2 training images, got {n}")
        order = torch.randperm(n, generator=torch.Generator().manual_seed(t.seed + 11))
        fitted, routed = order[:n // 2], order[n // 2:]
        probe = build_model(m).to(device or "cpu")
        probe.fit([f[fitted] for f in levels], seed=t.seed)
        probe.router = model.router               # the same module: training it trains the model's
        part = [f[routed] for f in levels]
        painted = (painted_training_maps(images[routed], model, profile, m.coarse_stride, progress)
                   if t.router_objective == "margin" else None)
        entropy = image_entropy(images[routed], m.coarse_stride)
        history.update(train_router(probe, part, entropy, t, painted))
        history["router_seconds"] = time.time() - t0
    history.update(model.fit(levels, seed=t.seed))
    history["bank_sizes"] = [len(model.codebook(r)) for r in model.used]
    return model.eval(), history
