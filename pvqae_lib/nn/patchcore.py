"""PatchCore (Roth et al., CVPR 2022): a memory bank of normal patch features, the paper's Table I
peer and what a practitioner would pick instead of a trained autoencoder (chapter 8).

On the same frozen pyramid as the feature PVQAE (:mod:`pvqae_lib.nn.backbones`):

1. every position of the two finest levels (strides 8 and 16) is averaged over its 3x3
   neighbourhood (PatchCore's "locally aware" patch features), the stride-16 map is brought to
   the stride-8 grid, and the two are concatenated;
2. a greedy coreset (k-center on a random projection, PatchCore Alg. 1) keeps ``coreset_ratio``
   of all training patches as the memory bank. To fit a CPU budget the greedy search runs over
   ``candidates`` patches drawn at random, at least ten times the bank (MTSD's 640 training
   tiles give 500,000 patches; a full greedy pass over them took over 7 minutes here, on 2
   shared cores);
3. a test patch's score is its Euclidean distance to the nearest patch of the bank; the image
   score is the maximum of the (up-sampled, smoothed) map, as for PVQAE's S.

Where this differs from Roth et al.: the two levels are concatenated as they are (the paper pools
each to a common dimension and averages them), so the stride-16 level, with more channels, weighs
more in the distance; the image score is the map's maximum, without the paper's reweighting
(its Eq. 7); the map is smoothed with the book's σ (2 px at 64 px, 7 px at 224 px) where the paper
uses 4 px. Each keeps PatchCore and PVQAE on the same footing in this book's comparison.

Nothing is trained: ``fit`` takes seconds to minutes on a CPU, most of it the coreset.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

from .detector import Detector


@dataclass
class PatchCoreConfig:
    """The memory bank's size and how it is chosen."""
    coreset_ratio: float = 0.01     # share of the training patches kept (PatchCore: 1 % is its standard setting)
    projection_dim: int = 128       # random projection for the coreset distances (Johnson-Lindenstrauss)
    neighbourhood: int = 3          # side of the local average around each patch
    candidates: int = 50_000        # the coreset is chosen among at most this many random training patches

    def __post_init__(self):
        if not 0 < self.coreset_ratio <= 1:
            raise ValueError(f"coreset_ratio must be in (0, 1], got {self.coreset_ratio}")
        if self.candidates < 1:
            raise ValueError(f"candidates must be >= 1, got {self.candidates}")
        if self.projection_dim < 1 or self.neighbourhood < 1 or self.neighbourhood % 2 == 0:
            raise ValueError("projection_dim must be >= 1 and neighbourhood an odd number >= 1")


def patch_features(levels: list[torch.Tensor], neighbourhood: int = 3) -> torch.Tensor:
    """Locally aware patch features of the two finest levels: (B, C_1 + C_2, h, w) on the finest grid.

    ``levels`` are the pyramid's maps, coarsest first; the last two are used (strides 16 and 8).
    """
    pad = neighbourhood // 2
    mid, fine = (F.avg_pool2d(f.float(), neighbourhood, 1, pad, count_include_pad=False) for f in levels[-2:])
    mid = F.interpolate(mid, size=fine.shape[-2:], mode="bilinear", align_corners=False)
    return torch.cat([fine, mid], dim=1)


def greedy_coreset(points: torch.Tensor, size: int, projection_dim: int = 128, seed: int = 0) -> torch.Tensor:
    """Indices of ``size`` rows of ``points`` (N, D) chosen by greedy k-center selection.

    Each step adds the point farthest from everything chosen so far (PatchCore Alg. 1). Distances
    are measured after a random linear projection to ``projection_dim`` dimensions, which keeps
    them nearly unchanged (Johnson-Lindenstrauss) at a fraction of the cost.
    """
    N = len(points)
    size = max(1, min(size, N))
    g = torch.Generator().manual_seed(seed)
    if projection_dim < points.shape[1]:
        proj = torch.randn(points.shape[1], projection_dim, generator=g) / projection_dim ** 0.5
        points = points @ proj.to(points.device, points.dtype)
    chosen = torch.empty(size, dtype=torch.long)
    chosen[0] = torch.randint(N, (1,), generator=g).item()
    nearest = (points - points[chosen[0]]).pow(2).sum(1)
    for i in range(1, size):
        chosen[i] = nearest.argmax()
        nearest = torch.minimum(nearest, (points - points[chosen[i]]).pow(2).sum(1))
    return chosen


def nearest_distance(queries: torch.Tensor, memory: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    """Euclidean distance of each row of ``queries`` (M, D) to its nearest row of ``memory`` (K, D)."""
    out = [torch.cdist(queries[i:i + chunk], memory).amin(1) for i in range(0, len(queries), chunk)]
    return torch.cat(out) if out else queries.new_zeros(0)


class PatchCoreOutput(NamedTuple):
    scores: torch.Tensor       # (B, R, h, w) on the coarse grid: every patch at the finest level (no router)
    distances: torch.Tensor    # (B, h_f, w_f) distance of each patch to its nearest neighbour in the memory


class PatchCore(Detector):
    """A memory bank of normal patches; ``forward(levels)`` gives their distance maps
    (:class:`PatchCoreOutput`; the detector contract, :mod:`pvqae_lib.nn.detector`).

    The bank is a buffer, so ``state_dict`` saves it (as tensors only) with the run.
    """

    fitted_by = "memory"
    resized_buffers = ("memory",)

    def __init__(self, cfg: PatchCoreConfig | None = None, dim: int = 0, num_levels: int = 3):
        super().__init__()
        self.cfg, self.num_levels = cfg or PatchCoreConfig(), num_levels
        self.used = [num_levels - 1]
        self.register_buffer("memory", torch.zeros(0, dim))

    @torch.no_grad()
    def fit(self, levels: list[torch.Tensor], seed: int = 0, batch_size: int = 64) -> PatchCore:
        """Build the bank from the pyramid maps of the normal training images (coarsest first).

        The random candidate pool is drawn first and only its patches are kept, batch by batch, so
        memory holds the pool, not every training patch (1000 tiles of wide-resnet50 at 224 px
        would be 4.5 GB of float32 patches). The pool holds at least ten times the bank.
        """
        n, (h, w) = len(levels[0]), levels[-1].shape[-2:]
        total = n * h * w
        size = max(1, round(self.cfg.coreset_ratio * total))
        pool_size = min(total, max(self.cfg.candidates, 10 * size))
        g = torch.Generator().manual_seed(seed)
        pool = torch.randperm(total, generator=g)[:pool_size].sort().values
        kept = []
        for start in range(0, n, batch_size):
            stop = min(n, start + batch_size)
            emb = patch_features([f[start:stop] for f in levels], self.cfg.neighbourhood)
            flat = emb.permute(0, 2, 3, 1).reshape(-1, emb.shape[1])
            here = pool[(pool >= start * h * w) & (pool < stop * h * w)] - start * h * w
            kept.append(flat[here])
        feats = torch.cat(kept)
        self.memory = feats[greedy_coreset(feats, size, self.cfg.projection_dim, seed)].clone()
        return self

    @torch.no_grad()
    def forward(self, levels: list[torch.Tensor], route: torch.Tensor | None = None) -> PatchCoreOutput:
        """The distance maps of the pyramid maps ``levels`` (coarsest first); ``route`` is ignored
        (nothing is routed: the scores put every coarse patch at the finest level)."""
        if len(self.memory) == 0:
            raise RuntimeError("PatchCore has an empty memory bank: call fit first")
        emb = patch_features(levels, self.cfg.neighbourhood)
        B, D, h, w = emb.shape
        dist = nearest_distance(emb.permute(0, 2, 3, 1).reshape(-1, D), self.memory.to(emb.dtype))
        scores = torch.zeros(B, len(levels), *levels[0].shape[-2:], device=emb.device)
        scores[:, len(levels) - 1] = 1
        return PatchCoreOutput(scores, dist.view(B, h, w))

    def evidence(self, levels, out: PatchCoreOutput, cfg) -> torch.Tensor:
        return out.distances[:, None]
