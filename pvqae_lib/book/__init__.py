"""What the chapters share: the models they train once and keep on disk, the committed models and
results, and the data every chapter starts from.

The model cache (:func:`trained_model`) is keyed on the configuration, the data and a hash of the
whole package, so a chapter never reuses a model that older code trained. A few small trained models
live in ``book/_static/models/<name>/`` (``model.pt`` with its ``config.json``: the command, commit and
machine that made it), so a chapter can show a model trained for minutes without training it again on
every build (chapter 8b). Everything is read with ``weights_only=True``
(:func:`pvqae_lib.engine.pipeline.load_trained`), so a file there can run no code.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import time
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import torch

from ..config import ModelConfig, Profile, TrainConfig, flat_settings, get_profile, lfq_implied
from ..data import make_synthetic
from ..engine.pipeline import PRIOR_KINDS, Trained, fit, load_trained, save_trained
from ..engine.train import CheckpointError
from ..nn.detector import batch_of
from ..paths import MODELS_DIR, RESULTS_DIR, cache_dir, checkout_root


def code_version() -> str:
    """A hash of every module of the package, so any code change invalidates the model cache (a
    list of the modules that matter went stale twice: scoring and the data loaders were missing).

    ``$PVQAE_CODE_VERSION`` replaces the hash: for authors editing the library and a chapter at once
    (every edit would otherwise retrain the shared models). Never set in CI, ``make`` or a reader's
    run; a model trained under it is only as current as the code that first trained it."""
    if pinned := os.environ.get("PVQAE_CODE_VERSION"):
        return f"pinned-{pinned}"
    here = Path(__file__).resolve().parents[1]      # the whole package, not only book/
    digest = hashlib.sha256()
    for path in sorted(here.rglob("*.py")):
        digest.update(path.relative_to(here).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def config_key(profile: Profile, dataset: str, extra: dict | None = None) -> str:
    """A short hash of everything that decides a trained model (for the on-disk cache): the
    configuration, the data and the training code itself."""
    blob = json.dumps({"profile": profile.to_dict(), "dataset": dataset, "extra": extra or {},
                       "code": code_version()}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def trained_model(profile: Profile, train_set, dataset: str = "synthetic", device=None, progress: bool = True,
                  extra: dict | None = None, epoch_callback=None, prior_kinds=PRIOR_KINDS) -> Trained:
    """Train once per configuration and keep it on disk, so chapters share models instead of
    retraining them. ``extra`` adds anything else that distinguishes the training data."""
    if tuple(prior_kinds) != PRIOR_KINDS:
        extra = {**(extra or {}), "prior_kinds": list(prior_kinds)}
    path = cache_dir() / f"{config_key(profile, dataset, extra)}.pt"
    if path.is_file() and epoch_callback is None:
        try:
            return load_trained(path, device)
        except CheckpointError:
            path.unlink()                        # a stale or broken cache entry: train again
    trained = fit(train_set, profile, device=device, progress=progress, epoch_callback=epoch_callback,
                  prior_kinds=prior_kinds)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_trained(trained, path)
    return trained


def committed_results(pattern: str = "*.json", start: Path | None = None) -> dict:
    """The results the command line committed, {file name: result}, for the files of RESULTS_DIR
    that match ``pattern``, sorted by name. Empty where there is no checkout (Colab, a pip install)."""
    root = checkout_root(start)
    if root is None:
        return {}
    return {path.name: json.loads(path.read_text()) for path in sorted((root / RESULTS_DIR).glob(pattern))}


def changed_settings(config: dict, base: Profile | None = None) -> dict:
    """What a run's recorded configuration (``Profile.to_dict()``) changed from its named profile.

    Returns {"section.field": value} for every differing field, e.g. {"train.epochs": 120,
    "model.tau": 0.5}: the settings a sweep varied, in the words of the config dataclasses.
    """
    base = (base or get_profile(config["name"])).to_dict()
    old, new = (flat_settings(json.loads(json.dumps(c))) for c in (base, config))   # tuples and lists compare equal
    return {k: v for k, v in new.items() if k in old and k != "name" and old[k] != v}


def sweep_of(results: dict, setting: str, besides: tuple = ()) -> dict:
    """The runs of ``results`` that changed nothing from their profile but ``setting``, e.g.
    ``"train.epochs"``: {file name: the run's value of ``setting``}.

    A run that changed nothing at all counts too (it is the sweep's profile point); so does every
    model, as the model name is not a setting of the sweep. A one-variable sweep read this way
    cannot mix in a run that also changed, say, λmax. Settings named in ``besides`` (e.g.
    ``("model.quantizer", "model.codebook_size")``) may differ too: the reader groups by them.
    """
    sweep = {}
    for name, result in results.items():
        config = result.get("config")
        if not config:
            continue
        if set(changed_settings(config)) - {"model.model", *besides} <= {setting}:
            sweep[name] = flat_settings(config)[setting]
    return sweep


def book_data(profile: Profile, split: str, categories=None):
    """The synthetic default at the profile's size (the data every chapter starts from)."""
    n = profile.num_train if split == "train" else profile.num_test
    return make_synthetic(split, profile.model.image_size, categories=categories, num_per_category=n,
                          seed=profile.train.seed)


def book_model(profile: Profile, model: str = "pvqae", device=None, progress: bool = True,
               prior_kinds=PRIOR_KINDS, categories=None, **overrides) -> Trained:
    """A model trained on the synthetic default, shared by every chapter through the disk cache.

    ``overrides`` change the model or training configuration (e.g. ``lambda_max=2.5``,
    ``schedule='cosine'``, ``tau=0.5``, ``vq_level=1``) and are part of the cache key, as is
    ``prior_kinds`` when it is not both priors. ``categories`` trains on those synthetic
    categories instead of the default three (e.g. ``"label"``, chapter 3); also part of the key.
    """
    overrides = book_overrides(profile, model, overrides)
    mkeys = {f.name for f in fields(ModelConfig)}
    tkeys = {f.name for f in fields(TrainConfig)}
    unknown = set(overrides) - mkeys - tkeys
    if unknown:
        raise ValueError(f"unknown configuration keys: {sorted(unknown)}")
    model_cfg = replace(profile.model, model=model, **{k: v for k, v in overrides.items() if k in mkeys})
    train_cfg = replace(profile.train, **{k: v for k, v in overrides.items() if k in tkeys})
    p = replace(profile, model=model_cfg, train=train_cfg)
    extra = None if categories is None else {"categories": [categories] if isinstance(categories, str)
                                             else list(categories)}
    return trained_model(p, book_data(p, "train", categories), "synthetic", device=device,
                         progress=progress, extra=extra, prior_kinds=prior_kinds)


def sweep_profile(profile: Profile) -> Profile:
    """A shorter run for sweeps (λ schedules, λmax, τ): ``profile.sweep_epochs`` epochs."""
    return replace(profile, train=replace(profile.train, epochs=profile.sweep_epochs))


# The models the chapters share (chapter 2: both VQ-VAEs; 3, 5-7: PVQAE; 9: PVQAE with LFQ).
# chapter 3 and 5's printed-label part: the paper's λmax and twice it (three seeds), and 5
LABEL_MODELS = tuple(("pvqae", {"categories": "label", "lambda_max": lam, "seed": seed})
                     for lam, seed in ((1.25, 0), (2.5, 0), (2.5, 1), (2.5, 2), (5.0, 0)))
BOOK_MODELS = (("vqvae", {}), ("vqvae", {"vq_level": 0}), ("pvqae", {}), ("pvqae", {"quantizer": "lfq"}),
               *LABEL_MODELS)


def book_overrides(profile: Profile, model: str, overrides: dict) -> dict:
    """Fill in what an override implies (LFQ: one code per sign pattern, 2**code_dim codes)."""
    return lfq_implied(overrides)


def warm_book_cache(profile: Profile, device=None, progress: bool = False) -> dict:
    """Train (or load) every shared model once; returns seconds per model. ``make test`` runs it
    before the chapters, so a chapter's time is its own work, not the shared training."""
    seconds = {}
    for model, overrides in BOOK_MODELS:
        t0 = time.time()
        book_model(profile, model, device=device, progress=progress, **overrides)
        seconds[f"{model} {overrides or ''}".strip()] = round(time.time() - t0, 1)
    return seconds


def committed_model_dir(name: str, start: Path | None = None) -> Path | None:
    """The folder of a committed model, or None where there is no checkout (a pip install)."""
    root = checkout_root(start)
    return None if root is None else root / MODELS_DIR / name


def committed_model(name: str, device=None, start: Path | None = None):
    """The committed trained model ``name`` (a :class:`pvqae_lib.engine.pipeline.Trained`), or None when
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


# --- Small helpers the chapters share (one definition each, never a copy in a notebook) ---------------

def show_source(obj) -> None:
    """Display the library's own source of ``obj`` (a function or class), never a pasted copy."""
    from IPython.display import Code, display  # IPython: in a notebook only (the book layer runs outside one too)
    display(Code(inspect.getsource(obj), language="python"))


def first_index(data, category: str, kind: str) -> int:
    """The index of the first image of ``category`` and ``kind`` (e.g. ``"good"``) in a dataset with
    ``category_names``, ``categories`` and ``kinds`` (every dataset of :mod:`pvqae_lib.data`)."""
    cats = np.asarray(data.categories)
    kinds = np.asarray(list(data.kinds))
    hits = np.flatnonzero((cats == data.category_names.index(category)) & (kinds == kind))
    if not len(hits):
        raise ValueError(f"no image of category {category!r} and kind {kind!r}")
    return int(hits[0])


def per_image_max(maps):
    """Each map divided by its own maximum, so every image spans 0 .. 1 (for showing maps side by side;
    never for scoring: it removes the differences between images that the image AUROC measures)."""
    maps = np.asarray(maps, dtype=float)
    peak = maps.reshape(len(maps), -1).max(1)
    return maps / np.where(peak > 0, peak, 1.0)[:, None, None]


def moving_average(values, width: int = 10):
    """The running mean over ``width`` values (a loss curve made readable); shorter when fewer values."""
    values = np.asarray(values, dtype=float)
    width = max(1, min(width, len(values)))
    return np.convolve(values, np.ones(width) / width, mode="valid")


def show_table(frame, percent: tuple = (), digits: int = 3, caption: str | None = None) -> None:
    """Render a pandas DataFrame as an HTML table: columns named in ``percent`` as percentages with one
    decimal, other floats with ``digits`` decimals, no index column unless it is named; cells are padded and
    do not wrap, and a table wider than the page scrolls sideways."""
    from IPython.display import HTML, display  # IPython: in a notebook only
    formats = {c: (lambda v: "" if v != v else f"{100 * v:.1f}") for c in percent if c in frame.columns}
    for column in frame.columns:
        if column not in formats and frame[column].dtype.kind == "f":
            formats[column] = (lambda v, d=digits: "" if v != v else f"{v:.{d}f}")
    styler = frame.style.format(formats)
    if frame.index.name is None:
        styler = styler.hide(axis="index")
    if caption:
        styler = styler.set_caption(caption)
    # padded, unwrapped cells (neighbouring columns never run together, "85.4 ± 0.1" stays on one
    # line), added to any styles already set; a table wider than the page scrolls inside its box
    styler = styler.set_table_styles([{"selector": "th, td", "props": "padding: 0.2em 0.8em; white-space: nowrap"}],
                                     overwrite=False)
    display(HTML(f'<div style="overflow-x: auto">{styler.to_html()}</div>'))


def say(markdown: str) -> None:
    """Show text generated from a run's numbers as Markdown, so the prose beside a result is that result."""
    from IPython.display import Markdown, display  # IPython: in a notebook only
    display(Markdown(markdown))


def glue(name: str, value) -> None:
    """Make ``value`` available to the chapter's written prose as ``{glue:text}`name:fmt``` (myst-nb's
    glue, the ecosystem's way to put computed numbers into Markdown), without showing it here.
    Outside a build (Colab without myst-nb) it does nothing: the prose then shows the role."""
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        return
    if hasattr(value, "item"):          # a numpy scalar: glued as a Python number, so `:.1f` formats it
        value = value.item()
    myst_glue(name, value, display=False)


class ClaimFailed(AssertionError):
    """A sentence of a chapter no longer holds for the numbers this build computed."""


def check(condition: bool, claim: str) -> None:
    """Fail the build (a chapter cell raises) when ``claim``, a sentence the chapter states about a live
    run, no longer holds; prints nothing when it holds. The message names the claim, so a rebuild on
    another machine that changes the numbers says which sentence to rewrite."""
    if not bool(condition):
        raise ClaimFailed(f"the chapter says: {claim!r}, which this run's numbers no longer support")


def router_logits(trained, images, batch_size: int = 64, device=None):
    """The router's logits (N, R, h, w), on the CPU, of a trained PVQAE for images (N, 3, H, W) in
    [0, 1]; its evaluation-mode levels are ``.argmax(1)``. Works for the pixel model and for a
    feature-pyramid model (whose backbone maps are computed first, or read from the feature cache)."""
    model = trained.model.eval()
    device = device or model.device
    inputs = model.inputs(images)
    with torch.no_grad():
        return torch.cat([model(batch_of(inputs, slice(i, i + batch_size), device)).logits.float().cpu()
                          for i in range(0, len(images), batch_size)])


def synthetic_runs(index, profile: Profile, vary: tuple = ()):
    """Rows of the results index (``pv.results.load_index()``) for the committed command-line runs
    on the synthetic data that kept ``profile``'s settings except the columns named in ``vary``
    (e.g. ``("train.epochs", "train.seed")``): pixel PVQAE and VQ-VAE with vector quantization, no
    segmentation head, the PVQAE score, not standardized unless ``"standardized"`` is in ``vary``.
    Chapter 7b reads its committed numbers through it, never through a file name."""
    defaults = {"dataset": "synthetic", "profile": profile.name, "model.quantizer": "vq",
                "model.width": profile.model.width, "model.codebook_size": profile.model.codebook_size,
                "train.epochs": profile.train.epochs, "train.seed": profile.train.seed,
                "train.lambda_max": profile.train.lambda_max, "train.schedule": profile.train.schedule,
                "head.enabled": False, "score.scorer": "pvqae", "standardized": False}
    rows = index[index["kind"] == "evaluate"]
    for column, value in defaults.items():
        if column not in vary:
            rows = rows[rows[column] == value]
    return rows.reset_index(drop=True)
