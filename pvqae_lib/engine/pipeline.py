"""The whole method end to end: train, score, evaluate (the chapters' model cache is in book.py).

The command line and the book both go through these functions, so a chapter's numbers and the
CLI's are made by the same code.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..config import (
    ModelConfig,
    PriorConfig,
    Profile,
    ScoreConfig,
    from_dict,
)
from ..data import load_images
from ..nn.detector import batch_of
from ..nn.factory import build_model, detector_class
from ..nn.prior import BudgetPrior, class_tokens, fit_prior
from ..storage import save_atomic
from .memory import fit_memory
from .scorers import (
    DetectorScorer,
    Scorer,
    Standardized,
    normal_maps_of,
    per_category,
    per_kind,
    routed_shares,
)
from .segmentation import HeadScorer, SegmentationHead, train_head
from .train import CheckpointError, collect_budgets, load_checkpoint, train_autoencoder

PRIOR_KINDS = ("universal", "per-class")


@dataclass
class Trained:
    """A trained autoencoder with its budget priors (none for the VQVAE) and, if it was trained
    with one, LFQUIAD's segmentation head."""
    model: torch.nn.Module
    model_config: ModelConfig
    category_names: list
    priors: dict = field(default_factory=dict)        # 'universal' / 'per-class' -> BudgetPrior
    head: SegmentationHead | None = None
    history: dict = field(default_factory=dict)
    prior_losses: dict = field(default_factory=dict)
    seconds: float = 0.0

    def check_category(self, name: str) -> None:
        """A ValueError naming the run's categories unless ``name`` is one of them."""
        if name not in self.category_names:
            raise ValueError(f"unknown category {name!r}: the run was trained on {', '.join(self.category_names)}")

    def prior_classes(self, kind: str, categories: torch.Tensor) -> torch.Tensor:
        """Class-token ids: 0 for every image with a universal prior, the category per-class."""
        return class_tokens(categories, kind == "per-class")


def fit(train_set, profile: Profile, out_dir=None, resume: bool = False, device=None, progress: bool = True,
        epoch_callback=None, prior_kinds=PRIOR_KINDS, eval_set=None) -> Trained:
    """Train the autoencoder, then (PVQAE only) the Budget Prior Transformers in ``prior_kinds``
    (universal and per-class by default; a sweep that scores with one kind can skip the other),
    then, if ``profile.head.enabled``, LFQUIAD's segmentation head on synthetic anomalies of
    ``train_set`` (its history goes to ``trained.history['head']``).

    With ``profile.train.eval_every`` > 0, ``eval_set`` (the run's test split) is scored during
    training into ``trained.history['eval']``, a learning curve for monitoring only
    (:func:`pvqae_lib.engine.train.held_out_point`)."""
    unknown = set(prior_kinds) - set(PRIOR_KINDS)
    if unknown:
        raise ValueError(f"prior_kinds must be a subset of {PRIOR_KINDS} (empty: no prior), got {prior_kinds!r}")
    t0 = time.time()
    if detector_class(profile.model).fitted_by == "gradient":
        model, history = train_autoencoder(train_set, profile.model, profile.train, out_dir, resume, device,
                                           progress, epoch_callback, eval_set)
    else:                                         # PatchCore, the code bank: pvqae_lib.engine.memory
        model, history = fit_memory(train_set.images, profile, device, progress)
    trained = Trained(model, profile.model, list(train_set.category_names), history=history)
    if model.routes and prior_kinds:             # PVQAE: the Budget Prior Transformers
        levels = collect_budgets(model, model.inputs(train_set.images))
        for kind in prior_kinds:
            if kind == "per-class" and len(train_set.category_names) == 1 and "universal" in trained.priors:
                trained.priors[kind] = trained.priors["universal"]
                trained.prior_losses[kind] = trained.prior_losses["universal"]
                continue                          # one category: the per-class prior is the universal one
            classes = trained.prior_classes(kind, train_set.categories)
            num_classes = 1 if kind == "universal" else len(train_set.category_names)
            prior, losses = fit_prior(levels, classes, profile.model.num_levels, num_classes, profile.prior,
                                      seed=profile.train.seed, device=device, progress=progress)
            trained.priors[kind], trained.prior_losses[kind] = prior, losses
    if profile.head.enabled:
        if not model.adversarial:                 # the pixel models: the head sees an image and its reconstruction
            raise ValueError("the segmentation head (--head) sits on the pixel model only, not on a feature backbone")
        trained.head, head_history = train_head(model, train_set, profile.head, profile.train.seed, progress=progress)
        trained.history["head"] = head_history
    trained.seconds = time.time() - t0
    return trained


def save_trained(trained: Trained, path: Path, extra: dict | None = None) -> None:
    """One file with the weights and every configuration needed to rebuild them."""
    save_atomic({"model": trained.model.state_dict(), "model_config": asdict(trained.model_config),
                 "category_names": trained.category_names, "history": trained.history,
                 "prior_losses": trained.prior_losses, "seconds": trained.seconds,
                 "priors": {k: {"state": p.state_dict(), "num_levels": p.num_levels, "num_tokens": p.num_tokens,
                                "num_classes": p.num_classes} for k, p in trained.priors.items()},
                 "prior_config": asdict(next(iter(trained.priors.values())).cfg) if trained.priors else None,
                 "head": None if trained.head is None else {"state": trained.head.state_dict(),
                                                             "width": trained.head.width},
                 **(extra or {})}, path)


def load_trained(path: Path, device=None) -> Trained:
    """Rebuild a :class:`Trained` from :func:`save_trained`'s file. A file whose parts do not fit
    together (a weight missing or of another shape, a configuration that is not one, priors of
    another length) is a one-line CheckpointError naming it."""
    ckpt = load_checkpoint(path)
    if "priors" not in ckpt:
        raise CheckpointError(f"{path} is a training checkpoint, not a finished model")
    try:
        return _rebuild(ckpt, device)
    except (KeyError, TypeError, AttributeError, RuntimeError, ValueError, IndexError) as e:
        reason = " ".join(str(e).split())[:200] or type(e).__name__
        raise CheckpointError(f"{path} is not a complete pvqae_lib model ({type(e).__name__}: {reason})") from None


def _rebuild(ckpt: dict, device=None) -> Trained:
    if not isinstance(ckpt["model_config"], dict) or not isinstance(ckpt["priors"], dict):
        raise TypeError("model_config and priors must be mappings")
    cfg = from_dict(ModelConfig, ckpt["model_config"])
    model = build_model(cfg)
    model.load_state_dict(ckpt["model"])
    priors = {}
    tokens = (cfg.image_size // cfg.coarse_stride) ** 2
    for kind, p in ckpt["priors"].items():
        if p["num_tokens"] != tokens:
            raise ValueError(f"its {kind} prior covers {p['num_tokens']} patches, the model's coarse grid {tokens}")
        prior = BudgetPrior(p["num_levels"], p["num_tokens"], p["num_classes"],
                            from_dict(PriorConfig, ckpt["prior_config"]))
        prior.load_state_dict(p["state"])
        priors[kind] = prior.to(device).eval()
    head = None
    if ckpt.get("head") is not None:                 # models saved before heads existed have no key
        head = SegmentationHead(ckpt["head"]["width"])
        head.load_state_dict(ckpt["head"]["state"])
        head = head.to(device).eval()
    return Trained(model.to(device).eval(), cfg, ckpt["category_names"], priors=priors, head=head,
                   history=ckpt["history"], prior_losses=ckpt["prior_losses"], seconds=ckpt["seconds"])


def normal_maps(trained: Trained, normal_set, prior: str = "universal", cfg: ScoreConfig | None = None,
                device=None) -> dict:
    """The anomaly maps of ``normal_set``'s images, by category name: what ``cfg.standardize``
    compares each position with. :func:`score` computes them from its ``normal_set``; compute them
    once and pass them as ``reference`` to score many batches against the same normal images.
    They come from the same scorer as the maps they are compared with (``cfg.scorer``)."""
    return normal_maps_of(scorer_of(trained, prior, replace(cfg or ScoreConfig(), standardize=False), device),
                          normal_set)


def default_prior(model_config: ModelConfig) -> str:
    """The prior a run is scored with unless told otherwise: the universal one for PVQAE (the paper's
    S = S_prior x S_recon), none for the code bank (measured: the product lowers its scores,
    chapter 8b) and for the one-level models, which have no prior."""
    if model_config.model != "pvqae" or model_config.feature_model == "bank":
        return "none"
    return "universal"


def scorer_of(trained: Trained, prior: str = "universal", cfg: ScoreConfig | None = None, device=None) -> Scorer:
    """The :class:`~pvqae_lib.engine.scorers.Scorer` of a trained run ('none': S by reconstruction alone):

    - ``cfg.scorer='head'``: the run's segmentation head (LFQUIAD Sec. 3.5, :class:`HeadScorer`,
      its map smoothed by ``cfg.head_sigma``); the head sees the model's own reconstruction, so
      ``prior`` must be 'none';
    - any other: :class:`DetectorScorer`, S = S_prior x S_recon with the ``prior`` kind's prior (a
      routed detector's), or S_recon alone.

    ``cfg.standardize`` is not applied here (wrap it in :class:`Standardized`, as :func:`score` does).
    """
    cfg = cfg or ScoreConfig()
    if prior not in ("none",) + PRIOR_KINDS:
        raise ValueError(f"prior must be none, universal or per-class, got {prior!r}")
    p = trained.priors.get(prior) if prior != "none" else None
    if prior != "none" and p is None and trained.model_config.model == "pvqae":
        raise ValueError(f"this model has no {prior} prior")
    if cfg.scorer == "head":
        if prior != "none":
            raise ValueError("the segmentation head scores the model's own reconstruction: prior must be none, "
                             f"got {prior!r}")
        if not trained.model.adversarial:
            raise ValueError("the segmentation head scores pixel models only; this run has the "
                             f"{trained.model_config.backbone} backbone")
        if trained.head is None:
            raise ValueError("this run has no segmentation head: train it with --head")
        return HeadScorer(trained.head, trained.model, routing=True, device=device, sigma=cfg.head_sigma,
                          image_score="max")
    return DetectorScorer(trained.model, p, prior == "per-class", cfg, device)


def score(trained: Trained, test_set, prior: str = "universal", cfg: ScoreConfig | None = None, device=None,
          normal_set=None, reference: dict | None = None) -> dict:
    """Anomaly maps and image scores of a test ImageSet, by :func:`scorer_of`'s scorer.

    With ``cfg.standardize`` every category's maps are standardized position by position
    (:class:`~pvqae_lib.engine.scorers.Standardized`) against the maps of that category's images in
    ``normal_set`` (the training images: in the one-class setting the only normal images there
    are), or against ``reference``, those maps computed beforehand by :func:`normal_maps`; the
    image score is then the maximum of that map.
    """
    cfg = cfg or ScoreConfig()
    scorer = scorer_of(trained, prior, cfg, device)
    if cfg.standardize:
        if normal_set is None and reference is None:
            raise ValueError("ScoreConfig(standardize=True) needs normal_set: the normal images whose maps set "
                             "each position's mean and spread")
        scorer = Standardized(scorer, reference) if reference is not None else Standardized(scorer).fit(normal_set)
    return scorer.score(test_set)


def head_scores(trained: Trained, data, cfg: ScoreConfig | None = None, batch_size: int = 32,
                device=None) -> tuple[np.ndarray, np.ndarray]:
    """The segmentation head's anomaly maps (N, H, W) and image scores (N,) of an ImageSet:
    LFQUIAD's score (Sec. 3.5), the head's probabilities smoothed by ``cfg.head_sigma`` pixels at
    64 px, the image score their maximum (as for S)."""
    if trained.head is None:
        raise ValueError("this run has no segmentation head: train it with --head")
    cfg = cfg or ScoreConfig()
    return HeadScorer(trained.head, trained.model, device=device, batch_size=batch_size, sigma=cfg.head_sigma,
                      image_score="max")(data)


@torch.no_grad()
def autoencode(model, images: torch.Tensor, batch_size: int = 64, device=None) -> tuple[torch.Tensor, list]:
    """An autoencoder's own reconstructions (with the router's budget) and code indices of many images.

    images (N, 3, H, W); the detector runs in eval mode, in batches, on its device (or ``device``), on
    the inputs its backbone makes (the images, or their pyramid's maps: then the reconstruction is of
    the standardized features). Returns (recon, [indices (N, h_r, w_r) for each quantized level]), on
    the CPU. The chapters use it to look at what the codes keep; scoring has its own pass
    (:func:`score`).
    """
    model.eval()
    device = device or model.device
    inputs = model.inputs(images)
    recons, indices = [], []
    for start in range(0, len(images), batch_size):
        out = model(batch_of(inputs, slice(start, start + batch_size), device))
        recons.append(out.recon.cpu())
        indices.append([i.cpu() for i in out.indices])
    return torch.cat(recons), [torch.cat(level) for level in zip(*indices)]


def score_files(trained: Trained, files: list, category: str, prior: str = "universal",
                cfg: ScoreConfig | None = None, reference: dict | None = None, device=None, chunk: int = 256):
    """Score image files nobody has labelled, ``chunk`` at a time (a large folder never sits in
    memory whole): yields (the chunk's ImageSet, its :func:`score` dict). All images are taken to
    show ``category``, one of the run's categories (it picks the class token of a per-class prior
    and the normal maps ``cfg.standardize`` compares with: ``reference``, from :func:`normal_maps`,
    computed once for every chunk). This is ``predict``'s scoring."""
    trained.check_category(category)
    cfg = cfg or ScoreConfig()
    scorer = scorer_of(trained, prior, cfg, device)
    if cfg.standardize:
        if reference is None:
            raise ValueError("ScoreConfig(standardize=True) needs reference: normal_maps() of the run's normal images")
        scorer = Standardized(scorer, reference)
    for start in range(0, len(files), chunk):
        images = load_images(files[start:start + chunk], trained.model_config.image_size, category,
                             trained.category_names)
        yield images, scorer.score(images)


def normal_percentile(scores, normal_scores) -> np.ndarray:
    """For each image score, the percentage of normal images' scores below it: 100 means more
    anomalous than every normal image the run was checked on, 50 a typical normal image."""
    normal = np.sort(np.asarray(normal_scores, dtype=float))
    if normal.size == 0:
        raise ValueError("normal_percentile needs at least one normal score")
    return 100.0 * np.searchsorted(normal, np.asarray(scores, dtype=float), side="left") / normal.size


def evaluate(trained: Trained, test_set, prior: str = "universal", cfg: ScoreConfig | None = None,
             device=None, normal_set=None) -> dict:
    """Image AUROC, pixel AUROC and PRO per category and per defect kind, plus the share of each
    resolution the router chose for normal and defective images.

    As on MVTec AD, the headline numbers are means over categories (each category is its own
    inspection task); the ``*_pooled`` numbers put every category's images in one pool
    (:func:`pvqae_lib.engine.scorers.per_category`, the one aggregation every scorer's maps go through).
    """
    t0, cfg = time.time(), cfg or ScoreConfig()
    sc = score(trained, test_set, prior, cfg, device, normal_set)
    result = per_category(sc, test_set, trained.model_config.num_levels)
    result.update(per_kind=per_kind(sc, test_set), prior=prior, standardized=cfg.standardize, num_test=len(test_set),
                  resolution_share=routed_shares(sc, test_set.labels.numpy(), np.ones(len(test_set), dtype=bool),
                                                 trained.model_config.num_levels),
                  eval_seconds=round(time.time() - t0, 2))
    return result
