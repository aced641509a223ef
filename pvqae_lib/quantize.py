"""Vector quantization: the codebook at the heart of VQ-VAE (Chapter 2).

Layout: (B, C, H, W) in and out; flattened to (B·H·W, C) inside.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F


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


def build_quantizer(kind: str, codebook_size: int, dim: int, beta: float) -> nn.Module:
    """The quantizer named by ``--quantizer``."""
    if kind == "vq":
        return VectorQuantizer(codebook_size, dim, beta)
    if kind == "lfq":
        raise ValueError("--quantizer lfq is not implemented yet (it comes with chapter 9, issue 6); use vq")
    raise ValueError(f"unknown quantizer {kind!r}: use vq or lfq")
LFQ_AVAILABLE = False  # set by the LFQ quantizer (chapter 9)
