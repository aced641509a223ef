"""Synthetic anomalies from normal images: Perlin-noise masks, foreign textures, β-blending (Chapter 10).

The recipe is DRÆM's (Zavrtanik, Kristan & Skočaj, ICCV 2021, Sec. 3.3) as LFQUIAD (Lin & Lai,
Sec. 3.2 "Category-Aware Mask Generation" and "Compositional Blending") uses it for texture
categories, with LFQUIAD's restriction to the object for object categories:

1. a random soft-edged blob mask from thresholded 2-D Perlin noise (random scales, random rotation),
   optionally dilated (:func:`perlin_mask`), intersected with the foreground for objects;
2. foreign content A: another normal image of the set, or a texture from the book's synthetic
   generator, colour-altered; no external texture data set (DRÆM used DTD) is downloaded;
3. Gaussian noise injected into A, then LFQUIAD's compositional blending
   S = β(M⊙N) + (1−β)(M⊙A) + M̄⊙N (:func:`blend`), β drawn per anomaly as in DRÆM.

LFQUIAD's own anomaly content comes from diffusion inpainting (their Anomaly Generation Module); that
optional path is :mod:`pvqae_lib.data.inpaint` and reuses :func:`anomaly_mask` and :func:`blend`.

Images are (3, H, W) floats in [0, 1]; masks are (1, H, W) float {0, 1}. Every random number comes
from one ``torch.Generator``, so the same seed gives the same anomalies.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from . import CATEGORIES, render

# object-centric categories (anomalies only on the object): the synthetic 'disc', MVTec AD's objects
OBJECT_CATEGORIES = ("disc", "bottle", "cable", "capsule", "hazelnut", "metal_nut", "pill", "screw",
                     "toothbrush", "transistor", "zipper")


@dataclass
class AnomalyConfig:
    """How synthetic anomalies are drawn. Defaults follow DRÆM, with scales set for 64-256 px."""
    threshold: float = 0.5          # Perlin noise (in [-1, 1]) above this is anomalous (DRÆM: 0.5)
    scale_range: tuple = (1, 8)     # lattice cells per side, powers of two drawn per axis (DRÆM: 1..32 at 256 px)
    edge: float = 0.2               # width, in noise units, of the soft ramp of alpha around the threshold
    dilation: int = 0               # grow the mask by this many pixels (square max-pool)
    beta_range: tuple = (0.0, 0.8)  # β ~ U(beta_range): share of the normal image kept inside M (DRÆM: 0..0.8)
    noise_std: float = 0.1          # Gaussian noise injected into A has std ~ U(0, noise_std)
    min_area: float = 0.002         # redraw masks covering less than this fraction of the image
    anomaly_prob: float = 0.5       # AnomalySynthesizer: share of a batch that gets an anomaly (DRÆM: 0.5)
    self_texture_prob: float = 0.5  # AnomalySynthesizer: A from another image of the set, else a synthetic texture


# ---------------------------------------------------------------------------------------------
# Perlin noise and masks
# ---------------------------------------------------------------------------------------------

def _fade(t: torch.Tensor) -> torch.Tensor:
    """Perlin's quintic fade 6t⁵ − 15t⁴ + 10t³ (zero first and second derivative at 0 and 1)."""
    return t * t * t * (t * (t * 6 - 15) + 10)


def perlin_noise(shape: tuple[int, int], scale, generator: torch.Generator | None = None) -> torch.Tensor:
    """2-D gradient (Perlin) noise of ``shape`` (H, W) with ``scale`` lattice cells per side
    (an int, or (cells along y, cells along x)). Returns a float32 (H, W) tensor in [-1, 1].

    A random unit gradient sits at every lattice point; each pixel interpolates, with the quintic
    fade, the dot products of its four corner gradients with its offsets to them. As in DRÆM's
    ``rand_perlin_2d`` the result is multiplied by √2, so it fills [-1, 1].
    """
    H, W = shape
    sy, sx = (scale, scale) if isinstance(scale, int) else (int(scale[0]), int(scale[1]))
    if sy < 1 or sx < 1:
        raise ValueError(f"scale must be >= 1 cell per side, got {scale!r}")
    angles = 2 * math.pi * torch.rand(sy + 1, sx + 1, generator=generator)
    grads = torch.stack([torch.sin(angles), torch.cos(angles)], -1)         # (sy+1, sx+1, 2) as (y, x)
    u = (torch.arange(H, dtype=torch.float32) + 0.5) * sy / H               # lattice coordinate of each row
    v = (torch.arange(W, dtype=torch.float32) + 0.5) * sx / W
    i, j = u.floor().long().clamp(max=sy - 1), v.floor().long().clamp(max=sx - 1)
    fy, fx = (u - i)[:, None], (v - j)[None, :]                             # (H, 1), (1, W) offsets in the cell

    def corner(di, dj):                                                     # g(corner) · (offset to corner)
        g = grads[(i + di)[:, None], (j + dj)[None, :]]                     # (H, W, 2)
        return g[..., 0] * (fy - di) + g[..., 1] * (fx - dj)

    wy, wx = _fade(fy), _fade(fx)
    top = torch.lerp(corner(0, 0), corner(0, 1), wx)
    bottom = torch.lerp(corner(1, 0), corner(1, 1), wx)
    return math.sqrt(2) * torch.lerp(top, bottom, wy)


def _rotate(x: torch.Tensor, angle: float) -> torch.Tensor:
    """Rotate an (H, W) map by ``angle`` radians about its centre (bilinear, reflected at the border)."""
    c, s = math.cos(angle), math.sin(angle)
    theta = torch.tensor([[c, -s, 0.0], [s, c, 0.0]], dtype=x.dtype)[None]  # (1, 2, 3)
    grid = F.affine_grid(theta, (1, 1, *x.shape), align_corners=False)
    return F.grid_sample(x[None, None], grid, mode="bilinear", padding_mode="reflection", align_corners=False)[0, 0]


def _dilate(alpha: torch.Tensor, pixels: int) -> torch.Tensor:
    """Grey dilation of an (H, W) map: the maximum over a (2·pixels+1)² square."""
    if pixels <= 0:
        return alpha
    return F.max_pool2d(alpha[None, None], 2 * pixels + 1, stride=1, padding=pixels)[0, 0]


def perlin_mask(size: int, generator: torch.Generator | None = None, threshold: float = 0.5,
                scale_range: tuple = (1, 8), edge: float = 0.2, dilation: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A random blob mask from thresholded Perlin noise (DRÆM Sec. 3.3; LFQUIAD Sec. 3.2).

    The noise has 2^a × 2^b lattice cells, a and b drawn independently from the powers of two in
    ``scale_range``, and is rotated by a random angle in [-90°, 90°] (DRÆM's rotation augmenter).
    Returns ``(alpha, mask)``, both (size, size):

    - ``alpha`` in [0, 1]: the noise put through a linear ramp of width ``edge`` (noise units) that
      crosses ``threshold`` exactly at the noise threshold, so the blobs have soft edges;
    - ``mask`` (float {0, 1}) is ``alpha > threshold``, i.e. noise > threshold, DRÆM's binary mask.

    ``dilation`` > 0 grows both by that many pixels (a max-pool of alpha), keeping mask = alpha > threshold.
    """
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    lo, hi = (int(math.log2(s)) for s in scale_range)
    exps = torch.randint(lo, hi + 1, (2,), generator=generator)
    noise = perlin_noise((size, size), (2 ** int(exps[0]), 2 ** int(exps[1])), generator)
    angle = (torch.rand((), generator=generator).item() - 0.5) * math.pi
    noise = _rotate(noise, angle)
    alpha = (threshold + (noise - threshold) / edge).clamp(0, 1)       # = threshold where noise = threshold
    alpha = _dilate(alpha, dilation)
    return alpha, (alpha > threshold).float()


def estimate_foreground(image: torch.Tensor, erode: int = 1) -> torch.Tensor:
    """A rough object mask (H, W) float {0, 1} for an image (3, H, W) with no given foreground.

    The grey image is split in two by Otsu's threshold; the side holding most of the border pixels
    is taken as background. This suits one object on a plain background (the synthetic 'disc',
    most MVTec AD objects); it is wrong for objects that touch the border everywhere. ``erode``
    pixels are taken off the object's edge, so anomalies stay clear of the rim. Pass a real
    foreground (e.g. from SAM, as LFQUIAD does) where this heuristic fails.
    """
    grey = image.float().mean(0).numpy()
    hist, edges = np.histogram(grey, bins=256, range=(float(grey.min()), float(grey.max()) + 1e-6))
    p = hist / hist.sum()
    w0 = np.cumsum(p)                                                    # class probabilities below each cut
    mu = np.cumsum(p * (edges[:-1] + edges[1:]) / 2)
    between = (mu[-1] * w0 - mu) ** 2 / np.maximum(w0 * (1 - w0), 1e-12)  # Otsu's between-class variance
    t = edges[int(np.argmax(between)) + 1]
    bright = grey > t
    border = np.concatenate([bright[0], bright[-1], bright[:, 0], bright[:, -1]])
    fg = torch.from_numpy(~bright if border.mean() > 0.5 else bright).float()
    if erode > 0:
        fg = -_dilate(-fg, erode)                                        # erosion = −dilation(−x)
    return fg


def anomaly_mask(size: int, generator: torch.Generator | None = None, foreground: torch.Tensor | None = None,
                 cfg: AnomalyConfig | None = None, max_tries: int = 50) -> tuple[torch.Tensor, torch.Tensor]:
    """A Perlin mask restricted to ``foreground`` (H, W) when given; redrawn until it covers at
    least ``cfg.min_area`` of the image (or of the foreground). Returns (alpha, mask), both (H, W)."""
    cfg = cfg or AnomalyConfig()
    fg = None if foreground is None else (foreground.reshape(size, size) > 0.5).float()
    need = cfg.min_area * size * size
    if fg is not None:
        if fg.sum() == 0:
            raise ValueError("foreground is empty: no place for an anomaly")
        need = min(need, 0.5 * float(fg.sum()))
    for _ in range(max_tries):
        alpha, mask = perlin_mask(size, generator, cfg.threshold, cfg.scale_range, cfg.edge, cfg.dilation)
        if fg is not None:
            alpha = alpha * fg
            mask = (alpha > cfg.threshold).float()
        if mask.sum() >= max(need, 1):
            break
    return alpha, mask


# ---------------------------------------------------------------------------------------------
# Foreign content and blending
# ---------------------------------------------------------------------------------------------

def alter_texture(texture: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Make foreign content look foreign (a light version of DRÆM's texture augmenters): random
    channel order, gamma in [0.5, 2], inversion with p = 1/3, and a random circular shift."""
    C, H, W = texture.shape
    r = torch.rand(4, generator=generator)
    x = texture[torch.randperm(C, generator=generator)]
    x = x.clamp(0, 1) ** float(2 ** (2 * r[0] - 1))
    if r[1] < 1 / 3:
        x = 1 - x
    return torch.roll(x, (int(r[2] * H), int(r[3] * W)), dims=(1, 2))


def blend(image: torch.Tensor, texture: torch.Tensor, weight: torch.Tensor, beta: float) -> torch.Tensor:
    """LFQUIAD's compositional blending, S = β(M⊙N) + (1−β)(M⊙A) + M̄⊙N (Sec. 3.2; DRÆM Eq. 1).

    image N (3, H, W), texture A (3, H, W), weight M (H, W) or (1, H, W) in [0, 1]; written as
    N + (1−β)·M·(A − N), so pixels with M = 0 are returned unchanged.
    """
    M = weight.reshape(1, *image.shape[-2:]).to(image.dtype)
    return (image + (1 - beta) * M * (texture - image)).clamp(0, 1)


def _synthetic_texture(size: int, generator: torch.Generator | None, exclude: str | None = None) -> torch.Tensor:
    """A normal image of another synthetic category (the book's generator), (3, size, size)."""
    names = [c for c in CATEGORIES if c != exclude] or list(CATEGORIES)
    name = names[int(torch.randint(len(names), (), generator=generator))]
    rng = np.random.default_rng(int(torch.randint(2 ** 31 - 1, (), generator=generator)))
    image, _, _ = render(name, "good", size, rng)
    return torch.from_numpy(image).permute(2, 0, 1).contiguous()


def synthesize_anomaly(image: torch.Tensor, generator: torch.Generator | None = None,
                       foreground: torch.Tensor | None = None, texture_source: torch.Tensor | None = None,
                       cfg: AnomalyConfig | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One synthetic anomaly on a normal ``image`` (3, H, W) in [0, 1] (DRÆM Sec. 3.3, LFQUIAD Sec. 3.2).

    - mask: :func:`anomaly_mask` (Perlin blob, dilation, inside ``foreground`` (H, W) if given;
      use :func:`estimate_foreground` for an object image without one);
    - content A: ``texture_source`` (3, H, W), e.g. another image of the batch, else a texture of
      the synthetic generator, colour-altered by :func:`alter_texture`, plus Gaussian noise of
      std ~ U(0, cfg.noise_std);
    - :func:`blend` with β ~ U(cfg.beta_range), weighted by the soft alpha inside the binary mask
      (alpha·mask: soft inside, zero outside), so every changed pixel is in the returned mask.

    Returns (anomalous image (3, H, W), mask (1, H, W) float {0, 1}).
    """
    cfg = cfg or AnomalyConfig()
    _, H, W = image.shape
    if H != W:
        raise ValueError(f"images must be square, got {H}x{W}")
    alpha, mask = anomaly_mask(H, generator, foreground, cfg)
    texture = _synthetic_texture(H, generator) if texture_source is None else texture_source.to(image.dtype)
    texture = alter_texture(texture, generator)
    sigma = cfg.noise_std * float(torch.rand((), generator=generator))
    texture = texture + sigma * torch.randn(texture.shape, generator=generator)    # Gaussian noise injection
    beta = cfg.beta_range[0] + (cfg.beta_range[1] - cfg.beta_range[0]) * float(torch.rand((), generator=generator))
    return blend(image, texture.clamp(0, 1), alpha * mask, beta), mask[None]


def paint_anomalies(images: torch.Tensor, generator: torch.Generator | None = None, is_object=None,
                    cfg: AnomalyConfig | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthetic anomalies on a batch of normal images (B, 3, H, W), for training an autoencoder
    to restore them (DRÆM's reconstructive training, LFQUIAD Sec. 3.2-3.4).

    Each image gets an anomaly with probability ``cfg.anomaly_prob`` (:func:`synthesize_anomaly`),
    its content taken from another image of the batch with probability ``cfg.self_texture_prob``,
    else from the synthetic generator; images whose ``is_object`` entry is true get it only on
    their estimated foreground. Returns (images with anomalies, masks (B, 1, H, W)); the input
    batch is not modified.
    """
    cfg = cfg or AnomalyConfig()
    B, _, H, W = images.shape
    out, masks = images.clone(), images.new_zeros(B, 1, H, W)
    for i in range(B):
        if float(torch.rand((), generator=generator)) >= cfg.anomaly_prob:
            continue
        foreground = estimate_foreground(images[i].cpu()) if is_object is not None and is_object[i] else None
        texture = None
        if B > 1 and float(torch.rand((), generator=generator)) < cfg.self_texture_prob:
            texture = images[(i + 1 + int(torch.randint(B - 1, (), generator=generator))) % B].cpu()
        painted, mask = synthesize_anomaly(images[i].cpu(), generator, foreground, texture, cfg)
        out[i], masks[i] = painted.to(out), mask.to(masks)
    return out, masks


class AnomalySynthesizer:
    """Seeded batches of (images, masks) made from a normal ImageSet, DRÆM-style (Chapter 10).

    Each image of a batch is a random normal image; with probability ``cfg.anomaly_prob`` it gets a
    synthetic anomaly (else its mask is empty, so a segmentation head also sees clean images).
    Images of ``object_categories`` get anomalies only on their foreground: ``foregrounds``
    (N, 1, H, W) if given, else :func:`estimate_foreground`, computed once per image. Finally
    image and mask are flipped together at random.
    """

    def __init__(self, normal_set, cfg: AnomalyConfig | None = None, seed: int = 0,
                 object_categories=OBJECT_CATEGORIES, foregrounds: torch.Tensor | None = None):
        if len(normal_set) == 0:
            raise ValueError("the normal set is empty")
        self.data, self.cfg = normal_set, cfg or AnomalyConfig()
        self.generator = torch.Generator().manual_seed(seed)
        self.is_object = [normal_set.category_names[c] in object_categories for c in normal_set.categories.tolist()]
        self.foregrounds = [None if not obj else foregrounds[i, 0] if foregrounds is not None
                            else estimate_foreground(normal_set.images[i])
                            for i, obj in enumerate(self.is_object)]

    def _texture(self, i: int) -> torch.Tensor:
        g, N = self.generator, len(self.data)
        if N > 1 and float(torch.rand((), generator=g)) < self.cfg.self_texture_prob:
            j = (i + 1 + int(torch.randint(N - 1, (), generator=g))) % N     # another image of the set
            return self.data.images[j]
        category = self.data.category_names[int(self.data.categories[i])]
        return _synthetic_texture(self.data.size, g, exclude=category)

    def sample(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(images (B, 3, H, W), masks (B, 1, H, W)); about ``anomaly_prob`` of them anomalous."""
        images, masks, _ = self.sample_indexed(batch_size)
        return images, masks

    def sample_indexed(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """As :meth:`sample`, plus the (B,) index of each image's source in the normal set."""
        g = self.generator
        index = torch.randint(len(self.data), (batch_size,), generator=g)
        images, masks = [], []
        for i in index.tolist():
            x = self.data.images[i]
            m = torch.zeros(1, *x.shape[-2:])
            if float(torch.rand((), generator=g)) < self.cfg.anomaly_prob:
                x, m = synthesize_anomaly(x, g, self.foregrounds[i], self._texture(i), self.cfg)
            flips = [d for d, r in zip((-1, -2), torch.rand(2, generator=g)) if r < 0.5]
            images.append(x.flip(flips) if flips else x)
            masks.append(m.flip(flips) if flips else m)
        return torch.stack(images), torch.stack(masks), index


__all__ = ["AnomalyConfig", "OBJECT_CATEGORIES", "perlin_noise", "perlin_mask", "estimate_foreground",
           "anomaly_mask", "alter_texture", "blend", "synthesize_anomaly", "paint_anomalies", "AnomalySynthesizer"]
