"""PVQAE on a frozen feature pyramid: its training loop and its anomaly maps (chapter 8).

The pyramid's maps of every image are extracted once (:func:`pvqae_lib.nn.backbones.extract_features`,
cached on disk), so an epoch costs only the small :class:`pvqae_lib.nn.model.FeatureAutoencoder`.
The loss is the paper's, L = L_VQ + λ(t)·L_Budget (:func:`pvqae_lib.engine.train.total_loss`), with the reconstruction
term a mean squared error of standardized features and the budget charged on the DWT entropy of
the *image* patch under each coarse patch, as in the pixel model (in other units: see
``train_feature_autoencoder``). The adversarial term is left
out here: the patch discriminator judges images, and a feature map has no image to judge (a
measured choice, chapter 8).

Scoring gives the same arrays as :func:`pvqae_lib.engine.scoring.score_dataset` (``s``, ``s_prior``,
``s_recon``, ``image``, ``routed``, ``predicted``), so ``evaluate`` and ``predict`` do not know
which encoder made them.
"""
from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F

from ..config import ModelConfig, ScoreConfig, TrainConfig
from ..nn.backbones import extract_features, load_backbone
from ..nn.budget import budget_loss, lambda_at, patch_entropy
from ..nn.codebank import CodeBankPVQAE, train_router
from ..nn.model import FeatureAutoencoder
from ..nn.routing import routed_share
from .scorers import FeatureScorer
from .scoring import combine, gaussian_blur, prior_score
from .train import (
    CHECKPOINT,
    check_eval_set,
    check_finite_loss,
    check_same_data,
    data_fingerprint,
    eval_due,
    held_out_point,
    load_checkpoint,
    lr_at,
    progress_bar,
    save_atomic,
    total_loss,
)

BACKBONE_FINEST_STRIDE = 8      # the finest level of every feature pyramid (strides 8 / 16 / 32)


def image_entropy(images: torch.Tensor, patch: int, batch_size: int = 256) -> torch.Tensor:
    """The DWT entropy of every coarse patch of every image, (N, h, w): the budget's H."""
    return torch.cat([patch_entropy(images[i:i + batch_size], patch) for i in range(0, len(images), batch_size)])


def _batch(levels: list[torch.Tensor], index, device) -> list[torch.Tensor]:
    return [f[index].to(device, torch.float32, non_blocking=True) for f in levels]


@torch.no_grad()
def init_codebooks(model: FeatureAutoencoder, levels: list[torch.Tensor], device, num_images: int = 64) -> None:
    """Start every VQ codebook from the untrained encoder's outputs on a random sample of the
    training images (``VectorQuantizer.init_from``); LFQ has no codebook to start."""
    sample = torch.randperm(len(levels[0]))[:num_images]
    out = model.eval()(_batch(levels, sample, device))
    for j, quantizer in enumerate(model.quantizers):
        if hasattr(quantizer, "init_from"):
            quantizer.init_from(out.codes[j])
    model.train()


def build_feature_trainer(model_cfg: ModelConfig, channels: tuple, cfg: TrainConfig, levels: list[torch.Tensor],
                          device=None) -> tuple[FeatureAutoencoder, torch.optim.Optimizer]:
    """The feature loop's set-up, as :func:`pvqae_lib.engine.train.build_trainer` is the pixel loop's: a
    :class:`FeatureAutoencoder` over a pyramid of ``channels`` (coarsest first) that standardizes
    its input with the statistics of the training maps ``levels``, on ``device``, and its Adam
    optimizer (lr ``cfg.lr``, Adam's default betas: no discriminator here). Returns (model, opt)."""
    model = FeatureAutoencoder(model_cfg, channels)
    model.set_statistics(levels)
    model.to(torch.device(device or "cpu"))
    return model, torch.optim.Adam(model.parameters(), lr=cfg.lr)


def train_feature_autoencoder(levels: list[torch.Tensor], entropy: torch.Tensor, model_cfg: ModelConfig,
                              channels: tuple, cfg: TrainConfig, out_dir=None, resume: bool = False, device=None,
                              progress: bool = True, epoch_callback=None, eval_set=None, eval_levels=None):
    """Train a :class:`FeatureAutoencoder` on the pyramid maps of the normal training images.

    ``levels``: the maps, coarsest first (N, C_r, h_r, w_r); ``entropy``: (N, h, w) the DWT entropy
    of the image patch under each coarse patch. Writes ``checkpoint.pt`` to ``out_dir`` at the end
    of every epoch; ``resume`` continues from it (the same weights as an uninterrupted run).
    ``cfg.feature_noise`` adds Gaussian noise to the standardized inputs (a denoising
    autoencoder's guard against copying its input). With ``cfg.eval_every`` > 0 the labelled
    ImageSet ``eval_set``, whose pyramid maps are ``eval_levels``, is scored into ``history['eval']``
    (:func:`pvqae_lib.engine.train.held_out_point`). Returns (model, history).
    """
    device = torch.device(device or "cpu")
    check_eval_set(cfg, eval_set if eval_levels is not None else None)
    torch.manual_seed(cfg.seed)
    model, opt = build_feature_trainer(model_cfg, channels, cfg, levels, device)
    history, start_epoch = {}, 0
    out_dir = Path(out_dir) if out_dir else None
    fingerprint = data_fingerprint(levels[0])
    if resume:
        ckpt = load_checkpoint(out_dir / CHECKPOINT, kind=model_cfg.model)
        check_same_data(ckpt, fingerprint, out_dir / CHECKPOINT)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["opt"])
        history, start_epoch = ckpt["history"], ckpt["epoch"]
        torch.set_rng_state(ckpt["rng"][0])
        if ckpt.get("cuda_rng") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ckpt["cuda_rng"])
    N = len(levels[0])
    if start_epoch == 0:
        init_codebooks(model, levels, device)
    steps_per_epoch = max(1, N // cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    patch = model_cfg.coarse_stride
    # The budget's units: the pixel model divides it by the pixel values of a coarse patch (3·32²
    # here), as its reconstruction term is a mean per pixel value. Standardized features err about
    # a hundred times more per value than pixels do, so that scale leaves the budget ~1000x below
    # the reconstruction term and λ without effect; the feature model counts one value per
    # finest-grid position of a coarse patch (16) instead, a choice λmax's sweep measures (chapter 8b).
    cells = (patch // BACKBONE_FINEST_STRIDE) ** 2
    for epoch in range(start_epoch, cfg.epochs):
        g = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch * 1_009)
        order = torch.randperm(N, generator=g)
        model.train()
        t0 = time.time()
        bar = progress_bar(range(steps_per_epoch), desc=f"{model_cfg.model} epoch {epoch + 1}/{cfg.epochs}",
                           disable=not progress, leave=False)
        for i in bar:
            step = epoch * steps_per_epoch + i
            index = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            x = _batch(levels, index, device)
            progress_t = step / max(1, total - 1)
            lam = lambda_at(progress_t, cfg.lambda_max, cfg.schedule)
            lr = lr_at(progress_t, cfg.lr, cfg.lr_schedule)
            for group in opt.param_groups:
                group["lr"] = lr
            out = model(x, noise=cfg.feature_noise)
            rec = F.mse_loss(out.recon, model.target(x))
            budget = (budget_loss(out.scores, entropy[index].to(device), patch, values_per_patch=cells)
                      if model.routes else rec.new_zeros(()))
            loss = total_loss(rec, out.vq_loss, budget, lam)
            check_finite_loss(loss.item(), step, epoch, steps_per_epoch, cfg.epochs, 1, out_dir)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            for j, (r, quantizer) in enumerate(zip(model.used, model.quantizers)):   # dead-code restarts
                weight = routed_share(out.scores, r, out.codes[j].shape[-2:]) if model.routes else None
                quantizer.update_codebook(out.codes[j], out.indices[j], weight)
            logs = {"loss": loss.item(), "rec": rec.item(), "budget": budget.item(), "lambda": lam,
                    "vq": out.vq_loss.item(), "lr": lr, **{k: float(v) for k, v in out.logs.items()}}
            for k, v in logs.items():
                history.setdefault(k, []).append(v)
            if progress:
                bar.set_postfix(loss=f"{logs['loss']:.4f}", lam=f"{lam:.2f}")
        history.setdefault("epoch_seconds", []).append(time.time() - t0)
        if eval_due(cfg, epoch):
            scorer = FeatureScorer(model, model_cfg)
            history.setdefault("eval", []).append(held_out_point(epoch, scorer, eval_set, eval_levels))
            model.train()
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            save_atomic({"model": model.state_dict(), "opt": opt.state_dict(), "epoch": epoch + 1,
                         "history": history, "rng": [torch.get_rng_state()],
                         "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                         "model_config": asdict(model_cfg),
                         "train_config": asdict(cfg), "data_fingerprint": fingerprint}, out_dir / CHECKPOINT)
        if epoch_callback is not None:
            epoch_callback(epoch, model)
    return model.eval(), history


@torch.no_grad()
def collect_feature_budgets(model: FeatureAutoencoder, levels: list[torch.Tensor],
                            batch_size: int = 64) -> torch.Tensor:
    """The router's hard budget maps (N, h, w) of the training images (what the prior learns)."""
    model.eval()
    device = model.mean.device
    return torch.cat([model(_batch(levels, slice(i, i + batch_size), device)).scores.argmax(1).cpu()
                      for i in range(0, len(levels[0]), batch_size)])


@torch.no_grad()
def feature_maps(model: FeatureAutoencoder, levels: list[torch.Tensor], image_size: int, prior=None,
                 classes: torch.Tensor | None = None, cfg: ScoreConfig | None = None) -> dict:
    """S = S_prior × S_recon for a batch of pyramid maps; S_recon is the mean squared error of the
    standardized features per position of the finest grid, brought to ``image_size`` bilinearly.

    As in :func:`pvqae_lib.engine.scoring.anomaly_maps`: with a prior the features are reconstructed with
    the predicted normal budget B̂_norm and S_prior is the cross-entropy map of the router's budget.
    """
    cfg = cfg or ScoreConfig()
    model.eval()
    out = model(levels)
    B = out.scores.shape[0]
    routed = out.scores.argmax(1)
    size = (image_size, image_size)
    bank = getattr(model, "is_memory_bank", False)
    if prior is not None and model.routes:
        classes = torch.zeros(B, dtype=torch.long, device=routed.device) if classes is None else classes
        probs = prior.predict(routed.flatten(1), classes)
        predicted = probs.argmax(-1).view_as(routed)
        # the code bank keeps the distances it has (a nearest-code search each); a decoder decodes again
        rerouted = model.reroute(out, predicted) if bank else model(levels, route=predicted)
        s_prior = F.interpolate(prior_score(routed, probs)[:, None], size=size, mode="bilinear",
                                align_corners=False)[:, 0]
    else:
        predicted, rerouted = routed, out
        s_prior = torch.ones(B, *size, device=routed.device)
    if bank:                                  # the code bank: distance to the nearest normal code
        err = model.error_map(rerouted, levels, cfg.route)
    elif cfg.feature_score == "code":
        err = code_distance(model, out)
    else:
        err = (rerouted.recon - model.target(levels)).pow(2).mean(1, keepdim=True)
    s_recon = F.interpolate(err, size=size, mode="bilinear", align_corners=False)[:, 0]
    s = gaussian_blur(combine(s_prior, s_recon, cfg.prior_power), cfg.smooth_sigma * image_size / 64)
    return {"s": s, "s_prior": s_prior, "s_recon": s_recon, "image": s.flatten(1).amax(1),
            "routed": routed, "predicted": predicted}


def code_distance(model: FeatureAutoencoder, out) -> torch.Tensor:
    """||z - q||² per position on the finest grid, (B, 1, h_f, w_f): how far each code vector lies
    from the nearest entry of its level's codebook, at the level the router chose.

    A codebook trained on normal features is a learned memory bank, as PatchCore's coreset is: a
    feature no normal patch resembles lies far from every code. (ScoreConfig.feature_score='code',
    chapter 8 measures it against the reconstruction error.)
    """
    if not len(model.quantizers):
        raise ValueError("feature_score='code' needs a quantized model (pvqae or vqvae), not the plain autoencoder")
    finest = out.recon.shape[-2:]
    dist = []
    for j, quantizer in enumerate(model.quantizers):
        q = quantizer.embed(out.indices[j]).to(out.codes[j].dtype)
        dist.append(F.interpolate((out.codes[j] - q).pow(2).sum(1, keepdim=True), size=finest, mode="nearest"))
    if not model.routes:
        return dist[0]
    mask = F.interpolate(out.scores, size=finest, mode="nearest")
    return sum(mask[:, r:r + 1] * d for r, d in enumerate(dist))


@torch.no_grad()
def patchcore_maps(patchcore, levels: list[torch.Tensor], image_size: int, cfg: ScoreConfig | None = None) -> dict:
    """PatchCore's nearest-neighbour distance maps in the same arrays as :func:`feature_maps`
    (no routing: ``routed`` and ``predicted`` are all the finest level, ``s_prior`` ones)."""
    cfg = cfg or ScoreConfig()
    dist = patchcore(levels)                                        # (B, h_f, w_f)
    B = dist.shape[0]
    size = (image_size, image_size)
    s_recon = F.interpolate(dist[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    s = gaussian_blur(s_recon, cfg.smooth_sigma * image_size / 64)
    grid = levels[0].shape[-2:]
    levels_map = torch.full((B, *grid), len(levels) - 1, dtype=torch.long)
    return {"s": s, "s_prior": torch.ones_like(s), "s_recon": s_recon, "image": s.flatten(1).amax(1),
            "routed": levels_map, "predicted": levels_map}


def score_features(scorer, levels: list[torch.Tensor], image_size: int, prior=None, class_ids=None,
                   cfg: ScoreConfig | None = None, batch_size: int = 32) -> dict:
    """Score many images' pyramid maps in batches; numpy arrays on the CPU, as ``score_dataset``."""
    from ..nn.patchcore import PatchCore
    device = next(iter(scorer.buffers())).device
    parts: dict = {}
    for start in range(0, len(levels[0]), batch_size):
        x = _batch(levels, slice(start, start + batch_size), device)
        if isinstance(scorer, PatchCore):
            sc = patchcore_maps(scorer, x, image_size, cfg)
        else:
            cls = None if class_ids is None else class_ids[start:start + batch_size].to(device)
            sc = feature_maps(scorer, x, image_size, prior, cls, cfg)
        for k, v in sc.items():
            parts.setdefault(k, []).append(v.cpu())
    return {k: torch.cat(v).numpy() for k, v in parts.items()} if parts else {}


def fit_feature_model(images: torch.Tensor, profile, out_dir=None, resume: bool = False, device=None,
                      progress: bool = True, epoch_callback=None, eval_set=None):
    """Extract (or read from the cache) the pyramid maps of the normal training images, then train
    the feature autoencoder, or fill PatchCore's memory bank. Returns (model, history, levels).
    With ``profile.train.eval_every`` > 0 the maps of ``eval_set`` are extracted once too, for the
    held-out evaluation during training."""
    from ..nn.patchcore import PatchCore, PatchCoreConfig
    m, t = profile.model, profile.train
    backbone = load_backbone(m.backbone, device=device)
    levels = extract_features(backbone, images, progress=progress)
    if m.model == "patchcore":
        t0 = time.time()
        model = PatchCore(PatchCoreConfig(coreset_ratio=m.coreset_ratio)).fit(levels, seed=t.seed).to(device or "cpu")
        return model.eval(), {"coreset_seconds": time.time() - t0, "memory_size": len(model.memory)}, levels
    entropy = image_entropy(images, m.coarse_stride)
    if m.feature_model == "bank":
        model, history = fit_code_bank(images, levels, entropy, profile, backbone, device, progress)
        return model, history, levels
    eval_levels = (extract_features(backbone, eval_set.images, progress=progress)
                   if t.eval_every > 0 and eval_set is not None else None)
    model, history = train_feature_autoencoder(levels, entropy, m, backbone.channels, t, out_dir, resume, device,
                                               progress, epoch_callback, eval_set, eval_levels)
    return model, history, levels


def painted_training_maps(images: torch.Tensor, backbone, profile, patch: int, progress: bool = False):
    """Up to ``profile.train.painted_images`` of ``images`` (seeded choice), each with a synthetic
    anomaly (:func:`pvqae_lib.data.anomaly.paint_anomalies`, DRÆM's recipe): (their pyramid maps, the
    share of each coarse patch the anomaly covers (M, h, w), their DWT entropy (M, h, w))."""
    from ..data.anomaly import AnomalyConfig, paint_anomalies
    t = profile.train
    g = torch.Generator().manual_seed(t.seed + 7)
    pick = torch.randperm(len(images), generator=g)[:t.painted_images]
    painted, masks = paint_anomalies(images[pick], g, cfg=AnomalyConfig(anomaly_prob=1.0))
    coverage = F.avg_pool2d(masks, patch)[:, 0]
    return extract_features(backbone, painted, progress=progress), coverage, image_entropy(painted, patch)


def fit_code_bank(images: torch.Tensor, levels: list[torch.Tensor], entropy: torch.Tensor, profile, backbone,
                  device=None, progress: bool = False):
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
    model = CodeBankPVQAE(m, backbone.channels).to(device or "cpu")
    history: dict = {}
    if model.routes:
        t0 = time.time()
        n = len(images)
        if n < 2:
            raise ValueError(f"the code bank's router needs at least 2 training images, got {n}")
        order = torch.randperm(n, generator=torch.Generator().manual_seed(t.seed + 11))
        fitted, routed = order[:n // 2], order[n // 2:]
        probe = CodeBankPVQAE(m, backbone.channels).to(device or "cpu")
        probe.fit([f[fitted] for f in levels], seed=t.seed)
        probe.router = model.router               # the same module: training it trains the model's
        part = [f[routed] for f in levels]
        painted = (painted_training_maps(images[routed], backbone, profile, m.coarse_stride, progress)
                   if t.router_objective == "margin" else None)
        history.update(train_router(probe, part, entropy[routed], t, painted))
        history["router_seconds"] = time.time() - t0
    history.update(model.fit(levels, seed=t.seed))
    history["bank_sizes"] = [len(model.codebook(r)) for r in model.used]
    return model.eval(), history


def score_images(model, model_cfg: ModelConfig, images: torch.Tensor, prior=None, class_ids=None,
                 cfg: ScoreConfig | None = None, device=None) -> dict:
    """Score images (N, 3, H, W) with a feature model: the pyramid's maps (cached), then
    :func:`score_features`."""
    backbone = load_backbone(model_cfg.backbone, device=device or next(iter(model.buffers())).device)
    levels = extract_features(backbone, images)
    return score_features(model, levels, images.shape[-1], prior, class_ids, cfg)


__all__ = ["build_feature_trainer", "fit_feature_model", "score_images", "image_entropy", "train_feature_autoencoder",
           "collect_feature_budgets", "feature_maps",
           "patchcore_maps", "score_features"]
