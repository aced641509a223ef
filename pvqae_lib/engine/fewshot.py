"""The few-shot protocol of LFQUIAD (Lin & Lai, Sec. 4-5.1, Table 1), Chapter 10.

k normal images per category (k = 1, 2, 4) are all the training data; the model is evaluated on
the full test set (image AUROC, pixel AUROC, PRO), and each number is a mean over several random
draws of the shots. Here the model is the quick-profile PVQAE (with a universal Budget Prior) and,
optionally, a discriminative head trained on synthetic anomalies of the same k shots.

So few images still make enough optimisation steps, the shots are repeated (with random 90°
rotations and flips) into a training set of ``num_images`` images; the training loop adds its own
flips and colour jitter. The profile's number of epochs is kept, so the step count is
epochs × num_images / batch size (36 steps with the defaults, ~20-40 s on one CPU thread at 64 px).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..config import HeadConfig, Profile, get_device, get_profile
from ..data import DataError, ImageSet, load_dataset
from .pipeline import Trained, evaluate, fit
from .scorers import METRICS
from .segmentation import evaluate_head, train_head

# LFQUIAD's Table 1, their own method ("Ours"): {dataset: {k: (I, P, O)}}, in percent
PAPER_TABLE1 = {
    "MVTecAD": {1: (94.9, 95.7, 90.4), 2: (97.9, 96.9, 93.1), 4: (97.8, 98.2, 93.5)},
    "VisA": {1: (88.8, 96.4, 82.7), 2: (90.4, 97.0, 85.4), 4: (93.3, 97.6, 92.0)},
}


@dataclass
class FewShotConfig:
    """Sizes of one few-shot run (the model itself comes from the profile)."""
    num_images: int = 48            # the k·C shots are repeated (rotated, flipped) up to this many images
    epochs: int | None = None       # None: the profile's epochs
    prior: str = "universal"        # 'universal' or 'none' (score by reconstruction alone)
    prior_steps: int = 60           # the profile's 400 are far more than k·C budget maps need
    head: bool = False              # also train and evaluate the segmentation head
    head_steps: int = 100
    head_batch_size: int = 8
    size: int | None = None         # image size; None: the profile's


def select_shots(train_set: ImageSet, k: int, seed: int = 0) -> ImageSet:
    """k normal images per category, drawn without replacement; the draw for a category depends
    only on (seed, category index), so the same seed gives the same shots."""
    if k < 1:
        raise DataError(f"k must be >= 1, got {k}")
    index = []
    for c, name in enumerate(train_set.category_names):
        normals = torch.nonzero((train_set.categories == c) & (train_set.labels == 0)).flatten().numpy()
        if len(normals) < k:
            raise DataError(f"category {name!r} has {len(normals)} normal training images, fewer than k={k}")
        rng = np.random.default_rng([seed, c])
        index += sorted(normals[rng.choice(len(normals), k, replace=False)].tolist())
    return train_set.subset(index)


def expand_shots(shots: ImageSet, num_images: int, seed: int = 0) -> ImageSet:
    """``num_images`` copies of the shots (cycled, so each shot appears about equally often), each
    rotated by a random multiple of 90° and transposed with p = 1/2 (the 8 symmetries of a square)."""
    g = torch.Generator().manual_seed(seed)
    index = torch.arange(num_images) % len(shots)
    out = shots.subset(index)
    quarter, transpose = torch.randint(4, (num_images,), generator=g), torch.rand(num_images, generator=g) < 0.5
    images = [x.transpose(-1, -2) if t else x for x, t in zip(out.images, transpose)]
    images = [torch.rot90(x, int(q), dims=(-2, -1)) for x, q in zip(images, quarter)]
    out.images = torch.stack(images).contiguous()
    return out


def train_fewshot(shots: ImageSet, profile: Profile, cfg: FewShotConfig, seed: int = 0,
                  device=None, progress: bool = False) -> tuple[Trained, ImageSet]:
    """The detector (and a universal prior unless ``cfg.prior == 'none'``) on the expanded shots:
    :func:`pvqae_lib.engine.pipeline.fit`, the same as a full run, with the shots' seed, epochs and
    prior steps."""
    train_set = expand_shots(shots, max(cfg.num_images, len(shots)), seed)
    profile = replace(profile, train=replace(profile.train, seed=seed, epochs=cfg.epochs or profile.train.epochs),
                      prior=replace(profile.prior, steps=cfg.prior_steps))
    trained = fit(train_set, profile, device=device, progress=progress,
                  prior_kinds=() if cfg.prior == "none" else ("universal",))
    return trained, train_set


def run_fewshot(dataset_name: str, k: int, seeds=(0,), cfg: FewShotConfig | None = None, root=None,
                profile: Profile | str | None = "quick", device=None, progress: bool = False) -> list[dict]:
    """One row per seed (and per method): train on k shots per category, evaluate on the full test set.

    ``dataset_name`` is any name of :func:`pvqae_lib.data.load_dataset` ('synthetic', 'mtsd', ...;
    ``root`` for the real ones). Rows hold ``dataset, method ('pvqae' or 'pvqae+head'), k, seed,
    image_auroc, pixel_auroc, pro, train_steps, shots`` (their paths) and timings (``train_seconds``,
    ``eval_seconds``, ``seconds``; the head's row counts only the head); pass them to :func:`fewshot_table`.
    """
    cfg = cfg or FewShotConfig()
    profile = get_profile(profile) if isinstance(profile, str) or profile is None else profile
    device = get_device(device)
    size = cfg.size or profile.model.image_size
    if size != profile.model.image_size:
        profile = replace(profile, model=replace(profile.model, image_size=size))
    pool = load_dataset(dataset_name, root, "train", size)
    test = load_dataset(dataset_name, root, "test", size)
    prior_kind = "none" if cfg.prior == "none" else "universal"
    rows = []
    for seed in seeds:
        t0 = time.time()
        shots = select_shots(pool, k, seed)
        trained, train_set = train_fewshot(shots, profile, cfg, seed, device, progress)
        result = evaluate(trained, test, prior_kind if trained.priors else "none", device=device)
        base = {"dataset": dataset_name, "k": k, "seed": seed, "profile": profile.name, "device": str(device),
                "shots": [p for p in shots.paths], "train_steps": len(trained.history.get("loss", []))}
        rows.append({**base, "method": "pvqae", **{m: result[m] for m in METRICS},
                     "train_seconds": round(trained.seconds, 2), "eval_seconds": result["eval_seconds"],
                     "seconds": round(time.time() - t0, 2)})
        if cfg.head:
            t1 = time.time()
            # the head sees the model's own reconstruction (router budget): no prior in the loop
            head, history = train_head(trained.model, train_set,
                                       HeadConfig(steps=cfg.head_steps, batch_size=cfg.head_batch_size), seed=seed,
                                       progress=progress)
            head_result = evaluate_head(head, trained.model, test)
            rows.append({**base, "method": "pvqae+head", **{m: head_result[m] for m in METRICS},
                         "train_steps": cfg.head_steps, "train_seconds": round(history["seconds"], 2),
                         "eval_seconds": round(time.time() - t1 - history["seconds"], 2),
                         "seconds": round(time.time() - t1, 2)})
    return rows


def fewshot_table(rows: list[dict]) -> list[dict]:
    """Mean ± standard deviation (over seeds, ddof = 1; 0 for one seed) per (dataset, method, k).

    Returns rows ``{dataset, method, k, n, <metric>_mean, <metric>_std, ...}`` sorted by dataset,
    method and k; a metric that is ``None`` in every run stays ``None``.
    """
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["method"], r["k"]), []).append(r)
    table = []
    for (dataset, method, k), group in sorted(groups.items()):
        row = {"dataset": dataset, "method": method, "k": k, "n": len(group)}
        for m in METRICS:
            values = np.array([r[m] for r in group if r.get(m) is not None], dtype=float)
            row[f"{m}_mean"] = float(values.mean()) if len(values) else None
            row[f"{m}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0 if len(values) else None
        table.append(row)
    return table


def format_fewshot_table(table: list[dict]) -> str:
    """A Markdown table in percent, laid out like LFQUIAD's Table 1 (its I, P, O: image AUROC, pixel AUROC
    and PRO per shot count), mean ± std over the seeds."""
    def cell(row, m):
        mean, std = row[f"{m}_mean"], row[f"{m}_std"]
        return "-" if mean is None else f"{100 * mean:.1f} ± {100 * std:.1f}"

    lines = ["| dataset | method | shots k | seeds | image AUROC | pixel AUROC | PRO |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['dataset']} | {r['method']} | {r['k']} | {r['n']} | " + " | ".join(cell(r, m) for m in METRICS)
              + " |" for r in table]
    return "\n".join(lines)


__all__ = ["FewShotConfig", "PAPER_TABLE1", "select_shots", "expand_shots", "train_fewshot", "run_fewshot",
           "fewshot_table", "format_fewshot_table"]
