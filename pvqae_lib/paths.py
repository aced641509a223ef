"""Where things live on disk: the checkout, the committed results and models, the data, the cache.

One place for every location the library, the command line and the chapters share, so a folder is
spelled once. Nothing here reads or writes a file.
"""
from __future__ import annotations

import os
from pathlib import Path

RESULTS_DIR = "book/_static/results"   # committed run results; changes there are not code changes
MODELS_DIR = "book/_static/models"     # committed trained models, each with its provenance


def checkout_root(start: Path | None = None) -> Path | None:
    """The book's checkout: the first folder upwards from ``start`` (default: the working directory)
    that holds ``_toc.yml`` and ``pvqae_lib/``. None where there is none (Colab, a pip install)."""
    start = Path(start or Path.cwd()).resolve()
    for folder in [start, *start.parents]:
        if (folder / "_toc.yml").is_file() and (folder / "pvqae_lib").is_dir():
            return folder
    return None


def mtsd_root(start: Path | None = None) -> Path:
    """Where the chapters look for MTSD: $PVQAE_MTSD, else ``shared/data/mtsd`` beside the checkout
    (the layout of this project's machines). The folder may not exist; the chapters check."""
    if override := os.environ.get("PVQAE_MTSD"):
        return Path(override)
    return (checkout_root(start) or Path.cwd()).parent / "shared" / "data" / "mtsd"


def cache_dir() -> Path:
    """$PVQAE_CACHE, else ~/.cache/pvqae_book: trained models and backbone features, never inside
    the repository."""
    return Path(os.environ.get("PVQAE_CACHE", Path.home() / ".cache" / "pvqae_book"))
