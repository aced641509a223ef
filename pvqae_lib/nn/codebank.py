"""PVQAE's codebooks as a learned memory bank on a frozen feature pyramid (chapter 8b).

On pretrained features a VQ codebook does not need a decoder to be useful: fitted by k-means on
the descriptors of normal patches, it *is* a compressed memory bank (PatchCore's coreset, learned
instead of picked), and a test patch's distance to its nearest code says how unlike every normal
patch it is. This module keeps the paper's parts around that bank:

1. **Descriptors** (one grid per level, coarsest first). Every level of the pyramid is
   standardized per channel on the training positions and averaged over its 3x3 neighbourhood
   (PatchCore's "locally aware" features, no padding counted); level r's descriptor at each
   position of its own grid is the *whole* pyramid resampled to that grid (40 + 112 + 192 = 344
   values on EfficientNet-Lite0). The levels differ in resolution, not in what they know.
2. **Codebooks**: one per level, K codes, Lloyd k-means (:func:`pvqae_lib.nn.quantize.kmeans`) on at
   most ``bank_samples`` training descriptors; or, for the book's peers on equal descriptors,
   PatchCore's greedy coreset (``bank_memory='coreset'``) or every training descriptor ('all').
3. **Level maps**: d_r = ||z_r − nearest code|| / median over the training positions, so a
   typical normal position scores about 1 at every level and levels can be compared.
4. **Routing** (Sec. III-B.1): the Dynamic Routing Module's MLP on the pooled pyramid chooses one
   level per coarse patch with Gumbel-Softmax (τ); the anomaly map is the routed level's d_r.
   The router is trained after the codebooks, against the budget of Sec. III-B.2 with λ rising
   on its schedule (:func:`router_loss`): either to keep the routed distance of normal patches
   low (``router_objective='distance'``, the reconstruction term's place in the paper's loss), or
   to maximise the *margin* between synthetic anomalies pasted into training images and normal
   patches (``'margin'``), which is where a fine level can earn its cost.

The Budget Prior Transformer (Sec. III-C.1) then learns the routed maps as on every PVQAE
(:func:`pvqae_lib.nn.prior.fit_prior`); ``forward`` returns the same routing ``scores`` the
autoencoders do, so the prior and the book's allocation plots need nothing new.
"""
from __future__ import annotations

import time
from typing import NamedTuple

import torch
import torch.nn.functional as F

from ..config import ModelConfig, TrainConfig
from .backbones import PyramidStatistics, resample, standardize_levels
from .budget import budget_loss, lambda_at
from .detector import Detector
from .patchcore import greedy_coreset
from .quantize import kmeans
from .routing import DynamicRouter

BANK_MODELS = ("pvqae", "membank")     # models a bank serves: routed over the levels, or one level
ROUTE_CHOICES = ("router", "coarse", "middle", "fine", "mean")   # ScoreConfig.route: ablations of the router


class BankOutput(NamedTuple):
    scores: torch.Tensor          # (B, R, h, w) routing scores b on the coarse grid (one-hot at eval)
    logits: torch.Tensor | None   # (B, R, h, w) router logits; None with one level
    distances: list               # per level: (B, h_r, w_r) normalized distance to the nearest code
    indices: list                 # per level: (B, h_r, w_r) index of the nearest code


def nearest_code(z: torch.Tensor, codebook: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Euclidean distance of each row of ``z`` (M, D) to its nearest row of ``codebook`` (K, D), and
    that row's index: ((M,), (M,))."""
    dist, index = [], []
    for i in range(0, len(z), chunk):
        d = torch.cdist(z[i:i + chunk], codebook)
        m = d.min(1)
        dist.append(m.values)
        index.append(m.indices)
    if not dist:
        return z.new_zeros(0), torch.zeros(0, dtype=torch.long, device=z.device)
    return torch.cat(dist), torch.cat(index)


class CodeBankPVQAE(PyramidStatistics, Detector):
    """PVQAE with its codebooks read as a memory bank (this module's docstring).

    ``cfg.model`` 'pvqae': one codebook per level and the router; 'membank': one level
    (``cfg.vq_level``), no router (the fixed-level ablation, and with ``bank_memory`` 'all' or
    'coreset' the plain memory bank and PatchCore on the same descriptors).
    ``fit`` fills the statistics and the codebooks from the normal training maps; the router is
    trained by :func:`train_router`.
    """

    fitted_by = "memory"

    def __init__(self, cfg: ModelConfig, channels: tuple):
        super().__init__()
        if cfg.model not in BANK_MODELS:
            raise ValueError(f"a code bank serves {', '.join(BANK_MODELS)}, got model {cfg.model!r}")
        self.cfg, self.num_levels, self.channels = cfg, cfg.num_levels, tuple(channels)
        self.routes = cfg.model == "pvqae"
        self.used = list(range(self.num_levels)) if self.routes else [cfg.vq_level]
        dim = sum(channels)
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        for r in self.used:                 # sizes known only after fit (or from a saved file)
            self.register_buffer(f"codebook{r}", torch.zeros(0, dim))
        self.register_buffer("scale", torch.ones(self.num_levels))
        self.router = DynamicRouter(list(channels), cfg.router_hidden) if self.routes else None
        self.resized_buffers = tuple(f"codebook{r}" for r in self.used)

    def codebook(self, r: int) -> torch.Tensor:
        return getattr(self, f"codebook{r}")

    # -------------------------------------------------------------------------- descriptors

    def standardized(self, levels: list[torch.Tensor]) -> list[torch.Tensor]:
        """Each level as z-scores of the training features, averaged over its 3x3 neighbourhood."""
        return [F.avg_pool2d(z, 3, 1, 1, count_include_pad=False)
                for z in standardize_levels(levels, self.mean, self.std)]

    def descriptors(self, levels: list[torch.Tensor], only=None) -> dict:
        """{level r: (B, ΣC, h_r, w_r)}: the whole standardized pyramid on each used level's grid
        (every used level, or those in ``only``)."""
        x = self.standardized(levels)
        return {r: torch.cat([resample(f, x[r].shape[-2:]) for f in x], 1) for r in self.used
                if only is None or r in only}

    def router_input(self, levels: list[torch.Tensor]) -> list[torch.Tensor]:
        """What the Dynamic Routing Module pools: the standardized levels (coarsest first)."""
        return self.standardized(levels)

    # -------------------------------------------------------------------------- the bank

    @torch.no_grad()
    def fit(self, levels: list[torch.Tensor], seed: int = 0, batch_size: int = 64, progress: bool = False) -> dict:
        """Statistics, then one codebook per used level from the training maps ``levels`` (N first),
        then each level's scale: the median distance of the training positions to their nearest
        code. Returns timings {'kmeans_seconds', 'scale_seconds'}."""
        cfg = self.cfg
        self.set_statistics(levels, batch_size)
        g = torch.Generator().manual_seed(seed)
        n = len(levels[0])
        times = {"kmeans_seconds": 0.0, "scale_seconds": 0.0}
        for r in self.used:
            t0 = time.time()
            h, w = levels[r].shape[-2:]
            total = n * h * w
            keep = total if cfg.bank_memory == "all" else min(total, cfg.bank_samples)
            pool = torch.randperm(total, generator=g)[:keep].sort().values
            sample = self._gather(levels, r, pool, batch_size)
            if cfg.bank_memory == "kmeans":
                k = cfg.coarse_bank_size if r == 0 and cfg.coarse_bank_size else cfg.bank_size
                book = kmeans(sample, min(k, len(sample)), cfg.kmeans_iters, seed=seed + r)
            elif cfg.bank_memory == "coreset":
                size = max(1, round(cfg.coreset_ratio * total))
                book = sample[greedy_coreset(sample, min(size, len(sample)), seed=seed + r)]
            else:
                book = sample
            setattr(self, f"codebook{r}", book.contiguous().to(self.mean.device))
            times["kmeans_seconds"] += time.time() - t0
            t0 = time.time()
            # the scale: the median over (at most bank_samples) training positions; with 'all' a
            # position is its own nearest entry, so the median of the second nearest is used
            probe = sample if len(sample) <= cfg.bank_samples else sample[torch.randperm(len(sample), generator=g)
                                                                          [:cfg.bank_samples]]
            if cfg.bank_memory == "all":
                d = torch.cat([torch.cdist(probe[i:i + 2048], book).topk(2, largest=False).values[:, 1]
                               for i in range(0, len(probe), 2048)])
            else:
                d = nearest_code(probe, book)[0]
            self.scale[r] = d.median().clamp(min=1e-6)
            times["scale_seconds"] += time.time() - t0
        return times

    def _gather(self, levels, r: int, pool: torch.Tensor, batch_size: int) -> torch.Tensor:
        """The level-r descriptors of the training positions ``pool`` (sorted flat indices over
        images x positions), computed batch by batch so memory holds only the kept rows."""
        h, w = levels[r].shape[-2:]
        kept = []
        for start in range(0, len(levels[0]), batch_size):
            stop = min(len(levels[0]), start + batch_size)
            here = pool[(pool >= start * h * w) & (pool < stop * h * w)] - start * h * w
            if len(here):
                desc = self.descriptors([f[start:stop].to(self.mean.device) for f in levels], [r])[r]
                kept.append(desc.permute(0, 2, 3, 1).reshape(-1, desc.shape[1])[here.to(desc.device)])
        return torch.cat(kept)

    def level_distances(self, levels: list[torch.Tensor], only=None) -> tuple[dict, dict]:
        """({r: d_r (B, h_r, w_r)}, {r: nearest code index}) for every used level (or those in ``only``)."""
        if len(self.codebook(self.used[0])) == 0:
            raise RuntimeError("the code bank is empty: call fit first")
        dist, index = {}, {}
        for r, desc in (self.descriptors(levels, only).items() if only is None or only else ()):
            B, D, h, w = desc.shape
            d, i = nearest_code(desc.permute(0, 2, 3, 1).reshape(-1, D), self.codebook(r))
            dist[r], index[r] = (d / self.scale[r]).view(B, h, w), i.view(B, h, w)
        return dist, index

    def forward(self, levels: list[torch.Tensor], route: torch.Tensor | None = None, every_level: bool = False
                ) -> BankOutput:
        """The routing scores b (B, R, h, w) on the coarse grid (Gumbel-Softmax samples in training
        mode, the hard argmax in eval mode, or the levels of ``route`` (B, h, w) when given: the
        prior's predicted normal budget) and the distance maps of the levels some patch was routed
        to (every used level in training mode or with ``every_level``; None for the others: a
        distance costs a nearest-code search, the router almost nothing)."""
        grid = levels[0].shape[-2:]
        B = levels[0].shape[0]
        logits = None
        if route is not None:
            scores = self.one_hot(route)
        elif self.routes:
            logits = self.router(self.router_input(levels))
            scores = self.router.route(logits, self.cfg.tau, self.training)
        else:
            scores = torch.zeros(B, self.num_levels, *grid, device=self.mean.device)
            scores[:, self.used[0]] = 1
        needed = None if (self.training or every_level) else self.routed_levels(scores)
        dist, index = self.level_distances(levels, needed)
        return BankOutput(scores, logits, [dist.get(r) for r in range(self.num_levels)],
                          [index.get(r) for r in range(self.num_levels)])

    def one_hot(self, route: torch.Tensor) -> torch.Tensor:
        """Routing scores (B, R, h, w) that send each coarse patch to the level ``route`` (B, h, w) names."""
        return F.one_hot(route, self.num_levels).permute(0, 3, 1, 2).float()

    def routed_levels(self, scores: torch.Tensor) -> list[int]:
        """The used levels at least one coarse patch of ``scores`` is routed to."""
        present = scores.detach().flatten(2).amax(2).amax(0) > 0
        return [r for r in self.used if present[r]]

    def reroute(self, levels, out: BankOutput, route: torch.Tensor) -> BankOutput:
        """``out`` routed by ``route`` (B, h, w) instead (the prior's predicted normal budget), keeping
        the distances already computed: :meth:`error_map` computes only the levels still missing."""
        return out._replace(scores=self.one_hot(route), logits=None)

    def evidence(self, levels, out: BankOutput, cfg) -> torch.Tensor:
        """The distance map of the routed levels (:meth:`error_map`, ``cfg.route``)."""
        return self.error_map(out, levels, cfg.route)

    def error_map(self, out: BankOutput, levels: list[torch.Tensor], route: str = "router") -> torch.Tensor:
        """The anomaly map on the finest grid, (B, 1, h_f, w_f): at each coarse patch the distance
        map of the level it was routed to (``route='router'``), or of one fixed level, or the mean
        of the levels (the router's ablations, :data:`ROUTE_CHOICES`). Levels ``out`` did not
        compute are computed here."""
        finest = levels[-1].shape[-2:]
        wanted = (self.routed_levels(out.scores) if route == "router"
                  else self.used if route == "mean" else [ROUTE_CHOICES.index(route) - 1])
        if any(r not in self.used for r in wanted):
            raise ValueError(f"route {route!r}: this model has no codebook at that level")
        missing = [r for r in wanted if out.distances[r] is None]
        extra = self.level_distances(levels, missing)[0] if missing else {}
        maps = {r: resample((out.distances[r] if r not in extra else extra[r])[:, None], finest) for r in wanted}
        if route == "mean":
            return sum(maps.values()) / len(maps)
        if route != "router":
            return maps[wanted[0]]
        mask = F.interpolate(out.scores, size=finest, mode="nearest")
        return sum(mask[:, r:r + 1] * m for r, m in maps.items())


# ------------------------------------------------------------------------------ the router

def coarse_distances(out: BankOutput, grid) -> torch.Tensor:
    """Each level's distance map averaged over every coarse patch: (B, R, h, w)."""
    return torch.stack([resample(d[:, None], grid)[:, 0] for d in out.distances], 1)


def router_loss(scores: torch.Tensor, normal: torch.Tensor, entropy: torch.Tensor, lam: float, patch: int,
                painted_scores: torch.Tensor | None = None, anomalous: torch.Tensor | None = None,
                anomaly_weight: torch.Tensor | None = None, painted_entropy: torch.Tensor | None = None):
    """The router's objective: the routed distance term plus λ·L_Budget (Eq. of Sec. III-B.2).

    ``scores`` (B, R, h, w) are Gumbel-Softmax samples on the coarse patches of normal images whose
    per-level distances are ``normal`` (B, R, h, w). With ``anomalous`` (the same images with a
    synthetic anomaly pasted in, routed by the router on their own features: ``painted_scores``) and
    ``anomaly_weight`` (B, h, w), the share of each coarse patch the anomaly covers, and their
    DWT entropy ``painted_entropy``, the term is a
    margin: the routed log distance of normal patches minus that of the anomalous ones (lower when
    the chosen level separates them more), and the budget is charged on both. Without, it is the
    routed distance of normal patches alone. The budget counts one value per coarse patch
    (distances are about 1 per patch), so λ = 1.25 weighs a fine patch's cost about as much as a
    typical distance. Returns (loss, term, budget).
    """
    budget = budget_loss(scores, entropy, patch, values_per_patch=1)
    if anomalous is None:
        term = (scores * normal).sum(1).mean()
    else:
        w = anomaly_weight
        normal_term = (scores * normal.clamp(min=1e-6).log()).sum(1).mean()
        anomalous_term = ((painted_scores * anomalous.clamp(min=1e-6).log()).sum(1) * w).sum() / w.sum().clamp(min=1e-6)
        term = normal_term - anomalous_term
        budget = (budget + budget_loss(painted_scores, painted_entropy, patch, values_per_patch=1)) / 2
    return term + lam * budget, term, budget


def train_router(model: CodeBankPVQAE, levels: list[torch.Tensor], entropy: torch.Tensor, cfg: TrainConfig,
                 painted: tuple | None = None, batch_size: int = 64) -> dict:
    """Train the Dynamic Routing Module of a fitted code bank (its codebooks stay fixed).

    ``levels``: the normal training maps; ``entropy`` (N, h, w) the DWT entropy under each coarse
    patch; ``painted``: (maps of M training images with a synthetic anomaly pasted in, the share of
    each coarse patch the anomaly covers (M, h, w), their entropy (M, h, w)) for the margin
    objective (:func:`router_loss`). The per-level coarse distances are computed once, so a step
    costs only the MLP. λ follows ``cfg.schedule`` up to ``cfg.lambda_max`` over ``cfg.epochs``
    passes over the normal images. Returns the history (loss, term, budget, λ, mean routed level).
    """
    device = model.mean.device
    model.eval()
    grid = levels[0].shape[-2:]

    def precompute(maps):
        inputs, dists = [], []
        with torch.no_grad():
            for i in range(0, len(maps[0]), batch_size):
                x = [f[i:i + batch_size].to(device) for f in maps]
                out = model(x, route=torch.zeros(len(x[0]), *grid, dtype=torch.long, device=device),
                            every_level=True)
                dists.append(coarse_distances(out, grid))
                inputs.append([F.adaptive_avg_pool2d(f, grid) for f in model.router_input(x)])
        return [torch.cat(p) for p in zip(*inputs)], torch.cat(dists)

    n = len(levels[0])
    pooled, normal = precompute(levels)
    entropy = entropy.to(device)
    if painted is not None:
        painted_pooled, anomalous = precompute(painted[0])
        weight, painted_entropy = painted[1].to(device), painted[2].to(device)
    torch.manual_seed(cfg.seed)
    opt = torch.optim.Adam(model.router.parameters(), lr=cfg.lr)
    batch_size = min(batch_size, n)
    steps = max(1, n // batch_size)
    total = cfg.epochs * steps
    history: dict = {}
    model.router.train()
    for epoch in range(cfg.epochs):
        g = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch * 1_009)
        order = torch.randperm(n, generator=g)
        order_painted = torch.randperm(len(anomalous), generator=g) if painted is not None else None
        for i in range(steps):
            step = epoch * steps + i
            index = order[i * batch_size:(i + 1) * batch_size].to(device)
            lam = lambda_at(step / max(1, total - 1), cfg.lambda_max, cfg.schedule)
            scores = model.router.route(model.router([p[index] for p in pooled]), model.cfg.tau, True)
            more = {}
            if painted is not None:       # the painted twins are routed on their own features (no label)
                j = order_painted[torch.arange(i * batch_size, (i + 1) * batch_size) % len(order_painted)].to(device)
                more = {"painted_scores": model.router.route(model.router([p[j] for p in painted_pooled]),
                                                             model.cfg.tau, True),
                        "anomalous": anomalous[j], "anomaly_weight": weight[j], "painted_entropy": painted_entropy[j]}
            loss, term, budget = router_loss(scores, normal[index], entropy[index], lam, model.cfg.coarse_stride,
                                             **more)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            for k, v in (("loss", loss.item()), ("term", term.item()), ("budget", budget.item()), ("lambda", lam),
                         ("mean_level", float(scores.detach().argmax(1).float().mean()))):
                history.setdefault(k, []).append(v)
    model.eval()
    return history


__all__ = ["CodeBankPVQAE", "BankOutput", "BANK_MODELS", "ROUTE_CHOICES", "nearest_code", "router_loss",
           "train_router", "coarse_distances"]
