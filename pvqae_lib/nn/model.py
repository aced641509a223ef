"""The autoencoders: a VQGAN-style encoder with a three-level hierarchy, a decoder that takes
routed multi-resolution codes, ``PVQAE`` and the plain ``VQVAE`` baseline (Chapters 2 and 3).

Images are (B, 3, H, W) in [0, 1]; inside, the networks see [-1, 1]. Levels are indexed
r = 0 (coarsest) .. R-1 (finest); feature lists are ordered coarsest first.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ModelConfig, ScoreConfig
from .backbones import FINEST_STRIDE, PyramidStatistics, resample, standardize_levels
from .detector import Detector, batch_of, num_inputs
from .quantize import build_quantizer
from .routing import DynamicRouter

PAD_MODE = "reflect"   # how every 3x3 convolution sees past the image border (not VQGAN's zeros)


def conv3x3(cin: int, cout: int) -> nn.Conv2d:
    """A 3x3 convolution that keeps the grid, padded by reflection rather than with zeros.

    Zero padding shows every layer a dark frame around the image; the decoder never reproduces
    the border exactly, and the largest reconstruction error of a normal texture image then sits
    in its corners, where it outranks real defects.
    """
    return nn.Conv2d(cin, cout, 3, padding=1, padding_mode=PAD_MODE)


def normalize(channels: int) -> nn.GroupNorm:
    """GroupNorm as in VQGAN, with fewer groups when the network is narrow."""
    return nn.GroupNorm(min(32, channels // 4), channels, eps=1e-6)


class ResnetBlock(nn.Module):
    """norm → swish → conv, twice, plus a (1x1 when channels change) shortcut (VQGAN)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.block = nn.Sequential(normalize(cin), nn.SiLU(), conv3x3(cin, cout),
                                   normalize(cout), nn.SiLU(), conv3x3(cout, cout))
        self.shortcut = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        return self.shortcut(x) + self.block(x)


class Downsample(nn.Module):
    """Stride-2 3x3 convolution; padded on the right/bottom only, so the grid halves exactly."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1), mode=PAD_MODE))


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = conv3x3(channels, channels)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Encoder(nn.Module):
    """conv → stride-2 stem stages → the level blocks; the last ``num_levels`` blocks give the hierarchy.

    Returns one map of ``code_dim`` channels per level, coarsest first. A VQVAE that quantizes a
    finer level builds fewer level blocks (it never computes what it would not use).
    """

    def __init__(self, cfg: ModelConfig, num_levels: int):
        super().__init__()
        ch = cfg.width
        layers = [conv3x3(3, ch)]
        for mult in cfg.stem_mults:
            layers += [ResnetBlock(ch, cfg.width * mult), Downsample(cfg.width * mult)]
            ch = cfg.width * mult
        self.stem = nn.Sequential(*layers)
        self.levels, self.to_code = nn.ModuleList(), nn.ModuleList()
        for i, mult in enumerate(cfg.level_mults[:num_levels]):      # finest first
            block = [Downsample(ch)] if i > 0 else []
            block.append(ResnetBlock(ch, cfg.width * mult))
            ch = cfg.width * mult
            self.levels.append(nn.Sequential(*block))
            self.to_code.append(nn.Sequential(normalize(ch), nn.SiLU(), nn.Conv2d(ch, cfg.code_dim, 1)))
        self.level_channels = [cfg.width * m for m in cfg.level_mults[:num_levels]][::-1]

    def forward(self, x) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Returns (codes to quantize, features for routing), both coarsest first."""
        h = self.stem(x)
        feats = []
        for level in self.levels:
            h = level(h)
            feats.append(h)
        codes = [proj(f) for proj, f in zip(self.to_code, feats)]
        return codes[::-1], feats[::-1]


class Decoder(nn.Module):
    """Codes on the finest grid → image: two residual blocks, then one upsampling stage per stem stage."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        ch = cfg.width * cfg.level_mults[0]
        layers = [conv3x3(cfg.code_dim, ch), ResnetBlock(ch, ch), ResnetBlock(ch, ch)]
        for mult in reversed(cfg.stem_mults):
            layers += [Upsample(ch), ResnetBlock(ch, cfg.width * mult)]
            ch = cfg.width * mult
        layers += [normalize(ch), nn.SiLU(), conv3x3(ch, 3)]
        self.net = nn.Sequential(*layers)

    @property
    def last_layer(self) -> torch.Tensor:
        """The output convolution's weight, where VQGAN balances the adversarial gradient."""
        return self.net[-1].weight

    def forward(self, z):
        return self.net(z)


class AEOutput(NamedTuple):
    recon: torch.Tensor          # (B, 3, H, W) in image units
    vq_loss: torch.Tensor        # weighted codebook + commitment, averaged over quantized levels
    scores: torch.Tensor         # (B, R, h, w) routing scores b on the coarse grid (one-hot at eval)
    logits: torch.Tensor | None  # (B, R, h, w) router logits g; None for the VQVAE
    codes: list                  # per quantized level: its encoder output z_e (for codebook updates)
    indices: list                # per quantized level: (B, h_r, w_r) code indices
    logs: dict


def combine_levels(levels: list[torch.Tensor], scores: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Σ_r b_r ⊙ q_r on the finest grid: each level's codes and each coarse patch's scores are
    repeated (nearest) up to ``size``, so a patch is drawn from exactly the level it was routed to."""
    mask = F.interpolate(scores, size=size, mode="nearest")                 # (B, R, H_f, W_f)
    return sum(mask[:, r:r + 1] * F.interpolate(q, size=size, mode="nearest") for r, q in enumerate(levels))


def recon_score(recon: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """S_recon = ||x̂ - x||² per pixel, summed over colour channels: (B, 3, H, W) -> (B, H, W)."""
    return (recon.float() - images.float()).pow(2).sum(1)


class PixelAutoencoder(Detector):
    """What the paper's two pixel models share as detectors: they rebuild the image itself, a patch
    discriminator judges the result (Sec. III-B.2), and the evidence is S_recon, the squared error of
    the reconstruction per pixel (Sec. III-C.2)."""

    adversarial = True

    def target(self, images: torch.Tensor) -> torch.Tensor:
        """What the decoder rebuilds: the image."""
        return images

    def evidence(self, inputs, out, cfg: ScoreConfig) -> torch.Tensor:
        return recon_score(out.recon, inputs)[:, None]


class PVQAE(PixelAutoencoder):
    """Patch-aware VQ autoencoder (Cheng, Qu & Lee 2025): routed multi-resolution codes."""

    routes = True

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg, self.num_levels = cfg, cfg.num_levels
        self.encoder = Encoder(cfg, cfg.num_levels)
        self.quantizers = nn.ModuleList(build_quantizer(cfg.quantizer, cfg.codebook_size, cfg.code_dim, cfg.beta)
                                        for _ in range(cfg.num_levels))
        self.router = DynamicRouter(self.encoder.level_channels, cfg.router_hidden)
        self.decoder = Decoder(cfg)
        self.used = list(range(cfg.num_levels))

    def forward(self, x: torch.Tensor, route: torch.Tensor | None = None) -> AEOutput:
        """Reconstruct ``x``; ``route`` (B, h, w), when given, overrides the router's choice
        (scoring reconstructs with the predicted normal budget)."""
        codes, feats = self.encoder(x * 2 - 1)
        qs = [quantizer(z) for quantizer, z in zip(self.quantizers, codes)]
        logits = self.router(feats)
        if route is None:
            scores = self.router.route(logits, self.cfg.tau, self.training)
        else:
            scores = F.one_hot(route, self.num_levels).permute(0, 3, 1, 2).to(logits.dtype)
        z = combine_levels([q.quantized for q in qs], scores, codes[-1].shape[-2:])
        recon = (self.decoder(z) + 1) / 2
        share = scores.detach().mean(dim=(0, 2, 3))
        logs = {f"share_{r}": share[r] for r in range(self.num_levels)}
        logs["perplexity"] = torch.stack([q.logs["perplexity"] for q in qs]).mean()
        vq_loss = torch.stack([q.loss for q in qs]).mean()
        return AEOutput(recon, vq_loss, scores, logits, codes, [q.indices for q in qs], logs)


class VQVAE(PixelAutoencoder):
    """The plain baseline: the same encoder and decoder, one codebook at one fixed level."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg, self.num_levels, self.level = cfg, cfg.num_levels, cfg.vq_level
        self.encoder = Encoder(cfg, cfg.num_levels - cfg.vq_level)   # blocks down to the chosen level
        self.quantizer = build_quantizer(cfg.quantizer, cfg.codebook_size, cfg.code_dim, cfg.beta)
        self.decoder = Decoder(cfg)
        self.grid = cfg.image_size // cfg.coarse_stride
        self.used = [cfg.vq_level]

    def forward(self, x: torch.Tensor, route: torch.Tensor | None = None) -> AEOutput:
        """Reconstruct ``x`` at the one level (``route`` is ignored: there is nothing to route)."""
        codes, _ = self.encoder(x * 2 - 1)
        z_e = codes[0]                                  # the coarsest block it built = its one level
        q = self.quantizer(z_e)
        finest = (z_e.shape[-2] * 2 ** (self.num_levels - 1 - self.level),) * 2
        recon = (self.decoder(F.interpolate(q.quantized, size=finest, mode="nearest")) + 1) / 2
        B = x.shape[0]
        scores = torch.zeros(B, self.num_levels, self.grid, self.grid, device=x.device)
        scores[:, self.level] = 1
        logs = {f"share_{r}": scores.new_tensor(float(r == self.level)) for r in range(self.num_levels)}
        logs["perplexity"] = q.logs["perplexity"]
        return AEOutput(recon, q.loss, scores, None, [z_e], [q.indices], logs)

    @property
    def quantizers(self):
        return [self.quantizer]


# ------------------------------------------------------------------------------- on a feature pyramid

class FeatureAutoencoder(PyramidStatistics, Detector):
    """PVQAE (or a baseline) above a frozen pretrained pyramid: this book's extension (chapter 8).

    The input is the pyramid's maps, coarsest first (:mod:`pvqae_lib.nn.backbones`); everything above
    the encoder is the paper's. Per level, a 1x1 projection of the whole pyramid at that level's
    resolution gives the routing features and the codes z_r; the Dynamic Routing Module picks one
    level per coarse patch (Gumbel-Softmax); each level is quantized (VQ or LFQ) and Σ_r b_r ⊙ q_r
    on the finest grid is decoded. The decoder reconstructs the *features*: every level,
    standardized per channel with the training images' statistics and brought to the finest grid
    (:meth:`target`), so S_recon is a feature error.

    ``cfg.model`` picks the variant on the same features: 'pvqae' (routed, three codebooks),
    'vqvae' (one codebook at ``cfg.vq_level``), 'ae' (the same network with no quantization: what
    the bottleneck alone does). ``forward`` returns :class:`AEOutput`, ``recon`` being the
    reconstructed target.
    """

    input_noise = 0.0   # TrainConfig.feature_noise, set by the trainer: added in training mode only

    @property
    def budget_values_per_patch(self) -> int:
        """The budget's units: the pixel model divides it by the pixel values of a coarse patch (3·32²),
        as its reconstruction term is a mean per pixel value. Standardized features err about a hundred
        times more per value than pixels do, so that scale would leave the budget ~1000x below the
        reconstruction term and λ without effect; the feature model counts one value per finest-grid
        position of a coarse patch (16) instead, a choice λmax's sweep measures (chapter 8b)."""
        return (self.cfg.coarse_stride // FINEST_STRIDE) ** 2

    def __init__(self, cfg: ModelConfig, channels: tuple):
        super().__init__()
        self.cfg, self.num_levels = cfg, cfg.num_levels
        self.channels = tuple(channels)                         # coarsest first
        hid = cfg.feature_hidden
        self.register_buffer("mean", torch.zeros(sum(channels)))
        self.register_buffer("std", torch.ones(sum(channels)))
        self.routes = cfg.model == "pvqae"
        self.used = list(range(self.num_levels)) if self.routes else [cfg.vq_level]   # the levels it codes
        # level r sees the whole pyramid at its own resolution (finer maps averaged down, coarser
        # ones interpolated up): the levels differ in resolution, not in what they know
        self.project = nn.ModuleList(nn.Sequential(nn.Conv2d(sum(channels), hid, 1), nn.GELU()) for _ in channels)
        self.to_code = nn.ModuleList(nn.Conv2d(hid, cfg.code_dim, 1) for _ in channels)
        self.quantizers = nn.ModuleList(build_quantizer(cfg.quantizer, cfg.codebook_size, cfg.code_dim, cfg.beta)
                                        for _ in self.used) if cfg.model != "ae" else nn.ModuleList()
        self.router = DynamicRouter([hid] * self.num_levels, cfg.router_hidden) if self.routes else None
        # light on purpose: one 3x3 convolution mixes neighbouring codes, then 1x1 layers (an epoch
        # of MTSD's 640 tiles costs seconds on a CPU, not minutes)
        self.decoder = nn.Sequential(nn.Conv2d(cfg.code_dim, hid, 3, padding=1, padding_mode=PAD_MODE), nn.GELU(),
                                     nn.Conv2d(hid, hid, 1), nn.GELU(), nn.Conv2d(hid, sum(channels), 1))

    def standardized(self, levels: list[torch.Tensor]) -> list[torch.Tensor]:
        """Each level, per channel, as z-scores of the training features."""
        return standardize_levels(levels, self.mean, self.std)

    def target(self, levels: list[torch.Tensor]) -> torch.Tensor:
        """What the decoder rebuilds: every standardized level on the finest grid, (B, ΣC, h_f, w_f)."""
        levels = self.standardized(levels)
        return torch.cat([resample(f, levels[-1].shape[-2:]) for f in levels], 1)

    @torch.no_grad()
    def prepare(self, levels: list[torch.Tensor], num_images: int = 64) -> None:
        """Before the first step: the training maps' statistics (:meth:`set_statistics`), and every VQ
        codebook started from the untrained encoder's outputs on a random sample of the training
        images (``VectorQuantizer.init_from``; LFQ has no codebook to start)."""
        self.set_statistics(levels)
        sample = torch.randperm(num_inputs(levels))[:num_images]
        out = self.eval()(batch_of(levels, sample, self.device))
        for j, quantizer in enumerate(self.quantizers):
            if hasattr(quantizer, "init_from"):
                quantizer.init_from(out.codes[j])
        self.train()

    def evidence(self, levels, out, cfg: ScoreConfig) -> torch.Tensor:
        """S_recon on the finest grid, (B, 1, h_f, w_f): the mean squared error of the standardized
        features, or with ``cfg.feature_score='code'`` the distance of each code to its codebook
        (:meth:`code_distance`)."""
        if cfg.feature_score == "code":
            return self.code_distance(out)
        return (out.recon - self.target(levels)).pow(2).mean(1, keepdim=True)

    def code_distance(self, out: AEOutput) -> torch.Tensor:
        """||z - q||² per position on the finest grid, (B, 1, h_f, w_f): how far each code vector lies
        from the nearest entry of its level's codebook, at the level the router chose.

        A codebook trained on normal features is a learned memory bank, as PatchCore's coreset is: a
        feature no normal patch resembles lies far from every code (ScoreConfig.feature_score='code',
        chapter 8 measures it against the reconstruction error; the code bank,
        :mod:`pvqae_lib.nn.codebank`, is the model built on that reading).
        """
        if not len(self.quantizers):
            raise ValueError("feature_score='code' needs a quantized model (pvqae or vqvae), not the plain autoencoder")
        finest = out.recon.shape[-2:]
        dist = []
        for j, quantizer in enumerate(self.quantizers):
            q = quantizer.embed(out.indices[j]).to(out.codes[j].dtype)
            dist.append(F.interpolate((out.codes[j] - q).pow(2).sum(1, keepdim=True), size=finest, mode="nearest"))
        if not self.routes:
            return dist[0]
        mask = F.interpolate(out.scores, size=finest, mode="nearest")
        return sum(mask[:, r:r + 1] * d for r, d in enumerate(dist))

    def forward(self, levels: list[torch.Tensor], route: torch.Tensor | None = None) -> AEOutput:
        """``route`` (B, h, w), when given, overrides the router (scoring with the predicted normal
        budget). In training mode Gaussian noise of spread :attr:`input_noise` is added to the
        standardized input (a denoising autoencoder's guard against copying its input)."""
        x = self.standardized(levels)
        noise = self.input_noise if self.training else 0.0
        if noise > 0:
            x = [f + noise * torch.randn_like(f) for f in x]
        hidden = [p(torch.cat([resample(f, g.shape[-2:]) for f in x], 1)) for p, g in zip(self.project, x)]
        B = x[0].shape[0]
        grid, finest = x[0].shape[-2:], x[-1].shape[-2:]
        codes = [self.to_code[r](hidden[r]) for r in self.used]
        qs = [q(z) for q, z in zip(self.quantizers, codes)]
        quantized = [q.quantized for q in qs] if qs else codes
        logits = None
        if self.routes:
            logits = self.router(hidden)
            if route is None:
                scores = self.router.route(logits, self.cfg.tau, self.training)
            else:
                scores = F.one_hot(route, self.num_levels).permute(0, 3, 1, 2).to(logits.dtype)
            z = combine_levels(quantized, scores, finest)
        else:
            scores = torch.zeros(B, self.num_levels, *grid, device=x[0].device)
            scores[:, self.used[0]] = 1
            z = F.interpolate(quantized[0], size=finest, mode="nearest")
        recon = self.decoder(z)
        share = scores.detach().mean(dim=(0, 2, 3))
        logs = {f"share_{r}": share[r] for r in range(self.num_levels)}
        if qs:
            logs["perplexity"] = torch.stack([q.logs["perplexity"] for q in qs]).mean()
            vq_loss = torch.stack([q.loss for q in qs]).mean()
        else:
            vq_loss = z.new_zeros(())
        return AEOutput(recon, vq_loss, scores, logits, codes, [q.indices for q in qs], logs)
