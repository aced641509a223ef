"""Train the models the chapters share, and chapter 5's sweep models, once, before the chapters run (``make warm``).

    .venv/bin/python tools/warm_cache.py [--jobs N]

Chapters get their models from ``pv.book.book_model``, which trains a configuration once and
keeps it in the disk cache ($PVQAE_CACHE, else ~/.cache/pvqae_book). Running this first makes each
chapter's time its own work; the shared training time is printed here, so the whole book's cost
is this plus the chapters. One line per model is printed (flushed) as soon as it is trained or
loaded, with its seconds, so a long first run shows its progress.

On a CPU the models train in ``--jobs`` processes at once (default: the cores divided by torch's
threads per process, so two on a 2-core machine with ``OMP_NUM_THREADS=1``): one thread each uses
both cores, where one process with one thread leaves a core idle. Each model is the same as when
trained alone (the same seed, the same thread count, so the same cache entry). On a GPU one process
trains them in turn.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed

import torch

import pvqae_lib as pv


def say(line: str) -> None:
    print(line, flush=True)       # progress as it happens, also when stdout is a pipe or a log


def default_jobs(device: str, cores: int | None, threads: int) -> int:
    """Processes that fill the machine: one on a GPU (the models share it), else the cores divided
    by the torch threads each process runs (at least one)."""
    if device != "cpu":
        return 1
    return max(1, (cores or 1) // max(1, threads))


def work_list() -> list[tuple[str, str, dict]]:
    """Every model to train, as (label, model, overrides): the shared ones, then chapter 5's λ sweeps
    (schedules and λmax over three seeds: short runs, but eleven of them; the same calls as
    ``pv.book.warm_book_cache`` and ``pv.widgets.lam.warm_sweeps``). ``model`` 'sweep' marks a sweep."""
    shared = [(f"{model} {overrides or ''}", model, overrides) for model, overrides in pv.book.BOOK_MODELS]
    sweeps = [(f"sweep {run}", "sweep", run) for run in pv.widgets.lam.sweep_settings()]
    return shared + sweeps


def train_one(model: str, overrides: dict, threads: int) -> float:
    """Train (or load) one model into the cache; its seconds. Runs in a worker process as well."""
    torch.set_num_threads(threads)
    t0 = time.time()
    profile = pv.get_profile()
    if model == "sweep":
        pv.book.book_model(pv.widgets.lam.sweep_profile(profile), "pvqae", progress=False,
                           prior_kinds=("universal",), **overrides)
    else:
        pv.book.book_model(profile, model, device=pv.get_device(), progress=False, **overrides)
    return time.time() - t0


def main(argv=None) -> int:
    device = str(pv.get_device())
    threads = torch.get_num_threads()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=default_jobs(device, os.cpu_count(), threads),
                        help="models trained at once, one process each (default: %(default)s here)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    start = time.time()
    work = work_list()
    say(f"profile={pv.get_profile().name} device={device} cache={pv.paths.cache_dir()} "
        f"torch threads={threads}, {args.jobs} at once: {len(work)} models "
        f"({len(pv.book.BOOK_MODELS)} shared, {len(work) - len(pv.book.BOOK_MODELS)} sweeps; "
        "cached ones load in seconds)")
    if args.jobs == 1:
        for i, (label, model, overrides) in enumerate(work, 1):
            say(f"[{i}/{len(work)}] {label}".ljust(66) + f"{train_one(model, overrides, threads):7.1f} s")
    else:
        # spawn, not fork: a forked torch process can hang in OpenMP; each worker imports the library
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(train_one, model, overrides, threads): label for label, model, overrides in work}
            for i, done in enumerate(as_completed(futures), 1):
                say(f"[{i}/{len(work)}] {futures[done]}".ljust(66) + f"{done.result():7.1f} s")
    say(f"shared models ready in {time.time() - start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
