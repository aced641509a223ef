"""Cost of the method: training throughput, inference latency and peak memory, in one run
(``python -m pvqae_lib benchmark``), for every backbone asked for with ``--backbones``:

- ``pixel``: PVQAE against the VQ-VAE baseline at several image sizes (``--sizes``), a full
  training step each (autoencoder + discriminator);
- a frozen feature pyramid (e.g. ``efficientnet-lite0``): PVQAE and PatchCore at one size
  (``--feature-size``, default the backbone's 224 px). Feature extraction (images/s through the
  frozen network) is timed apart from what sits above it: PVQAE's training step on cached
  features, PatchCore's fit (coreset) per training image; scoring is timed end to end
  (extraction + model) and for the model alone.

Each measurement runs in a fresh process, so its peak memory (resident set size on the CPU,
``torch.cuda.max_memory_allocated`` on a GPU) is its own; a child that fails or dies is reported
(:class:`BenchmarkError`), never waited for.

The JSON ``benchmark`` writes (``--json``)::

    {"rows": [                      # pixel backbone, one per (model, size); [] without --backbones pixel
        {"model": "pvqae" | "vqvae", "backbone": "pixel", "image_size", "batch_size", "step_seconds",
         "train_images_per_second", "inference_ms_per_image", "peak_memory_mb", "parameters",
         "memory_kind"}, ...],
     "step_ratio_pvqae_over_vqvae": {"64": 1.29, ...},     # per pixel size; {} without pixel
     "feature_rows": [              # one per (feature backbone, model)
        {"backbone": "efficientnet-lite0", "model": "pvqae" | "patchcore", "image_size", "batch_size",
         "extract_images_per_second",         # the frozen network alone
         "train_images_per_second",           # pvqae: autoencoder steps on cached features; patchcore: null
         "step_seconds",                      # pvqae: one such step (median); patchcore: null
         "fit_images", "fit_seconds_per_image",   # patchcore: coreset fit on fit_images images; pvqae: null
         "inference_ms_per_image",            # scoring end to end: extraction + model (+ prior for pvqae)
         "model_inference_ms_per_image",      # the model alone, on extracted features
         "peak_memory_mb", "memory_kind", "parameters"}, ...],
     "backbones": [...], "feature_size": null (the backbone's default) or --feature-size, "fit_images": 160,
     "device", "profile", "steps"}           # cmd_benchmark adds git_commit, command, machine
"""
from __future__ import annotations

import multiprocessing as mp
import queue as queue_module
import resource
import statistics
import time
from dataclasses import replace

import torch

from ..config import get_profile, with_backbone
from ..nn.backbones import extract_features, load_backbone
from ..nn.detector import batch_of, num_inputs
from ..nn.patchcore import PatchCore, PatchCoreConfig
from ..nn.prior import BudgetPrior
from .scoring import anomaly_maps
from .train import build_trainer, train_step

WARMUP_STEPS = 3
CHILD_POLL_SECONDS = 0.5
FEATURE_MODELS = ("pvqae", "patchcore")       # what a feature backbone's rows measure


class BenchmarkError(ValueError):
    """A measurement process failed or died (one line: which model and size, and why)."""


def _median_seconds(fn, repeats: int, sync) -> float:
    """The median wall time of ``repeats`` calls: robust to a stray pause on a shared machine."""
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _peak_memory(dev: torch.device) -> tuple[float, str]:
    """(peak MB, what was measured): CUDA's max allocated, else this process's peak resident set."""
    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated(dev) / 2 ** 20, "cuda max allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process peak RSS"     # KiB on Linux


def _measure(model_name: str, size: int, batch_size: int, steps: int, device: str, profile: str) -> dict:
    """Median time of ``steps`` full training steps (autoencoder + discriminator) after a warm-up, and of
    scoring one batch (``steps // 3`` times: PVQAE scoring runs the prior over every mask)."""
    torch.manual_seed(0)
    dev = torch.device(device)
    p = get_profile(profile)
    mcfg = replace(p.model, model=model_name, image_size=size)
    tcfg = p.train
    parts = build_trainer(mcfg, tcfg, dev)            # the training loop's own set-up
    model = parts.model
    x = torch.rand(batch_size, 3, size, size, device=dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    model.train()
    for _ in range(WARMUP_STEPS):                     # kernels, allocator and oneDNN caches settle first
        train_step(parts, x, 1.0, True)
    step_s = _median_seconds(lambda: train_step(parts, x, 1.0, True), steps, sync)
    prior = None
    if model_name == "pvqae":
        grid = size // mcfg.coarse_stride
        prior = BudgetPrior(mcfg.num_levels, grid * grid, 1, p.prior).to(dev).eval()
    anomaly_maps(model, x, prior)                                     # warm-up
    infer_ms = _median_seconds(lambda: anomaly_maps(model, x, prior), max(1, steps // 3), sync) / batch_size * 1000
    peak_mb, memory_kind = _peak_memory(dev)
    return {"model": model_name, "backbone": "pixel", "image_size": size, "batch_size": batch_size,
            "step_seconds": round(step_s, 4), "train_images_per_second": round(batch_size / step_s, 2),
            "inference_ms_per_image": round(infer_ms, 2), "peak_memory_mb": round(peak_mb, 1),
            "parameters": sum(q.numel() for q in model.parameters()), "memory_kind": memory_kind}


def _measure_features(backbone_name: str, model_name: str, size: int, batch_size: int, steps: int, device: str,
                      profile: str, fit_images: int) -> dict:
    """One feature-backbone row: extraction images/s, then PVQAE's training step on cached features
    (the training loop's own step, :func:`pvqae_lib.engine.train.train_step`) or PatchCore's fit per
    training image, then scoring ms per image (end to end, and the model alone)."""
    torch.manual_seed(0)
    dev = torch.device(device)
    p = with_backbone(get_profile(profile), backbone_name)
    mcfg = replace(p.model, model=model_name, image_size=size)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    backbone = load_backbone(backbone_name, device=dev)
    x = torch.rand(batch_size, 3, size, size)

    def extract(images):
        return extract_features(backbone, images, batch_size=batch_size, cache=False)

    extract(x)                                                         # warm-up
    extract_s = _median_seconds(lambda: extract(x), steps, sync)
    row = {"backbone": backbone_name, "model": model_name, "image_size": size, "batch_size": batch_size,
           "extract_images_per_second": round(batch_size / extract_s, 2), "train_images_per_second": None,
           "step_seconds": None, "fit_images": None, "fit_seconds_per_image": None}
    levels = extract(x)
    prior = None
    if model_name == "pvqae":
        tcfg = replace(p.train, batch_size=batch_size)
        entropy = torch.rand(batch_size, size // 32, size // 32).to(dev)  # H: its values do not change the cost
        parts = build_trainer(mcfg, tcfg, dev)                        # the training loop's own set-up
        model, inputs = parts.model, batch_of(levels, slice(None), dev)
        model.prepare(levels)
        model.train()
        for _ in range(WARMUP_STEPS):
            train_step(parts, inputs, 1.0, False, entropy=entropy)
        step_s = _median_seconds(lambda: train_step(parts, inputs, 1.0, False, entropy=entropy), steps, sync)
        row.update(step_seconds=round(step_s, 4), train_images_per_second=round(batch_size / step_s, 2))
        grid = size // 32
        prior = BudgetPrior(mcfg.num_levels, grid * grid, 1, p.prior).to(dev).eval()
    else:
        fit_x = torch.rand(fit_images, 3, size, size)
        fit_levels = extract(fit_x)
        sync()
        t0 = time.perf_counter()
        model = PatchCore(PatchCoreConfig(coreset_ratio=mcfg.coreset_ratio)).fit(fit_levels).to(dev)
        sync()
        row.update(fit_images=fit_images, fit_seconds_per_image=round((time.perf_counter() - t0) / fit_images, 5))
        del fit_x, fit_levels
    model.eval()

    def score_model(lv):
        return [anomaly_maps(model, batch_of(lv, slice(i, i + batch_size), dev), prior, size=(size, size))
                for i in range(0, num_inputs(lv), batch_size)]

    score_model(levels)                                                # warm-up
    repeats = max(1, steps // 3) if model_name == "pvqae" else steps   # PVQAE scoring runs the prior
    model_s = _median_seconds(lambda: score_model(levels), repeats, sync)
    total_s = _median_seconds(lambda: score_model(extract(x)), repeats, sync)
    peak_mb, memory_kind = _peak_memory(dev)
    row.update(inference_ms_per_image=round(total_s / batch_size * 1000, 2),
               model_inference_ms_per_image=round(model_s / batch_size * 1000, 2),
               peak_memory_mb=round(peak_mb, 1), memory_kind=memory_kind,
               parameters=sum(q.numel() for q in model.parameters()))
    return row


def _child(queue, measure, *args):
    """Runs in the fresh process: ('ok', row), or ('error', the first line of what went wrong)."""
    try:
        queue.put(("ok", measure(*args)))
    except BaseException as e:       # the parent must hear of every failure, or it would wait forever
        lines = str(e).strip().splitlines()
        queue.put(("error", f"{type(e).__name__}: {lines[0] if lines else ''}".rstrip(": ")))


def _result_of(proc, queue, what: str) -> dict:
    """The child's row; BenchmarkError when it reports an error or dies without a word (never a hang)."""
    while True:
        try:
            status, payload = queue.get(timeout=CHILD_POLL_SECONDS)
            break
        except queue_module.Empty:
            if not proc.is_alive():
                try:                      # it may have put its answer just before exiting
                    status, payload = queue.get(timeout=CHILD_POLL_SECONDS)
                    break
                except queue_module.Empty:
                    raise BenchmarkError(f"benchmark of {what} died without a result "
                                         f"(exit code {proc.exitcode})") from None
    if status != "ok":
        raise BenchmarkError(f"benchmark of {what} failed: {payload}")
    return payload


def _in_child(ctx, what: str, measure, *args) -> dict:
    """``measure(*args)`` in a fresh process; its row."""
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue, measure, *args))
    proc.start()
    try:
        return _result_of(proc, queue, what)
    finally:
        proc.join(timeout=10)
        if proc.is_alive():
            proc.kill()
            proc.join()


def _fmt(x, spec: str) -> str:
    return "n/a" if x is None else format(x, spec)


def run_benchmark(sizes, batch_size: int, steps: int, device, profile: str = "quick", backbones=("pixel",),
                  feature_size: int | None = None, fit_images: int = 160) -> dict:
    """Measure every backbone in ``backbones``: the pixel PVQAE and VQ-VAE at every size, and PVQAE
    and PatchCore on each feature backbone at ``feature_size`` (default: the backbone's profile
    size). Prints a table and returns the rows (the module docstring's JSON)."""
    ctx = mp.get_context("spawn")
    rows, feature_rows = [], []
    if "pixel" in backbones:
        for size in sizes:
            for name in ("pvqae", "vqvae"):
                row = _in_child(ctx, f"{name} at {size} px", _measure, name, size, batch_size, steps, str(device),
                                profile)
                rows.append(row)
                print(f"pixel {name:9s} {size:4d}px  {row['train_images_per_second']:8.2f} img/s train  "
                      f"{row['inference_ms_per_image']:8.2f} ms/img infer  {row['peak_memory_mb']:8.1f} MB", flush=True)
    ratios = {}
    for size in sizes if rows else ():
        step = {r["model"]: r["step_seconds"] for r in rows if r["image_size"] == size}
        ratios[str(size)] = round(step["pvqae"] / step["vqvae"], 3)
        print(f"{size}px: PVQAE step / VQ-VAE step = {ratios[str(size)]:.3f}")
    for backbone in (b for b in backbones if b != "pixel"):
        size = feature_size or with_backbone(get_profile(profile), backbone).model.image_size
        for name in FEATURE_MODELS:
            row = _in_child(ctx, f"{name} on {backbone} at {size} px", _measure_features, backbone, name, size,
                            batch_size, steps, str(device), profile, fit_images)
            feature_rows.append(row)
            fit = (f"{_fmt(row['train_images_per_second'], '8.2f')} img/s train on cached features"
                   if name == "pvqae" else
                   f"{_fmt(row['fit_seconds_per_image'] * 1000, '8.2f')} ms/img coreset fit ({fit_images} images)")
            print(f"{backbone} {name:9s} {size:4d}px  {row['extract_images_per_second']:8.2f} img/s extraction  {fit}  "
                  f"{row['inference_ms_per_image']:8.2f} ms/img scoring ({row['model_inference_ms_per_image']:.2f} "
                  f"model alone)  {row['peak_memory_mb']:8.1f} MB", flush=True)
    return {"rows": rows, "step_ratio_pvqae_over_vqvae": ratios, "feature_rows": feature_rows,
            "backbones": list(backbones), "feature_size": feature_size, "fit_images": fit_images,
            "device": str(device), "profile": profile, "steps": steps}
