"""Vector quantization: the codebook at the heart of VQ-VAE (Chapter 2), and lookup-free
quantization, its codebook-free binary variant (Chapter 9).

Layout: (B, C, H, W) in and out; flattened to (B·H·W, C) inside.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import check_lfq_size


class QuantizerOutput(NamedTuple):
    quantized: torch.Tensor   # (B, C, H, W), straight-through: forward = codes, backward = identity
    indices: torch.Tensor     # (B, H, W) long
    loss: torch.Tensor        # weighted scalar for backward: codebook + beta * commitment
    logs: dict                # detached, unweighted terms: codebook, commitment, perplexity, usage


def straight_through(z_e: torch.Tensor, z_q: torch.Tensor) -> torch.Tensor:
    """Forward pass gives ``z_q``, backward pass copies the gradient to ``z_e`` (van den Oord 2017)."""
    return z_e + (z_q - z_e).detach()


def vq_losses(z_e: torch.Tensor, z_q: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The two codebook terms of the paper's L_VQ (Sec. III-A.1).

    codebook   = ||sg[E(x)] - q||²   moves the codes towards the encoder outputs;
    commitment = ||sg[q] - E(x)||²   keeps the encoder near its codes, weighted by beta.
    Returns (codebook, commitment), unweighted, as means over elements.
    """
    codebook = F.mse_loss(z_q, z_e.detach())
    commitment = F.mse_loss(z_e, z_q.detach())
    return codebook, commitment


def perplexity(indices: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """exp(entropy) of code usage: 1 when one code is used, ``codebook_size`` when all are used evenly."""
    counts = torch.bincount(indices.flatten(), minlength=codebook_size).float()
    p = counts / counts.sum().clamp(min=1)
    return torch.exp(-(p * torch.log(p.clamp(min=1e-10))).sum())


class VectorQuantizer(nn.Module):
    """Nearest-neighbour codebook lookup q = argmin_m ||z - q_m||² with a straight-through gradient.

    Dead codes (unused for a while) are restarted on random encoder outputs by
    :meth:`update_codebook`, which the training step calls explicitly: ``forward`` has no
    side effects.
    """

    def __init__(self, codebook_size: int, dim: int, beta: float = 0.25, dead_after: float = 0.03):
        super().__init__()
        self.codebook_size, self.dim, self.beta = codebook_size, dim, beta
        self.dead_after = dead_after  # a code is dead when its usage EMA falls below this share of uniform
        self.codebook = nn.Embedding(codebook_size, dim)
        nn.init.uniform_(self.codebook.weight, -1.0 / codebook_size, 1.0 / codebook_size)
        self.register_buffer("usage", torch.ones(codebook_size) / codebook_size)

    def lookup(self, z: torch.Tensor) -> torch.Tensor:
        """Indices of the nearest codes for flat vectors z: (M, C) -> (M,)."""
        codes = self.codebook.weight
        dist = z.pow(2).sum(1, keepdim=True) - 2 * z @ codes.t() + codes.pow(2).sum(1)[None]  # (M, K)
        return dist.argmin(1)

    def embed(self, indices: torch.Tensor) -> torch.Tensor:
        """Codes for indices: (B, H, W) -> (B, C, H, W)."""
        return self.codebook(indices).permute(0, 3, 1, 2)

    def forward(self, z_e: torch.Tensor) -> QuantizerOutput:
        B, C, H, W = z_e.shape
        flat = z_e.permute(0, 2, 3, 1).reshape(-1, C).float()          # (B·H·W, C)
        indices = self.lookup(flat).view(B, H, W)
        z_q = self.embed(indices).to(z_e.dtype)
        codebook, commitment = vq_losses(z_e, z_q, self.beta)
        loss = codebook + self.beta * commitment
        logs = {"codebook": codebook.detach(), "commitment": commitment.detach(),
                "perplexity": perplexity(indices, self.codebook_size),
                "usage": (torch.bincount(indices.flatten(), minlength=self.codebook_size) > 0).float().mean()}
        return QuantizerOutput(straight_through(z_e, z_q), indices, loss, logs)

    @torch.no_grad()
    def init_from(self, z_e: torch.Tensor) -> None:
        """Set the codebook to encoder outputs drawn at random from ``z_e`` (B, C, H, W), with
        replacement when there are fewer than codes: a data-dependent start (as the k-means init of
        vector-quantize-pytorch, without its iterations). From the default tiny uniform start, every
        output first falls on the same few codes, and dead-code restarts take hundreds of steps to
        bring the rest into use (the feature model, chapter 8b)."""
        flat = z_e.detach().permute(0, 2, 3, 1).reshape(-1, self.dim).float()
        pick = torch.randperm(len(flat), device=flat.device)[:self.codebook_size]
        if len(pick) < self.codebook_size:
            pick = torch.randint(len(flat), (self.codebook_size,), device=flat.device)
        self.codebook.weight.data.copy_(flat[pick])
        self.usage.fill_(1.0 / self.codebook_size)

    @torch.no_grad()
    def update_codebook(self, z_e: torch.Tensor, indices: torch.Tensor, weight: torch.Tensor | None = None,
                        decay: float = 0.99) -> int:
        """Track usage and restart dead codes on random encoder outputs; returns how many were restarted.

        ``weight`` (B, H, W) in [0, 1] says which positions really used this codebook (the routed
        ones); by default all did.
        """
        w = torch.ones_like(indices, dtype=torch.float) if weight is None else weight.float()
        counts = torch.zeros(self.codebook_size, device=indices.device).index_add_(0, indices.flatten(), w.flatten())
        self.usage.mul_(decay).add_((1 - decay) * counts / counts.sum().clamp(min=1))
        dead = self.usage < self.dead_after / self.codebook_size
        num_dead = int(dead.sum())
        if num_dead:
            flat = z_e.detach().permute(0, 2, 3, 1).reshape(-1, self.dim).float()
            pick = torch.randint(len(flat), (num_dead,), device=flat.device)
            self.codebook.weight.data[dead] = flat[pick]
            self.usage[dead] = 1.0 / self.codebook_size
        return num_dead


# ---------------------------------------------------------------------------- lookup-free (chapter 9)





def binary_entropy(p: torch.Tensor) -> torch.Tensor:
    """H(p) = -p log p - (1-p) log(1-p) in nats, elementwise."""
    return -(p * torch.log(p.clamp(min=1e-10)) + (1 - p) * torch.log((1 - p).clamp(min=1e-10)))


def lfq_entropies(z: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-sample, codebook) entropy in nats of the soft code assignment of flat z (M, C).

    The soft assignment is softmax_k(-||z - c_k||² / τ) over the 2^C codes c_k in {-1, +1}^C (as in
    MAGVIT-v2 and vector-quantize-pytorch's LFQ). Since ||z - c||² = const - 2 z·c, it factorizes into
    independent bits with P(bit i = +1) = sigmoid(4 z_i / τ), so no (M, 2^C) tensor is needed:
    per-sample E[H(q(z))] = mean over z of the sum of the bits' binary entropies (exact);
    codebook H[E q(z)] <= sum of the binary entropies of the batch-mean bit probabilities (entropy
    is subadditive). We use that factorized upper bound, as BSQ does (Zhao et al. 2024): it ignores
    correlations between bits, so it reads high when bits flip together.
    """
    p = torch.sigmoid(4 * z / temperature)               # (M, C) probability that bit i is +1
    per_sample = binary_entropy(p).sum(1).mean()         # E[H(q(z))]
    codebook = binary_entropy(p.mean(0)).sum()           # ~ H[E q(z)], factorized
    return per_sample, codebook


class LookupFreeQuantizer(nn.Module):
    """Lookup-free quantization (Yu et al. 2023, MAGVIT-v2, Sec. 3.1), as LFQUIAD uses it (Lin & Lai).

    Each of the C channels is quantized to its sign, q(z_i) = -1 if z_i <= 0 else +1, so the implicit
    codebook is {-1, +1}^C with 2^C codes and no lookup. The index is the binary code
    Index(z) = sum_i 2^i 1[z_i > 0], channel 0 being the least significant bit. Gradients pass
    straight through. The loss is the entropy penalty plus the commitment term,
    L = w (E[H(q(z))] - γ H[E q(z)]) + β ||z - sg[q(z)]||²,
    low per-sample entropy (confident bits) and high codebook entropy (all codes used); see
    :func:`lfq_entropies`. LFQUIAD (Sec. 4.3): 2^16 codes, w = 0.02, γ = 1.0.
    """

    def __init__(self, dim: int, beta: float = 0.25, entropy_weight: float = 0.02, gamma: float = 1.0,
                 temperature: float = 0.01):
        super().__init__()
        check_lfq_size(2 ** dim, dim)
        self.dim, self.codebook_size, self.beta = dim, 2 ** dim, beta
        self.entropy_weight, self.gamma, self.temperature = entropy_weight, gamma, temperature
        self.register_buffer("bit_values", 2 ** torch.arange(dim), persistent=False)   # (C,) 1, 2, 4, ...
        self.register_buffer("usage", torch.ones(self.codebook_size) / self.codebook_size)

    def embed(self, indices: torch.Tensor) -> torch.Tensor:
        """Codes for indices: (B, H, W) -> (B, C, H, W) of ±1."""
        bits = (indices[..., None] & self.bit_values) > 0                          # (B, H, W, C)
        return (bits.float() * 2 - 1).permute(0, 3, 1, 2)

    def forward(self, z_e: torch.Tensor) -> QuantizerOutput:
        B, C, H, W = z_e.shape
        flat = z_e.permute(0, 2, 3, 1).reshape(-1, C).float()                      # (B·H·W, C)
        indices = ((flat > 0).long() * self.bit_values).sum(1).view(B, H, W)
        z_q = torch.where(z_e > 0, 1.0, -1.0).to(z_e.dtype)                         # sign, 0 -> -1
        per_sample, codebook = lfq_entropies(flat, self.temperature)
        commitment = F.mse_loss(z_e.float(), z_q.float())                           # ||z - sg[q(z)]||²
        loss = self.entropy_weight * (per_sample - self.gamma * codebook) + self.beta * commitment
        counts = torch.bincount(indices.flatten(), minlength=self.codebook_size)
        logs = {"per_sample_entropy": per_sample.detach(), "codebook_entropy": codebook.detach(),
                "commitment": commitment.detach(), "perplexity": perplexity(indices, self.codebook_size),
                "usage": (counts > 0).float().mean()}
        return QuantizerOutput(straight_through(z_e, z_q), indices, loss, logs)

    @torch.no_grad()
    def update_codebook(self, z_e: torch.Tensor, indices: torch.Tensor, weight: torch.Tensor | None = None,
                        decay: float = 0.99) -> int:
        """Track code usage (EMA, weighted like VectorQuantizer's); LFQ has no dead codes to restart: 0."""
        w = torch.ones_like(indices, dtype=torch.float) if weight is None else weight.float()
        counts = torch.zeros(self.codebook_size, device=indices.device).index_add_(0, indices.flatten(), w.flatten())
        self.usage.mul_(decay).add_((1 - decay) * counts / counts.sum().clamp(min=1))
        return 0


@torch.no_grad()
def kmeans(x: torch.Tensor, k: int, iters: int = 5, seed: int = 0, chunk: int = 4096) -> torch.Tensor:
    """A codebook fitted without gradients: Lloyd's k-means of the rows of ``x`` (N, D), (k, D) out.

    Codes start on ``k`` distinct rows drawn at random; each iteration assigns every row to its
    nearest code and moves each code to the mean of its rows. A code left with no row (dead) is
    restarted on the rows farthest from their codes, the k-means form of the dead-code restarts
    the trained quantizers use. Used where a codebook is read as a memory bank of normal features
    (:mod:`pvqae_lib.nn.codebank`): the codebook that minimises the quantization error ||z - q||²,
    which is what the VQ codebook term of L_VQ moves towards, reached in a few passes.
    """
    x = x.float()
    n = len(x)
    if not 1 <= k <= n:
        raise ValueError(f"k-means needs 1 <= k <= the number of rows ({n}), got k={k}")
    g = torch.Generator().manual_seed(seed)
    codes = x[torch.randperm(n, generator=g)[:k].to(x.device)].clone()
    for _ in range(iters):
        dist, assign = [], []
        for i in range(0, n, chunk):
            m = torch.cdist(x[i:i + chunk], codes).min(1)
            dist.append(m.values)
            assign.append(m.indices)
        dist, assign = torch.cat(dist), torch.cat(assign)
        sums = torch.zeros_like(codes).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).to(x.dtype)
        alive = counts > 0
        codes[alive] = sums[alive] / counts[alive, None]
        dead = int((~alive).sum())
        if dead:                          # restart dead codes on the worst-served rows
            codes[~alive] = x[dist.topk(dead).indices]
    return codes


def build_quantizer(kind: str, codebook_size: int, dim: int, beta: float) -> nn.Module:
    """The quantizer named by ``--quantizer``: 'vq' (codebook lookup) or 'lfq' (codebook_size = 2**dim)."""
    if kind == "vq":
        return VectorQuantizer(codebook_size, dim, beta)
    if kind == "lfq":
        check_lfq_size(codebook_size, dim)
        return LookupFreeQuantizer(dim, beta)
    raise ValueError(f"unknown quantizer {kind!r}: use vq or lfq")


LFQ_AVAILABLE = True
