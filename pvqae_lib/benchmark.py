"""Cost of the method: training throughput, inference latency and peak memory, PVQAE against
the VQ-VAE baseline at several image sizes, in one run (``python -m pvqae_lib benchmark``).

Each (model, size) pair runs in a fresh process, so its peak memory (resident set size on the CPU,
``torch.cuda.max_memory_allocated`` on a GPU) is its own.
"""
from __future__ import annotations

import multiprocessing as mp
import queue as queue_module
import resource
import statistics
import time
from dataclasses import replace

import torch

from .config import get_profile
from .discriminator import PatchDiscriminator
from .model import build_model
from .prior import BudgetPrior
from .scoring import anomaly_maps
from .train import StepParts, train_step


WARMUP_STEPS = 3
CHILD_POLL_SECONDS = 0.5


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


def _measure(model_name: str, size: int, batch_size: int, steps: int, device: str, profile: str) -> dict:
    """Median time of ``steps`` full training steps (autoencoder + discriminator) after a warm-up, and of
    scoring one batch (``steps // 3`` times: PVQAE scoring runs the prior over every mask)."""
    torch.manual_seed(0)
    dev = torch.device(device)
    p = get_profile(profile)
    mcfg = replace(p.model, model=model_name, image_size=size)
    tcfg = p.train
    model = build_model(mcfg).to(dev)
    disc = PatchDiscriminator(width=max(16, mcfg.width * 2)).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=tcfg.lr)
    opt_d = torch.optim.Adam(disc.parameters(), lr=tcfg.lr)
    use_amp = tcfg.amp and dev.type == "cuda"
    parts = StepParts(model, model, disc, disc, opt, opt_d, torch.amp.GradScaler(dev.type, enabled=use_amp),
                      tcfg, mcfg, use_amp, 1)
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
    if dev.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated(dev) / 2 ** 20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024     # KiB on Linux
    return {"model": model_name, "image_size": size, "batch_size": batch_size, "step_seconds": round(step_s, 4),
            "train_images_per_second": round(batch_size / step_s, 2), "inference_ms_per_image": round(infer_ms, 2),
            "peak_memory_mb": round(peak_mb, 1), "parameters": sum(q.numel() for q in model.parameters()),
            "memory_kind": "cuda max allocated" if dev.type == "cuda" else "process peak RSS"}


def _child(queue, *args):
    """Runs in the fresh process: ('ok', row), or ('error', the first line of what went wrong)."""
    try:
        queue.put(("ok", _measure(*args)))
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


def run_benchmark(sizes, batch_size: int, steps: int, device, profile: str = "quick") -> dict:
    """Measure both models at every size; prints a table and returns rows plus PVQAE/VQ-VAE step ratios."""
    ctx = mp.get_context("spawn")
    rows = []
    for size in sizes:
        for name in ("pvqae", "vqvae"):
            queue = ctx.Queue()
            proc = ctx.Process(target=_child, args=(queue, name, size, batch_size, steps, str(device), profile))
            proc.start()
            try:
                row = _result_of(proc, queue, f"{name} at {size} px")
            finally:
                proc.join(timeout=10)
                if proc.is_alive():
                    proc.kill()
                    proc.join()
            rows.append(row)
            print(f"{name:6s} {size:4d}px  {row['train_images_per_second']:8.2f} img/s train  "
                  f"{row['inference_ms_per_image']:8.2f} ms/img infer  {row['peak_memory_mb']:8.1f} MB", flush=True)
    ratios = {}
    for size in sizes:
        step = {r["model"]: r["step_seconds"] for r in rows if r["image_size"] == size}
        ratios[str(size)] = round(step["pvqae"] / step["vqvae"], 3)
        print(f"{size}px: PVQAE step / VQ-VAE step = {ratios[str(size)]:.3f}")
    return {"rows": rows, "step_ratio_pvqae_over_vqvae": ratios, "device": str(device), "profile": profile,
            "steps": steps}
