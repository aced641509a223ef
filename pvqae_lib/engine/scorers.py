"""One evaluation path: every way this book scores an image is a :class:`Scorer`, and one function
turns any scorer's output into per-category numbers (:func:`per_category`).

A scorer has been fitted on normal images (an autoencoder and its prior trained, a segmentation
head trained, a PatchCore memory bank filled); ``scorer.score(data)`` then gives, for an ImageSet,
at least ``"s"`` (N, H, W) the anomaly maps and ``"image"`` (N,) the image scores, as numpy arrays
on the CPU. Autoencoders also give ``"s_prior"``, ``"s_recon"``, ``"routed"`` and ``"predicted"``
(:func:`pvqae_lib.engine.scoring.score_dataset`).

========================  =====================================================================
:class:`DetectorScorer`   PVQAE's S = S_prior × S_recon, or S_recon without a prior, of any detector:
                          pixel or feature PVQAE, the VQ-VAE, the AE, the code bank, PatchCore
                          (paper Sec. III-C.2)
``HeadScorer``            LFQUIAD's segmentation head (Sec. 3.5), in :mod:`pvqae_lib.engine.segmentation`
:class:`Standardized`     any scorer's maps, each position against the maps of normal images
========================  =====================================================================

``pipeline.scorer_of(trained, prior, cfg)`` picks one for a trained run; ``pipeline.evaluate``,
``pipeline.score_files`` (predict), ``fewshot`` and ``segmentation.evaluate_head`` all score
through these classes and aggregate with :func:`per_category`.
"""
from __future__ import annotations

import numpy as np

from ..config import ScoreConfig
from ..nn.prior import class_tokens
from . import metrics
from .scoring import score_dataset, standardize

METRICS = ("image_auroc", "pixel_auroc", "pro")


class Scorer:
    """Anomaly maps and image scores of an ImageSet, from a model fitted on normal images."""

    def score(self, data) -> dict:
        """{"s": maps (N, H, W), "image": scores (N,), ...} as numpy arrays on the CPU."""
        raise NotImplementedError

    def __call__(self, data) -> tuple[np.ndarray, np.ndarray]:
        """(pixel maps, image scores) of ``data``."""
        sc = self.score(data)
        return sc["s"], sc["image"]


class DetectorScorer(Scorer):
    """S of any detector (:func:`pvqae_lib.engine.scoring.score_dataset`): with ``prior`` (a routed
    detector's Budget Prior Transformer), S = S_prior × S_recon of the output made again with the
    predicted normal budget (paper Sec. III-C.2); without one (the VQ-VAE, PatchCore, the ablation,
    a run's ``prior="none"``), S = S_recon of its own output. The same class scores the pixel
    models and those on a frozen pyramid: the detector's backbone makes its inputs."""

    def __init__(self, model, prior=None, per_class: bool = False, cfg: ScoreConfig | None = None,
                 device=None, batch_size: int = 32):
        self.model, self.prior, self.per_class = model, prior, per_class
        self.cfg, self.device, self.batch_size = cfg or ScoreConfig(), device, batch_size

    def score(self, data) -> dict:
        classes = None if self.prior is None else class_tokens(data.categories, self.per_class)
        return score_dataset(self.model, data, self.prior, classes, self.cfg, self.batch_size, self.device)


class Standardized(Scorer):
    """Another scorer's maps standardized position by position (:func:`pvqae_lib.engine.scoring.standardize`)
    against the maps it gives the normal images of the same category; the image score is then the
    maximum of that map. :meth:`fit` takes the normal ImageSet (in the one-class setting, the
    training images), or pass ``reference`` ({category name: maps}) computed beforehand."""

    def __init__(self, inner: Scorer, reference: dict | None = None):
        self.inner, self.reference = inner, reference

    def fit(self, normal_set) -> Standardized:
        self.reference = normal_maps_of(self.inner, normal_set)
        return self

    def score(self, data) -> dict:
        if self.reference is None:
            raise ValueError("Standardized needs the maps of normal images: call fit(normal_set) or pass reference")
        sc = self.inner.score(data)
        cats = data.categories.numpy()
        for c, name in enumerate(data.category_names):
            if name not in self.reference:
                raise ValueError(f"normal_set has no images of category {name!r}")
            sel = cats == c
            sc["s"][sel] = standardize(sc["s"][sel], self.reference[name])
        sc["image"] = sc["s"].reshape(len(sc["s"]), -1).max(1)      # as anomaly_maps: the map's maximum
        return sc


def normal_maps_of(scorer: Scorer, normal_set) -> dict:
    """``scorer``'s maps of ``normal_set``'s images, by category name (what :class:`Standardized`
    compares each position with)."""
    maps = scorer.score(normal_set)["s"]
    categories = normal_set.categories.numpy()
    return {name: maps[categories == c] for c, name in enumerate(normal_set.category_names)}


# ------------------------------------------------------------------------------------ aggregation

def mean_of(values) -> float | None:
    """The mean of the values that are not None; None when there are none."""
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def resolution_shares(budgets: np.ndarray, num_levels: int) -> list:
    """Share of coarse patches at each level, coarsest first."""
    counts = np.bincount(budgets.reshape(-1), minlength=num_levels)
    return (counts / max(1, counts.sum())).round(4).tolist()


def per_category(sc: dict, data, num_levels: int | None = None) -> dict:
    """Image AUROC, pixel AUROC and PRO of a scorer's output ``sc`` on the labelled ImageSet ``data``.

    As on MVTec AD, the headline numbers are means over categories (each category is its own
    inspection task); the ``*_pooled`` numbers put every category's images in one pool, and
    ``per_category`` holds one row per category. With ``num_levels`` (an autoencoder's ``routed``
    budgets in ``sc``) each row also holds the share of each resolution the router chose for
    normal and defective images.
    """
    labels, masks, cats = data.labels.numpy(), data.masks[:, 0].numpy(), data.categories.numpy()
    rows = []
    for c, name in enumerate(data.category_names):
        sel = cats == c
        if sel.any():
            row = {"category": name, "n": int(sel.sum())}
            if num_levels is not None:
                row["resolution_share"] = routed_shares(sc, labels, sel, num_levels)
            rows.append({**row, **metrics.summarize(sc["image"][sel], labels[sel], sc["s"][sel], masks[sel])})
    result = {k: mean_of(r[k] for r in rows) for k in METRICS}
    result.update({f"{k}_pooled": v for k, v in metrics.summarize(sc["image"], labels, sc["s"], masks).items()})
    result["per_category"] = rows
    return result


def per_kind(sc: dict, data) -> list:
    """One row per defect kind: that kind against the normal images, per category, averaged over the
    categories that have it."""
    labels, masks, cats = data.labels.numpy(), data.masks[:, 0].numpy(), data.categories.numpy()
    kinds = np.array(data.kinds)
    rows = []
    for kind in sorted(set(kinds) - {"good"}):
        per_cat = [metrics.summarize(sc["image"][sel], labels[sel], sc["s"][sel], masks[sel])
                   for c in range(len(data.category_names))
                   for sel in [(cats == c) & ((kinds == kind) | (kinds == "good"))] if (sel & (kinds == kind)).any()]
        rows.append({"kind": kind, "n": int((kinds == kind).sum()),
                     **{k: mean_of(r[k] for r in per_cat) for k in METRICS}})
    return rows


def routed_shares(sc: dict, labels: np.ndarray, sel: np.ndarray, num_levels: int) -> dict:
    """The router's resolution shares for the normal and the defective images of ``sel``."""
    return {"normal": resolution_shares(sc["routed"][sel & (labels == 0)], num_levels),
            "defective": resolution_shares(sc["routed"][sel & (labels == 1)], num_levels)}


def evaluate_scorer(scorer: Scorer, data, num_levels: int | None = None) -> dict:
    """:func:`per_category` of ``scorer.score(data)``."""
    return per_category(scorer.score(data), data, num_levels)


__all__ = ["Scorer", "DetectorScorer", "Standardized", "normal_maps_of",
           "per_category", "per_kind", "routed_shares", "resolution_shares", "mean_of",
           "evaluate_scorer", "METRICS"]
