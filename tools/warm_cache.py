"""Train the models the chapters share, and chapter 5's sweep models, once, before the chapters run (``make warm``).

Chapters get their models from ``pv.book.book_model``, which trains a configuration once and
keeps it in the disk cache ($PVQAE_CACHE, else ~/.cache/pvqae_book). Running this first makes each
chapter's time its own work; the shared training time is printed here, so the whole book's cost
is this plus the chapters.
"""
import time

import pvqae_lib as pv

start = time.time()
profile = pv.get_profile()
print(f"profile={profile.name} device={pv.get_device()} cache={pv.paths.cache_dir()}")
for name, seconds in pv.book.warm_book_cache(profile, device=pv.get_device()).items():
    print(f"{name:40s} {seconds:7.1f} s")
# chapter 5's λ sweeps (schedules and λmax over three seeds): short runs, but eleven of them
for name, seconds in pv.widgets.lam.warm_sweeps(profile).items():
    print(f"sweep {name:34s} {seconds:7.1f} s")
print(f"shared models ready in {time.time() - start:.1f} s")
