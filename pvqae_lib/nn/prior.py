"""The Budget Prior Transformer (Sec. III-C.1, Chapter 6).

It learns the *normal* resolution maps: the coarse budget map is flattened to a sequence of
level indices, a class token is prepended, and one transformer block predicts masked tokens
from all the others (as VQGAN's transformer does for codes).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import PriorConfig
from ..progress import progress_bar

ATTENTION_ELEMENTS = 2 ** 26   # per inference chunk: 256 MB of float32 attention scores


def class_tokens(categories: torch.Tensor, per_class: bool) -> torch.Tensor:
    """The Budget Prior Transformer's class token of each image (its category index, ``categories``
    (N,)): the category itself for a per-class prior, 0 (the one class) for the universal prior."""
    return categories if per_class else torch.zeros_like(categories)


class BudgetPrior(nn.Module):
    """One transformer block over [CLS, b_1, ..., b_N] with a learnable level embedding E ∈ R^{R×d}.

    ``num_classes`` counts the class tokens: a universal prior uses one (token 0 for every image),
    a per-class prior one per category.
    """

    def __init__(self, num_levels: int, num_tokens: int, num_classes: int, cfg: PriorConfig):
        super().__init__()
        self.num_levels, self.num_tokens, self.num_classes, self.cfg = num_levels, num_tokens, num_classes, cfg
        d = cfg.dim
        self.level_embed = nn.Embedding(num_levels, d)          # E ∈ R^{R×d}, the paper's 3×d
        self.mask_embed = nn.Parameter(torch.zeros(d))          # stands in for a hidden level
        self.class_embed = nn.Embedding(num_classes, d)         # the CLS token, one per class
        self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens + 1, d))
        self.block = nn.TransformerEncoderLayer(d, cfg.heads, 4 * d, cfg.dropout, activation="gelu",
                                                batch_first=True, norm_first=True)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, num_levels)
        nn.init.normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.mask_embed, std=0.02)

    def forward(self, levels: torch.Tensor, mask: torch.Tensor, classes: torch.Tensor,
                targets: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """levels (B, N) long, mask (B, N) bool (True = hidden), classes (B,) long.

        Returns (logits (B, N, R), loss): the loss is the paper's L_Prior = Σ CE(b, b̂) over the
        masked positions, None without targets.
        """
        tokens = self.level_embed(levels)                                      # (B, N, d)
        tokens = torch.where(mask[..., None], self.mask_embed.to(tokens.dtype), tokens)
        x = torch.cat([self.class_embed(classes)[:, None], tokens], dim=1) + self.pos_embed   # (B, N+1, d)
        logits = self.head(self.norm(self.block(x)))[:, 1:]                    # drop the CLS position
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits[mask], targets[mask])
        return logits, loss

    @torch.no_grad()
    def predict(self, levels: torch.Tensor, classes: torch.Tensor | None = None, chunk: int | None = None
                ) -> torch.Tensor:
        """The predicted normal budget B̂_norm as probabilities (B, N, R), given each image's class
        token (:func:`class_tokens`; None: the universal prior's, 0 for every image).

        Position i is predicted with only token i masked, all other tokens visible; the N masks are
        enumerated in one batched pass over (B·N) sequences, not a Python loop over positions.
        The pass is cut into chunks of ``chunk`` sequences (by default as many as keep one
        attention matrix within ATTENTION_ELEMENTS, so a 256 px image's 1024 tokens fit in memory).
        Call ``eval()`` first.
        """
        B, N = levels.shape
        if classes is None:
            classes = torch.zeros(B, dtype=torch.long, device=levels.device)
        chunk = chunk or max(1, ATTENTION_ELEMENTS // (self.cfg.heads * (N + 1) ** 2))
        eye = torch.eye(N, dtype=torch.bool, device=levels.device)
        seqs = levels[:, None, :].expand(B, N, N).reshape(B * N, N)           # copy i masks token i
        masks = eye[None].expand(B, N, N).reshape(B * N, N)
        cls = classes[:, None].expand(B, N).reshape(B * N)
        out = []
        for start in range(0, B * N, chunk):
            logits, _ = self(seqs[start:start + chunk], masks[start:start + chunk], cls[start:start + chunk])
            out.append(logits[masks[start:start + chunk]])                    # the masked position's logits
        return torch.cat(out).view(B, N, self.num_levels).softmax(-1)


def random_mask(shape: tuple[int, int], ratio: tuple[float, float], generator: torch.Generator | None = None,
                device=None) -> torch.Tensor:
    """Each row hides a random share of its tokens (drawn from ``ratio``), at least one."""
    B, N = shape
    share = torch.empty(B, 1).uniform_(*ratio, generator=generator)
    mask = torch.rand(B, N, generator=generator) < share
    mask[torch.arange(B), torch.randint(N, (B,), generator=generator)] = True
    return mask.to(device)


def fit_prior(levels: torch.Tensor, classes: torch.Tensor, num_levels: int, num_classes: int,
              cfg: PriorConfig, seed: int = 0, device=None, progress: bool = False) -> tuple[BudgetPrior, list]:
    """Train a prior on the normal budget maps ``levels`` (M, h, w) with class ids ``classes`` (M,).

    Returns (prior in eval mode, per-step losses).
    """
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    M = len(levels)
    seq = levels.reshape(M, -1).long()
    prior = BudgetPrior(num_levels, seq.shape[1], num_classes, cfg).to(device)
    opt = torch.optim.AdamW(prior.parameters(), lr=cfg.lr, weight_decay=0.01)
    losses = []
    for _ in progress_bar(range(cfg.steps), desc="prior", disable=not progress):
        idx = torch.randint(M, (min(cfg.batch_size, M),), generator=g)
        batch, cls = seq[idx].to(device), classes[idx].long().to(device)
        mask = random_mask(batch.shape, cfg.mask_ratio, g, device)
        _, loss = prior(batch, mask, cls, targets=batch)
        if not math.isfinite(loss.item()):
            raise PriorDiverged(f"the prior's training stopped: its loss became {loss.item()} at step "
                                f"{len(losses) + 1}/{cfg.steps}; lower --prior-lr (now {cfg.lr:g}) and train again "
                                f"with --force")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    if not all(torch.isfinite(p).all() for p in prior.parameters()):
        raise PriorDiverged(f"the prior's training stopped: its weights became NaN or infinite after {cfg.steps} "
                            f"steps; lower --prior-lr (now {cfg.lr:g}) and train again with --force")
    return prior.eval(), losses


class PriorDiverged(ValueError):
    """The prior's loss or weights stopped being finite (one line naming --prior-lr)."""
