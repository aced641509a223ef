"""The training loop (Chapter 5): every gradient-trained detector, pixel or on a frozen pyramid,
with progressive budget learning; then the prior (:mod:`pvqae_lib.nn.prior`).

One readable function, in order: seed, build, resume, then a loop that steps, logs, evaluates and
writes a checkpoint at the end of every epoch. What differs between detectors is declared by them
(the detector contract, :mod:`pvqae_lib.nn.detector`): the inputs their backbone makes
(:mod:`pvqae_lib.engine.batches`), the target they rebuild, the budget's units, and whether a patch
discriminator judges them (the pixel models). Runs on one process, or under ``torchrun`` with
DistributedDataParallel (gloo on CPU, nccl on CUDA); only rank 0 writes.
"""
from __future__ import annotations

import math
import os
import pickle
import time
from dataclasses import asdict
from pathlib import Path
from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from ..config import ModelConfig, TrainConfig
from ..nn.budget import budget_loss, lambda_at, patch_entropy
from ..nn.detector import batch_of, num_inputs
from ..nn.discriminator import PatchDiscriminator, adaptive_weight, discriminator_loss, generator_loss
from ..nn.factory import backbone_of, build_model
from ..nn.routing import routed_share
from ..nn.ssim import reconstruction_loss
from ..progress import progress_bar
from ..storage import load_weights, save_atomic
from .batches import training_batches
from .scorers import DetectorScorer, per_category

CHECKPOINT = "checkpoint.pt"   # the last finished epoch of a training run, in its output folder
LR_FLOOR = 0.1     # the cosine learning-rate schedule ends at this fraction of the base rate


class CheckpointError(ValueError):
    """A run directory or checkpoint that cannot be used (one line, names the file)."""


class TrainingDiverged(CheckpointError):
    """The loss became NaN or infinite: training stops, the last good epoch's checkpoint is kept."""


def load_checkpoint(path: Path, kind: str | None = None) -> dict:
    """Load a checkpoint written by this library; ``kind`` must match (e.g. 'pvqae' vs 'vqvae').

    ``weights_only=True``: tensors, dicts, lists, numbers and strings load; a file holding any other
    Python object is refused without running anything it holds."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        ckpt = load_weights(path)
    except pickle.UnpicklingError:   # weights_only refused a Python object: nothing of it ran
        raise CheckpointError(f"cannot read checkpoint {path}: it holds Python objects other than weights "
                              f"(refused unread: loading them could run code)") from None
    except Exception as e:  # a truncated or foreign file
        raise CheckpointError(f"cannot read checkpoint {path}: {type(e).__name__}") from None
    if not isinstance(ckpt, dict) or "model_config" not in ckpt:
        raise CheckpointError(f"{path} is not a pvqae_lib checkpoint")
    if kind is not None and ckpt["model_config"]["model"] != kind:
        raise CheckpointError(f"{path} holds a {ckpt['model_config']['model']} model, not {kind}")
    return ckpt


def check_same_data(ckpt: dict, fingerprint: str, path: Path) -> None:
    """CheckpointError when the checkpoint at ``path`` records other training data than ``fingerprint``
    (checkpoints written before the record existed carry none and pass)."""
    saved = ckpt.get("data_fingerprint")
    if saved is not None and saved != fingerprint:
        raise CheckpointError(f"cannot resume from {path}: it was trained on other data (fingerprint {saved}, "
                              f"these training images {fingerprint}): it belongs to another run")


def total_loss(rec: torch.Tensor, vq: torch.Tensor, budget: torch.Tensor, lam: float,
               adv: torch.Tensor | None = None, adv_weight: float = 0.0) -> torch.Tensor:
    """The paper's objective (Sec. III-B.2): L = L_VQ + w·L_ADV + λ·L_Budget, with
    L_VQ = the reconstruction error + the codebook and commitment terms."""
    loss = rec + vq + lam * budget
    return loss if adv is None else loss + adv_weight * adv


def lr_at(progress: float, base: float, schedule: str) -> float:
    """The learning rate at a point of training (progress in [0, 1]).

    The paper gives no optimizer schedule; a cosine decay (as in nanoGPT) is this book's choice:
    a run of a few hundred steps ends with a visibly lower reconstruction error than at a
    constant rate. It is a function of the step alone, so a resumed run follows the same curve.
    """
    if schedule == "constant":
        return base
    p = min(max(progress, 0.0), 1.0)
    return base * (LR_FLOOR + (1 - LR_FLOOR) * (1 + math.cos(math.pi * p)) / 2)


def distributed_context(device: torch.device) -> tuple[int, int]:
    """(rank, world size); starts the process group when launched by torchrun."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def train_autoencoder(data, model_cfg: ModelConfig, cfg: TrainConfig, out_dir=None, resume: bool = False,
                      device=None, progress: bool = True, epoch_callback=None, eval_set=None, inputs=None):
    """Train the detector ``model_cfg`` names (PVQAE, the VQ-VAE, or on a frozen pyramid the
    feature autoencoder) on the normal images of ``data`` (an ImageSet).

    Loss per step (Sec. III-B.2): L = L_VQ + w_adv·L_ADV + λ(t)·L_Budget, with λ(t) rising from
    0 to λmax by ``cfg.schedule`` (no L_ADV for a model without a discriminator, no budget for one
    without a router). With ``cfg.restore_anomalies`` (LFQUIAD's reconstructive subnetwork, after
    DRÆM) about half the inputs carry synthetic anomalies, the reconstruction target is the normal
    image and the reconstruction term is LFQUIAD's Eq. 2 with its SSIM term (``cfg.ssim_weight``).
    Returns (model, history): history is a dict of per-step lists (loss, rec, budget, lambda,
    share_r, perplexity, ...). ``epoch_callback(epoch, model)`` runs after each epoch (chapter 5 uses
    it to snapshot allocation maps). With ``cfg.eval_every`` > 0 the labelled ImageSet ``eval_set``
    is scored as :func:`held_out_point` says into ``history['eval']``. Writes ``checkpoint.pt`` to
    ``out_dir`` at the end of every epoch; ``resume`` continues from it (the same weights as an
    uninterrupted run). ``inputs``: the detector's inputs of ``data.images`` when they are at hand
    (a pyramid's maps); by default its backbone makes them.
    """
    device = torch.device(device or "cpu")
    check_eval_set(cfg, eval_set)
    rank, world = distributed_context(device)
    out_dir = Path(out_dir) if out_dir else None
    # 1. the inputs the detector's backbone makes of the training images (a pyramid's from its cache),
    #    then the seeded build
    if inputs is None:
        inputs = backbone_of(model_cfg)(data.images, device=device, progress=progress)
    batches = training_batches(data, inputs, cfg, model_cfg.coarse_stride, rank, world)
    torch.manual_seed(cfg.seed + rank)
    parts = build_trainer(model_cfg, cfg, device)
    model, disc, opt, opt_d, scaler = parts.model, parts.disc, parts.opt, parts.opt_d, parts.scaler
    history, start_epoch = {}, 0

    # 2. resume from the last finished epoch
    if resume:
        ckpt = load_checkpoint(out_dir / CHECKPOINT, kind=model_cfg.model)
        check_same_data(ckpt, batches.fingerprint, out_dir / CHECKPOINT)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["opt"])
        if disc is not None:
            disc.load_state_dict(ckpt["disc"])
            opt_d.load_state_dict(ckpt["opt_d"])
        if "scaler" in ckpt:
            scaler.load_state_dict(ckpt["scaler"])
        history, start_epoch = ckpt["history"], ckpt["epoch"]
        torch.set_rng_state(ckpt["rng"][rank] if rank < len(ckpt["rng"]) else ckpt["rng"][0])
        cuda_rng = ckpt.get("cuda_rng") or []
        if cuda_rng and device.type == "cuda":   # the GPU's generator too, so a resumed GPU run repeats
            torch.cuda.set_rng_state(cuda_rng[rank] if rank < len(cuda_rng) else cuda_rng[0], device)
    if start_epoch == 0:
        model.prepare(inputs)                    # statistics, codebooks from data (feature models)

    if world > 1:   # wrapped after resuming: DDP starts every rank from rank 0's weights
        parts = parts._replace(net=DistributedDataParallel(model, find_unused_parameters=False),
                               net_d=DistributedDataParallel(disc) if disc is not None else None, world=world)
    total = cfg.epochs * batches.steps
    for epoch in range(start_epoch, cfg.epochs):
        g = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch * 1_009 + rank)
        order = batches.order(epoch, g)
        model.train()
        if disc is not None:
            disc.train()
        bar = progress_bar(range(batches.steps), desc=f"{model_cfg.model} epoch {epoch + 1}/{cfg.epochs}",
                           disable=not progress or rank != 0, leave=False)
        t0 = time.time()
        for i in bar:
            step = epoch * batches.steps + i
            x_in, x, entropy = batches.batch(order[i * cfg.batch_size:(i + 1) * cfg.batch_size], g, device)
            progress_t = step / max(1, total - 1)
            lam = lambda_at(progress_t, cfg.lambda_max, cfg.schedule)
            lr = lr_at(progress_t, cfg.lr, cfg.lr_schedule)
            for group in [*opt.param_groups, *(opt_d.param_groups if opt_d is not None else [])]:
                group["lr"] = lr
            adv_on = disc is not None and step >= cfg.disc_start * total and cfg.disc_weight > 0

            logs = train_step(parts, x_in, lam, adv_on, target=x, entropy=entropy)
            check_finite_loss(logs["loss"], step, epoch, batches.steps, cfg.epochs, world, out_dir)
            logs["lr"] = lr
            for k, v in logs.items():
                history.setdefault(k, []).append(v)
            if rank == 0 and progress:
                bar.set_postfix(loss=f"{logs['loss']:.4f}", lam=f"{lam:.2f}", lr=f"{lr:.1e}",
                                share="/".join(f"{logs.get(f'share_{r}', 0):.2f}" for r in range(model_cfg.num_levels)))
        history.setdefault("epoch_seconds", []).append(time.time() - t0)
        if eval_due(cfg, epoch) and rank == 0:
            history.setdefault("eval", []).append(held_out_point(epoch, DetectorScorer(model, device=device),
                                                                 eval_set))
            model.train()

        # 5. checkpoint at the end of every epoch (rank 0 only, atomically)
        if out_dir is not None:
            rng = [torch.get_rng_state()]
            cuda_rng = [torch.cuda.get_rng_state(device)] if device.type == "cuda" else []
            if world > 1:
                rng = [torch.empty_like(rng[0]) for _ in range(world)]
                dist.all_gather_object(rng, torch.get_rng_state())
                if cuda_rng:
                    gathered = [None] * world
                    dist.all_gather_object(gathered, cuda_rng[0])
                    cuda_rng = gathered
            if rank == 0:
                out_dir.mkdir(parents=True, exist_ok=True)
                adversary = {"disc": disc.state_dict(), "opt_d": opt_d.state_dict()} if disc is not None else {}
                save_atomic({"model": model.state_dict(), **adversary, "opt": opt.state_dict(),
                             "scaler": scaler.state_dict(), "epoch": epoch + 1, "history": history, "rng": rng,
                             "cuda_rng": cuda_rng, "model_config": asdict(model_cfg), "train_config": asdict(cfg),
                             "data_fingerprint": batches.fingerprint}, out_dir / CHECKPOINT)
        if epoch_callback is not None and rank == 0:
            epoch_callback(epoch, model)
    return model.eval(), history


def check_eval_set(cfg: TrainConfig, eval_set) -> None:
    """ValueError when ``cfg.eval_every`` asks for held-out evaluation and no ``eval_set`` is given."""
    if cfg.eval_every > 0 and eval_set is None:
        raise ValueError(f"eval_every={cfg.eval_every} needs eval_set: the labelled images to score during training")


def eval_due(cfg: TrainConfig, epoch: int) -> bool:
    """Whether held-out evaluation runs after ``epoch`` (0-based): every ``cfg.eval_every`` epochs and
    after the last one."""
    return cfg.eval_every > 0 and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs)


def held_out_point(epoch: int, scorer, eval_set) -> dict:
    """One point of the learning curve: {epoch (1-based, finished), image_auroc, pixel_auroc} of
    ``scorer`` on the labelled ImageSet ``eval_set``, means over categories as ``evaluate`` gives them
    (:func:`pvqae_lib.engine.scorers.per_category`).

    The run's test split, for monitoring only: nothing reads these numbers to stop training or pick
    a checkpoint, so they do not leak the test set into the model. They are cheap on purpose:
    S_recon, the reconstruction error without a prior (the prior is trained after the
    autoencoder), so they track the autoencoder, not the finished S = S_prior x S_recon. The
    scoring runs in eval mode and leaves the random number generator as it found it, so a run with
    evaluation trains exactly as one without.
    """
    with torch.random.fork_rng(devices=[]):
        sc = scorer.score(eval_set)
    result = per_category(sc, eval_set)
    return {"epoch": epoch + 1, "image_auroc": result["image_auroc"], "pixel_auroc": result["pixel_auroc"]}


def check_finite_loss(loss: float, step: int, epoch: int, steps_per_epoch: int, epochs: int, world: int,
                      out_dir: Path | None) -> None:
    """TrainingDiverged, naming the step, when the loss of any rank is NaN or infinite (before the
    epoch's checkpoint is written, so the one on disk is the last good epoch's)."""
    bad = not math.isfinite(loss)
    if world > 1:     # every rank stops together
        flag = torch.tensor([float(bad)], device="cpu" if dist.get_backend() == "gloo" else "cuda")
        dist.all_reduce(flag)
        bad = flag.item() > 0
    if bad:
        kept = (f"{out_dir / CHECKPOINT} keeps epoch {epoch}, the last good one; lower --lr or --lambda-max and "
                f"train again with --force" if out_dir is not None and epoch > 0
                else "no epoch finished; lower --lr or --lambda-max")
        in_epoch = f"step {step - epoch * steps_per_epoch + 1}/{steps_per_epoch}"
        raise TrainingDiverged(f"training stopped: the loss became {loss} at step {step + 1} "
                               f"(epoch {epoch + 1}/{epochs}, {in_epoch}); {kept}")


class StepParts(NamedTuple):
    """What one training step touches (DDP-wrapped ``net``/``net_d`` and the bare modules); made by
    :func:`build_trainer`. ``disc``, ``net_d`` and ``opt_d`` are None for a detector no
    discriminator judges (the feature models: a feature map is no image to judge)."""
    net: torch.nn.Module
    model: torch.nn.Module
    disc: torch.nn.Module | None
    net_d: torch.nn.Module | None
    opt: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer | None
    scaler: torch.amp.GradScaler
    cfg: TrainConfig
    model_cfg: ModelConfig
    use_amp: bool
    world: int


ADAM_BETAS = (0.5, 0.9)    # VQGAN's (Esser et al. 2021), for the pixel autoencoder and its discriminator


def build_trainer(model_cfg: ModelConfig, cfg: TrainConfig, device=None, seed: int | None = None) -> StepParts:
    """Everything :func:`train_step` needs, built one way for the training loop, ``benchmark`` and
    the chapters: the detector (:func:`pvqae_lib.nn.factory.build_model`), the patch discriminator
    when the detector is judged by one (``model.adversarial``: the pixel models, with Adam's betas
    :data:`ADAM_BETAS` for both, as VQGAN; the others Adam's defaults), and the AMP gradient scaler
    (enabled where ``cfg.amp`` and the device is CUDA). ``net``/``net_d`` are the bare modules
    (``train_autoencoder`` wraps them in DistributedDataParallel under torchrun). With ``seed``,
    ``torch.manual_seed(seed)`` first, so the initial weights are reproducible.

    ``parts = build_trainer(model_cfg, train_cfg, "cpu")`` then ``train_step(parts, x, lam, adv_on)``.
    """
    device = torch.device(device or "cpu")
    if seed is not None:
        torch.manual_seed(seed)
    model = build_model(model_cfg).to(device)
    model.input_noise = cfg.feature_noise if hasattr(model, "input_noise") else 0.0
    disc = opt_d = None
    if model.adversarial:
        disc = PatchDiscriminator(width=max(16, model_cfg.width * 2)).to(device)
        opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr, betas=ADAM_BETAS)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, **({"betas": ADAM_BETAS} if model.adversarial else {}))
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    return StepParts(model, model, disc, disc, opt, opt_d, scaler, cfg, model_cfg, use_amp, 1)


def train_step(p: StepParts, x, lam: float, adv_on: bool, target=None, entropy: torch.Tensor | None = None) -> dict:
    """One step: the detector on L_VQ + w·L_ADV + λ·L_Budget, its codebook upkeep, then the
    discriminator (if it has one). The detector sees ``x`` and rebuilds ``model.target(target)``
    (default ``x``; for a pixel model the image itself, the discriminator's real images). The
    reconstruction term is the mean squared error, or with ``cfg.restore_anomalies`` LFQUIAD's
    Eq. 2, (1-β₁)·MSE + β₁·(1-SSIM) with β₁ = ``cfg.ssim_weight``
    (:func:`pvqae_lib.nn.ssim.reconstruction_loss`). ``entropy`` (B, h, w) is the budget's H of each
    coarse patch (default: measured on ``x``, which must then be images)."""
    model, model_cfg = p.model, p.model_cfg
    target = x if target is None else target
    device = next(model.parameters()).device
    patch = model_cfg.coarse_stride
    with torch.autocast(device.type, dtype=torch.float16, enabled=p.use_amp):
        out = p.net(x)
        if p.cfg.restore_anomalies:                                             # LFQUIAD Eq. 2: MSE and SSIM
            rec = reconstruction_loss(out.recon, target, p.cfg.ssim_weight)
        else:
            rec = F.mse_loss(out.recon.float(), model.target(target))          # ||x̂ - x||², per value
        if model.routes:
            entropy = patch_entropy(x, patch) if entropy is None else entropy
            budget = budget_loss(out.scores.float(), entropy, patch, values_per_patch=model.budget_values_per_patch)
        else:
            budget = rec.new_zeros(())
        g_loss, adv_weight = rec.new_zeros(()), 0.0
        if adv_on:
            g_loss = generator_loss(p.disc(out.recon).float())                  # D unwrapped: no DDP sync
            adv_weight = p.cfg.disc_weight * adaptive_weight(rec, g_loss, model.decoder.last_layer)
        loss = total_loss(rec, out.vq_loss.float(), budget, lam, g_loss if adv_on else None, adv_weight)
    p.opt.zero_grad(set_to_none=True)
    p.scaler.scale(loss).backward()
    p.scaler.step(p.opt)
    for j, (r, quantizer) in enumerate(zip(model.used, model.quantizers)):   # dead-code restarts
        weight = None
        if model.routes:   # only the positions routed to level r count as its usage
            weight = routed_share(out.scores, r, out.codes[j].shape[-2:])
        quantizer.update_codebook(out.codes[j], out.indices[j], weight)
        if p.world > 1:   # restarts draw local samples: keep every rank's codebook identical
            dist.broadcast(quantizer.codebook.weight.data, 0)
            dist.broadcast(quantizer.usage, 0)
    d_logs = {}
    if adv_on:
        with torch.autocast(device.type, dtype=torch.float16, enabled=p.use_amp):
            d_loss, d_logs = discriminator_loss(p.net_d(target).float(), p.net_d(out.recon.detach()).float())
        p.opt_d.zero_grad(set_to_none=True)
        p.scaler.scale(d_loss).backward()
        p.scaler.step(p.opt_d)
    p.scaler.update()
    adversary = {"g_loss": g_loss.item()} if p.disc is not None else {}
    return {"loss": loss.item(), "rec": rec.item(), "budget": budget.item(), "lambda": lam,
            "vq": out.vq_loss.item(), **adversary,
            **{k: float(v) for k, v in out.logs.items()}, **{k: float(v) for k, v in d_logs.items()}}


@torch.no_grad()
def collect_budgets(model, inputs, batch_size: int = 64) -> torch.Tensor:
    """The router's hard budget maps (M, h, w) of a detector's inputs (images (M, 3, H, W), or their
    pyramid's maps), model in eval mode: what the Budget Prior Transformer learns."""
    model.eval()
    device = model.device
    return torch.cat([model(batch_of(inputs, slice(i, i + batch_size), device)).scores.argmax(1).cpu()
                      for i in range(0, num_inputs(inputs), batch_size)])
