"""What the chapters share beyond the pipeline: the trained models committed to the repository.

A few small trained models live in ``book/_static/models/<name>/`` (``model.pt`` with its
``config.json``: the command, commit and machine that made it), so a chapter can show a model
trained for minutes without training it again on every build (chapter 8b). They are read with
``weights_only=True`` (:func:`pvqae_lib.pipeline.load_trained`), so a file there can run no code.
"""
from __future__ import annotations

import json
from pathlib import Path

from .pipeline import checkout_root, load_trained

MODELS_DIR = "book/_static/models"


def committed_model_dir(name: str, start: Path | None = None) -> Path | None:
    """The folder of a committed model, or None where there is no checkout (a pip install)."""
    root = checkout_root(start)
    return None if root is None else root / MODELS_DIR / name


def committed_model(name: str, device=None, start: Path | None = None):
    """The committed trained model ``name`` (a :class:`pvqae_lib.pipeline.Trained`), or None when
    this checkout does not hold it. Its provenance is ``committed_provenance(name)``."""
    folder = committed_model_dir(name, start)
    if folder is None or not (folder / "model.pt").is_file():
        return None
    return load_trained(folder / "model.pt", device)


def committed_provenance(name: str, start: Path | None = None) -> dict:
    """The committed model's ``config.json``: its command, commit and configuration ({} if absent)."""
    folder = committed_model_dir(name, start)
    path = None if folder is None else folder / "config.json"
    return json.loads(path.read_text()) if path is not None and path.is_file() else {}
