"""Training loops (Chapter 5): the autoencoder with progressive budget learning, then the prior.

One readable function, in order: seed, build, resume, then a loop that steps, logs and writes a
checkpoint at the end of every epoch. Runs on one process, or under ``torchrun`` with
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
from torch.utils.data.distributed import DistributedSampler

from ..config import ModelConfig, TrainConfig
from ..data import augment
from ..data.anomaly import OBJECT_CATEGORIES, paint_anomalies
from ..nn.budget import budget_loss, lambda_at, patch_entropy
from ..nn.discriminator import PatchDiscriminator, adaptive_weight, discriminator_loss, generator_loss
from ..nn.model import build_model
from ..nn.routing import routed_share
from ..nn.ssim import reconstruction_loss
from ..progress import progress_bar
from ..storage import load_weights, save_atomic
from .scorers import PixelScorer, per_category

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


def data_fingerprint(tensor: torch.Tensor) -> str:
    """A short content hash of the training data (images, or a pyramid's coarsest maps): what a
    checkpoint records it was trained on, so that ``--resume`` cannot continue on other data."""
    import hashlib
    return hashlib.sha256(tensor.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


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
                      device=None, progress: bool = True, epoch_callback=None, eval_set=None):
    """Train PVQAE (or the VQVAE baseline) on the normal images of ``data`` (an ImageSet).

    Loss per step (Sec. III-B.2): L = L_VQ + w_adv·L_ADV + λ(t)·L_Budget, with λ(t) rising from
    0 to λmax by ``cfg.schedule``. With ``cfg.restore_anomalies`` (LFQUIAD's reconstructive
    subnetwork, after DRÆM) about half the inputs carry synthetic anomalies
    (:func:`pvqae_lib.data.anomaly.paint_anomalies`), the reconstruction target is the normal image and
    the reconstruction term is LFQUIAD's Eq. 2 with its SSIM term (``cfg.ssim_weight``).
    Returns (model, history): history is a dict of per-step lists
    (loss, rec, budget, lambda, share_r, perplexity, ...). ``epoch_callback(epoch, model)`` runs after
    each epoch (chapter 5 uses it to snapshot allocation maps). With ``cfg.eval_every`` > 0 the
    labelled ImageSet ``eval_set`` is scored as :func:`held_out_point` says into ``history['eval']``.
    """
    device = torch.device(device or "cpu")
    check_eval_set(cfg, eval_set)
    rank, world = distributed_context(device)
    out_dir = Path(out_dir) if out_dir else None
    torch.manual_seed(cfg.seed + rank)

    # 1. build
    parts = build_trainer(model_cfg, cfg, device)
    model, disc, opt, opt_d, scaler = parts.model, parts.disc, parts.opt, parts.opt_d, parts.scaler
    history, start_epoch = {}, 0

    # 2. resume from the last finished epoch
    fingerprint = data_fingerprint(data.images)
    if resume:
        ckpt = load_checkpoint(out_dir / CHECKPOINT, kind=model_cfg.model)
        check_same_data(ckpt, fingerprint, out_dir / CHECKPOINT)
        model.load_state_dict(ckpt["model"])
        disc.load_state_dict(ckpt["disc"])
        opt.load_state_dict(ckpt["opt"])
        opt_d.load_state_dict(ckpt["opt_d"])
        scaler.load_state_dict(ckpt["scaler"])
        history, start_epoch = ckpt["history"], ckpt["epoch"]
        torch.set_rng_state(ckpt["rng"][rank] if rank < len(ckpt["rng"]) else ckpt["rng"][0])
        cuda_rng = ckpt.get("cuda_rng") or []
        if cuda_rng and device.type == "cuda":   # the GPU's generator too, so a resumed GPU run repeats
            torch.cuda.set_rng_state(cuda_rng[rank] if rank < len(cuda_rng) else cuda_rng[0], device)

    if world > 1:   # wrapped after resuming: DDP starts every rank from rank 0's weights
        parts = parts._replace(net=DistributedDataParallel(model, find_unused_parameters=False),
                               net_d=DistributedDataParallel(disc), world=world)
    sampler = DistributedSampler(range(len(data)), num_replicas=world, rank=rank, shuffle=True,
                                 seed=cfg.seed, drop_last=True)
    is_object = torch.tensor([data.category_names[c] in OBJECT_CATEGORIES for c in data.categories.tolist()])
    steps_per_epoch = max(1, len(sampler) // cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    for epoch in range(start_epoch, cfg.epochs):
        sampler.set_epoch(epoch)
        order = torch.tensor(list(sampler))
        g = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch * 1_009 + rank)
        model.train(), disc.train()
        bar = progress_bar(range(steps_per_epoch), desc=f"{model_cfg.model} epoch {epoch + 1}/{cfg.epochs}",
                           disable=not progress or rank != 0, leave=False)
        t0 = time.time()
        for i in bar:
            step = epoch * steps_per_epoch + i
            index = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            x = augment(data.images[index], g) if cfg.augment else data.images[index]
            x_in = paint_anomalies(x, g, is_object[index].tolist())[0] if cfg.restore_anomalies else x
            x, x_in = x.to(device, non_blocking=True), x_in.to(device, non_blocking=True)
            progress_t = step / max(1, total - 1)
            lam = lambda_at(progress_t, cfg.lambda_max, cfg.schedule)
            lr = lr_at(progress_t, cfg.lr, cfg.lr_schedule)
            for group in [*opt.param_groups, *opt_d.param_groups]:
                group["lr"] = lr
            adv_on = step >= cfg.disc_start * total and cfg.disc_weight > 0

            logs = train_step(parts, x_in, lam, adv_on, target=x)
            check_finite_loss(logs["loss"], step, epoch, steps_per_epoch, cfg.epochs, world, out_dir)
            logs["lr"] = lr
            for k, v in logs.items():
                history.setdefault(k, []).append(v)
            if rank == 0 and progress:
                bar.set_postfix(loss=f"{logs['loss']:.4f}", lam=f"{lam:.2f}", lr=f"{lr:.1e}",
                                share="/".join(f"{logs.get(f'share_{r}', 0):.2f}" for r in range(model_cfg.num_levels)))
        history.setdefault("epoch_seconds", []).append(time.time() - t0)
        if eval_due(cfg, epoch) and rank == 0:
            history.setdefault("eval", []).append(held_out_point(epoch, PixelScorer(model, device=device), eval_set))
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
                save_atomic({"model": model.state_dict(), "disc": disc.state_dict(), "opt": opt.state_dict(),
                             "opt_d": opt_d.state_dict(), "scaler": scaler.state_dict(), "epoch": epoch + 1,
                             "history": history, "rng": rng, "cuda_rng": cuda_rng, "model_config": asdict(model_cfg),
                             "train_config": asdict(cfg), "data_fingerprint": fingerprint}, out_dir / CHECKPOINT)
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


def held_out_point(epoch: int, scorer, eval_set, levels=None) -> dict:
    """One point of the learning curve: {epoch (1-based, finished), image_auroc, pixel_auroc} of
    ``scorer`` on the labelled ImageSet ``eval_set`` (``levels``: its feature pyramid, if the scorer
    is a FeatureScorer), means over categories as ``evaluate`` gives them
    (:func:`pvqae_lib.engine.scorers.per_category`).

    The run's test split, for monitoring only: nothing reads these numbers to stop training or pick
    a checkpoint, so they do not leak the test set into the model. They are cheap on purpose:
    S_recon, the reconstruction error without a prior (the prior is trained after the
    autoencoder), so they track the autoencoder, not the finished S = S_prior x S_recon. The
    scoring runs in eval mode and leaves the random number generator as it found it, so a run with
    evaluation trains exactly as one without.
    """
    with torch.random.fork_rng(devices=[]):
        sc = scorer.score(eval_set) if levels is None else scorer.score_levels(levels, eval_set.categories,
                                                                               eval_set.images.shape[-1])
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
    :func:`build_trainer`."""
    net: torch.nn.Module
    model: torch.nn.Module
    disc: torch.nn.Module
    net_d: torch.nn.Module
    opt: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    cfg: TrainConfig
    model_cfg: ModelConfig
    use_amp: bool
    world: int


ADAM_BETAS = (0.5, 0.9)    # VQGAN's (Esser et al. 2021), for the autoencoder and the discriminator


def build_trainer(model_cfg: ModelConfig, cfg: TrainConfig, device=None, seed: int | None = None) -> StepParts:
    """Everything :func:`train_step` needs, built one way for the training loop, ``benchmark`` and
    the chapters: the model (:func:`pvqae_lib.nn.model.build_model`), the patch discriminator, an Adam
    optimizer for each (lr ``cfg.lr``, betas :data:`ADAM_BETAS`), and the AMP gradient scaler
    (enabled where ``cfg.amp`` and the device is CUDA). ``net``/``net_d`` are the bare modules
    (``train_autoencoder`` wraps them in DistributedDataParallel under torchrun). With ``seed``,
    ``torch.manual_seed(seed)`` first, so the initial weights are reproducible.

    ``parts = build_trainer(model_cfg, train_cfg, "cpu")`` then ``train_step(parts, x, lam, adv_on)``.
    """
    device = torch.device(device or "cpu")
    if seed is not None:
        torch.manual_seed(seed)
    model = build_model(model_cfg).to(device)
    disc = PatchDiscriminator(width=max(16, model_cfg.width * 2)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=ADAM_BETAS)
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr, betas=ADAM_BETAS)
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    return StepParts(model, model, disc, disc, opt, opt_d, scaler, cfg, model_cfg, use_amp, 1)


def train_step(p: StepParts, x: torch.Tensor, lam: float, adv_on: bool, target: torch.Tensor | None = None) -> dict:
    """One step: the autoencoder on L_VQ + w·L_ADV + λ·L_Budget, its codebook upkeep, then the
    discriminator. The model sees ``x`` and rebuilds ``target`` (default ``x``), the discriminator's real images.
    The reconstruction term is the mean squared error, or with ``cfg.restore_anomalies`` LFQUIAD's
    Eq. 2, (1-β₁)·MSE + β₁·(1-SSIM) with β₁ = ``cfg.ssim_weight`` (:func:`pvqae_lib.nn.ssim.reconstruction_loss`)."""
    device, model_cfg = x.device, p.model_cfg
    target = x if target is None else target
    routed = model_cfg.model == "pvqae"
    patch = model_cfg.coarse_stride
    with torch.autocast(device.type, dtype=torch.float16, enabled=p.use_amp):
        out = p.net(x)
        if p.cfg.restore_anomalies:                                             # LFQUIAD Eq. 2: MSE and SSIM
            rec = reconstruction_loss(out.recon, target, p.cfg.ssim_weight)
        else:
            rec = F.mse_loss(out.recon.float(), target)                          # ||x̂ - x||², per value
        budget = budget_loss(out.scores.float(), patch_entropy(x, patch), patch) if routed else x.new_zeros(())
        g_loss, adv_weight = x.new_zeros(()), 0.0
        if adv_on:
            g_loss = generator_loss(p.disc(out.recon).float())                  # D unwrapped: no DDP sync
            adv_weight = p.cfg.disc_weight * adaptive_weight(rec, g_loss, p.model.decoder.last_layer)
        loss = total_loss(rec, out.vq_loss.float(), budget, lam, g_loss if adv_on else None, adv_weight)
    p.opt.zero_grad(set_to_none=True)
    p.scaler.scale(loss).backward()
    p.scaler.step(p.opt)
    for r, quantizer in enumerate(p.model.quantizers):                          # dead-code restarts
        weight = None
        if routed:   # only the positions routed to level r count as its usage
            weight = routed_share(out.scores, r, out.codes[r].shape[-2:])
        quantizer.update_codebook(out.codes[r], out.indices[r], weight)
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
    return {"loss": loss.item(), "rec": rec.item(), "budget": budget.item(), "lambda": lam,
            "vq": out.vq_loss.item(), "g_loss": g_loss.item(),
            **{k: float(v) for k, v in out.logs.items()}, **{k: float(v) for k, v in d_logs.items()}}


@torch.no_grad()
def collect_budgets(model, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """The router's hard budget maps (M, h, w) for images (M, 3, H, W), model in eval mode."""
    model.eval()
    device = next(model.parameters()).device
    return torch.cat([model(images[i:i + batch_size].to(device)).scores.argmax(1).cpu()
                      for i in range(0, len(images), batch_size)])
