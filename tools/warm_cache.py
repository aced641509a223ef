"""Train the models the chapters share, and chapter 5's sweep models, once, before the chapters run (``make warm``).

Chapters get their models from ``pv.book.book_model``, which trains a configuration once and
keeps it in the disk cache ($PVQAE_CACHE, else ~/.cache/pvqae_book). Running this first makes each
chapter's time its own work; the shared training time is printed here, so the whole book's cost
is this plus the chapters. One line per model is printed (flushed) as soon as it is trained or
loaded, with its seconds, so a long first run shows its progress.
"""
import time

import torch

import pvqae_lib as pv


def say(line: str) -> None:
    print(line, flush=True)       # progress as it happens, also when stdout is a pipe or a log


start = time.time()
profile = pv.get_profile()
device = pv.get_device()
models, sweeps = pv.book.BOOK_MODELS, pv.widgets.lam.sweep_settings()
say(f"profile={profile.name} device={device} cache={pv.paths.cache_dir()} "
    f"torch threads={torch.get_num_threads()}: "
    f"{len(models)} shared models, then {len(sweeps)} sweep models (cached ones load in seconds)")
for i, (model, overrides) in enumerate(models, 1):
    t0 = time.time()
    pv.book.book_model(profile, model, device=device, progress=False, **overrides)
    say(f"[{i}/{len(models)}] {model} {overrides or ''}".ljust(62) + f"{time.time() - t0:7.1f} s")
# chapter 5's λ sweeps (schedules and λmax over three seeds): short runs, but eleven of them; the
# same calls as pv.book.warm_book_cache and pv.widgets.lam.warm_sweeps, one model at a time so that
# each prints its line when it is ready
sweep = pv.widgets.lam.sweep_profile(profile)
for i, run in enumerate(sweeps, 1):
    t0 = time.time()
    pv.book.book_model(sweep, "pvqae", progress=False, prior_kinds=("universal",), **run)
    say(f"[{i}/{len(sweeps)}] sweep {run}".ljust(62) + f"{time.time() - t0:7.1f} s")
say(f"shared models ready in {time.time() - start:.1f} s")
