"""A seeded synthetic defect dataset: the book's embedded default (chapter 1).

Three surface categories, each with natural variation between normal images, and four kinds of
subtle defect painted on top. Everything is pure NumPy, seeded, and fast (hundreds of 64 px images
per second), so the whole book runs on it without downloading anything.

Categories (normal images)
    tile   magnetic-tile-like: a smooth grey surface with a gentle shading gradient, a faint curved
           band, polishing streaks and fine grain noise.
    weave  a woven grid: crossing threads going over and under, with random phase, slight rotation,
           thread thickness and per-image colours.
    disc   a simple object: a washer (ring with a centre hole) on a plain darker background, with
           jitter in position, size, brightness and lighting direction.

One more category is made on request only (``categories="label"``), never by default, so the
default data and every model trained on it stay as they are:
    label  a smooth tile-like surface carrying a printed label (rows of glyphs and a barcode) at a
           random place: context richness varies *inside* the image, flat surface beside dense
           print, which is what a router that allocates per patch needs (chapter 3).

Defect kinds
    scratch  a thin straight or slightly curved line, brighter or darker
    hole     a small dark blob with an irregular rim (a blowhole)
    crack    a thin, dark, jagged random-walk polyline, sometimes with one branch
    stain    a soft-edged, low-contrast discoloured blob

How a defect is painted, and what the mask means
    Each defect is an opacity map ``alpha`` in [0, 1] (anti-aliased shape) and a colour change
    ``delta`` (3 values): ``image = clip(image + alpha * delta)``. On ``disc`` alpha is multiplied
    by the object's coverage, so defects only ever change the object. The ground-truth mask is
    ``alpha > MASK_THRESHOLD``: the pixels that received at least that fraction of the full defect
    change (the faint anti-aliased fringe below it is left out of the mask).

Difficulty is set by the constants below (contrast as a fraction of the [0, 1] intensity range,
sizes as fractions of the image side), so every feature scales with the image size.
"""
from __future__ import annotations

import zlib

import numpy as np
import torch

from .imageset import DataError, ImageSet, check_split

CATEGORIES = ("tile", "weave", "disc")   # the default set
EXTRA_CATEGORIES = ("label",)             # made only when named
DEFECT_KINDS = ("scratch", "hole", "crack", "stain")

# --- difficulty knobs (the lead tunes these) -------------------------------------------------
CONTRAST_SCALE = 1.0  # multiplies every contrast range below
CONTRAST = {  # defect contrast, fraction of the intensity range (before CONTRAST_SCALE)
    "scratch": (0.10, 0.30),
    "hole": (0.12, 0.30),
    "crack": (0.10, 0.25),
    "stain": (0.08, 0.18),
}
SIZE_SCALE = 1.0  # multiplies every size range below
LENGTH = {"scratch": (0.25, 0.50), "crack": (0.25, 0.45)}  # polyline length, fraction of the side
HALF_WIDTH = {"scratch": (0.006, 0.014), "crack": (0.004, 0.010)}  # line half-width, fraction of side
RADIUS = {"hole": (0.040, 0.070), "stain": (0.080, 0.150)}  # blob radius, fraction of the side
MASK_THRESHOLD = 0.25  # a pixel is in the mask when the defect's alpha exceeds this
MIN_MASK_FRACTION = 0.0005  # redraw a defect whose mask covers less than this fraction (>= 2 px)

# --- dataset sizes -----------------------------------------------------------------------------
TRAIN_PER_CATEGORY = 200  # normals only
TEST_PER_CATEGORY = 120  # a third normal, the rest split evenly over DEFECT_KINDS
TEST_GOOD_FRACTION = 1 / 3


# ---------------------------------------------------------------------------------------------
# Normal surfaces. Each returns an (S, S, 3) float image and the foreground coverage (S, S):
# the area where defects may appear (everything for textures, the washer for 'disc').
# ---------------------------------------------------------------------------------------------

def _grid(S: int):
    """Pixel-centre coordinates in [0, 1): (y, x), each (S, S)."""
    t = (np.arange(S, dtype=np.float32) + 0.5) / S
    return np.meshgrid(t, t, indexing="ij")


def _grain(rng, S: int, std: float) -> np.ndarray:
    """Fine noise, lightly smoothed over 2x2 pixels so it looks like grain rather than static."""
    n = rng.normal(0.0, std, (S, S)).astype(np.float32)
    return (n + np.roll(n, 1, 0) + np.roll(n, 1, 1) + np.roll(n, (1, 1), (0, 1))) / 2.0


def _tile(rng, S: int):
    y, x = _grid(S)
    level = rng.uniform(0.42, 0.62)
    theta = rng.uniform(0, 2 * np.pi)
    gradient = rng.uniform(0.04, 0.12) * ((x - 0.5) * np.cos(theta) + (y - 0.5) * np.sin(theta))
    # faint curved band: part of a large circle whose centre lies outside the image
    phi = rng.uniform(0, 2 * np.pi)
    cy, cx = 0.5 + rng.uniform(0.9, 1.6) * np.array([np.sin(phi), np.cos(phi)])
    ring = np.hypot(y - cy, x - cx)
    r0 = np.hypot(0.5 - cy, 0.5 - cx) + rng.uniform(-0.25, 0.25)
    band = rng.choice([-1, 1]) * rng.uniform(0.01, 0.04) * np.exp(-(((ring - r0) / rng.uniform(0.03, 0.08)) ** 2))
    # polishing streaks: smooth 1-D noise along one image axis
    streak = np.convolve(rng.normal(0, 1, S + 4), np.ones(5) / 5, mode="valid")[:S].astype(np.float32)
    streaks = rng.uniform(0.004, 0.012) * (streak[None, :] if rng.random() < 0.5 else streak[:, None])
    grey = level + gradient + band + streaks + _grain(rng, S, rng.uniform(0.010, 0.022))
    tint = 1.0 + rng.normal(0, 0.01, 3)
    return grey[..., None] * tint, np.ones((S, S), np.float32)


def _weave(rng, S: int):
    y, x = _grid(S)
    freq = rng.uniform(6.0, 9.0)  # threads per image side, so the texture scales with S
    a = rng.uniform(-0.08, 0.08)  # slight rotation (rad)
    u = freq * (x * np.cos(a) + y * np.sin(a)) + rng.uniform(0, 1)
    v = freq * (-x * np.sin(a) + y * np.cos(a)) + rng.uniform(0, 1)
    p = rng.uniform(1.2, 3.0)  # thread thickness: larger p, thinner threads
    horizontal = (np.cos(np.pi * v) ** 2) ** p  # 1 on a thread's centre line, 0 between threads
    vertical = (np.cos(np.pi * u) ** 2) ** p
    h_on_top = (np.round(u) + np.round(v)) % 2 == 0  # over-under alternates at each crossing
    top = np.where(h_on_top, horizontal, vertical)
    under = np.where(h_on_top, vertical, horizontal)
    texture = np.maximum(top, 0.55 * under)  # the thread underneath shows, shadowed, in the gaps
    light = rng.uniform(0.45, 0.85, 3)
    dark = light * rng.uniform(0.25, 0.45)
    img = dark + texture[..., None] * (light - dark)
    theta = rng.uniform(0, 2 * np.pi)
    img = img * (1 + rng.uniform(0, 0.1) * ((x - 0.5) * np.cos(theta) + (y - 0.5) * np.sin(theta)))[..., None]
    return img + _grain(rng, S, 0.008)[..., None], np.ones((S, S), np.float32)


def _disc(rng, S: int):
    y, x = _grid(S)
    background = rng.uniform(0.08, 0.18) + _grain(rng, S, 0.006)
    cy, cx = 0.5 + rng.uniform(-0.06, 0.06, 2)
    R = rng.uniform(0.32, 0.40)
    r_hole = R * rng.uniform(0.30, 0.42)
    d = np.hypot(y - cy, x - cx)  # distance to the centre, fraction of the side
    outer = np.clip((R - d) * S + 0.5, 0, 1)  # anti-aliased coverage, 1 inside the rim
    inner = np.clip((r_hole - d) * S + 0.5, 0, 1)
    foreground = outer * (1 - inner)
    phi = rng.uniform(0, 2 * np.pi)  # lighting direction
    obj = rng.uniform(0.55, 0.75) * (1 + 0.12 * ((x - cx) * np.cos(phi) + (y - cy) * np.sin(phi)) / R)
    obj = obj + 0.015 * np.cos(2 * np.pi * d / rng.uniform(0.02, 0.04))  # machining rings
    obj = obj - 0.08 * np.exp(-(((R - d) / 0.03) ** 2))  # bevel: darker near the rim
    obj = obj + _grain(rng, S, 0.008)
    grey = background * (1 - foreground) + obj * foreground
    tint = 1.0 + rng.normal(0, 0.03, 3)
    return grey[..., None] * tint, foreground.astype(np.float32)


def _print_row(rng, n: int) -> np.ndarray:
    """One row of print as n samples across the label: each glyph's ink darkness, 0 between glyphs."""
    ink, x = np.zeros(n, np.float32), 0
    while x < n:
        for _ in range(rng.integers(2, 7)):                        # a word of 2 to 6 glyphs
            width = int(n * rng.choice([0.015, 0.025, 0.04]))
            ink[x:x + width] = rng.uniform(0.3, 1.0)                 # print of uneven darkness
            x += width + int(n * 0.015)                              # the gap between glyphs
        x += int(n * rng.uniform(0.03, 0.06))                        # the gap between words
    return ink


def _label(rng, S: int):
    """A tile-like surface with a printed label: flat surface and dense print in one image."""
    surface, foreground = _tile(rng, S)
    y, x = _grid(S)
    h, w = rng.uniform(0.40, 0.55), rng.uniform(0.45, 0.60)         # label size, fraction of the side
    top, left = rng.uniform(0.05, 0.95 - h), rng.uniform(0.05, 0.95 - w)
    inside = (y >= top) & (y < top + h) & (x >= left) & (x < left + w)
    paper = rng.uniform(0.80, 0.92) * (1.0 + rng.normal(0, 0.02, 3))
    u, v = (x - left) / w, (y - top) / h                              # label coordinates in [0, 1)
    n = 400                                                           # samples of a row of print
    line = 0.11                                                       # line pitch, fraction of the label
    rows = np.stack([_print_row(rng, n) for _ in range(int(0.75 / line) + 1)])
    row = np.clip(((v - 0.06) / line).astype(int), 0, len(rows) - 1)
    in_line = ((v - 0.06) % line < 0.65 * line) & (v >= 0.06) & (v < 0.74)
    margin = (u >= 0.05) & (u < 0.95)
    col = np.clip(((u - 0.05) / 0.9 * n).astype(int), 0, n - 1)
    darkness = np.where(in_line & margin, rows[row, col], 0.0)
    bars = rng.uniform(0.4, 1.0, n) * (rng.random(n) < 0.5)          # a barcode under the text
    darkness = np.where((v >= 0.79) & (v < 0.95) & margin, bars[col], darkness)
    grey = paper[None, None] * (1 - 0.8 * darkness[..., None])
    grey = grey + _grain(rng, S, 0.015)[..., None]
    grey = (grey + np.roll(grey, 1, 0) + np.roll(grey, 1, 1) + np.roll(grey, (1, 1), (0, 1))) / 4  # print blur
    image = np.where(inside[..., None], grey, surface)
    return image.astype(np.float32), foreground


SURFACES = {"tile": _tile, "weave": _weave, "disc": _disc, "label": _label}


# ---------------------------------------------------------------------------------------------
# Defects. Each returns (alpha (S, S), delta (3,)) for a defect centred at `centre` (pixels).
# ---------------------------------------------------------------------------------------------

def _polyline_alpha(points: np.ndarray, half_width: float, S: int) -> np.ndarray:
    """Anti-aliased opacity of a polyline (points (K, 2) in pixels, (y, x)) with a half-width in px."""
    alpha = np.zeros((S, S), np.float32)
    pad = half_width + 2
    y0, x0 = np.maximum(np.floor(points.min(0) - pad).astype(int), 0)
    y1, x1 = np.minimum(np.ceil(points.max(0) + pad).astype(int), S)
    if y1 <= y0 or x1 <= x0:
        return alpha
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5  # pixel centres of the window
    a, b = points[:-1, :, None, None], points[1:, :, None, None]  # (K-1, 2, 1, 1)
    ab = b - a
    t = ((yy - a[:, 0]) * ab[:, 0] + (xx - a[:, 1]) * ab[:, 1]) / np.maximum((ab ** 2).sum(1), 1e-9)
    t = np.clip(t, 0, 1)  # (K-1, h, w): position of the nearest point on each segment
    dist = np.hypot(yy - (a[:, 0] + t * ab[:, 0]), xx - (a[:, 1] + t * ab[:, 1])).min(0)
    alpha[y0:y1, x0:x1] = np.clip(half_width + 0.5 - dist, 0, 1)
    return alpha


def _blob_rho(rng, centre, radius: float, S: int) -> np.ndarray:
    """Normalised distance (1 on the rim) of an irregular rotated ellipse of mean radius `radius` px."""
    y, x = (np.mgrid[0:S, 0:S].astype(np.float32) + 0.5)
    dy, dx = y - centre[0], x - centre[1]
    rot, aspect = rng.uniform(0, np.pi), rng.uniform(0.6, 1.0)
    u = dx * np.cos(rot) + dy * np.sin(rot)
    v = (-dx * np.sin(rot) + dy * np.cos(rot)) / aspect
    angle = np.arctan2(v, u)
    wobble = 1 + sum(rng.uniform(0, 0.15) * np.cos(k * angle + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 5))
    return np.hypot(u, v) / (radius * wobble)


def _uniform(rng, lo_hi, scale=1.0):
    return rng.uniform(lo_hi[0], lo_hi[1]) * scale


def _scratch(rng, centre, S):
    length = _uniform(rng, LENGTH["scratch"], SIZE_SCALE) * S
    theta = rng.uniform(0, np.pi)
    direction, normal = np.array([np.sin(theta), np.cos(theta)]), np.array([np.cos(theta), -np.sin(theta)])
    p0, p2 = centre - direction * length / 2, centre + direction * length / 2
    p1 = centre + normal * length * rng.uniform(-0.15, 0.15)  # bend: a quadratic Bezier control point
    t = np.linspace(0, 1, 16)[:, None]
    points = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2
    alpha = _polyline_alpha(points, _uniform(rng, HALF_WIDTH["scratch"], SIZE_SCALE) * S, S)
    contrast = _uniform(rng, CONTRAST["scratch"], CONTRAST_SCALE)
    return alpha, rng.choice([-1.0, 1.0]) * contrast * np.ones(3)


def _random_walk(rng, start, heading, length, steps=12):
    points = [np.asarray(start, float)]
    for _ in range(steps):
        heading += rng.normal(0, 0.45)
        points.append(points[-1] + length / steps * np.array([np.sin(heading), np.cos(heading)]))
    return np.array(points)


def _crack(rng, centre, S):
    length = _uniform(rng, LENGTH["crack"], SIZE_SCALE) * S
    half_width = _uniform(rng, HALF_WIDTH["crack"], SIZE_SCALE) * S
    points = _random_walk(rng, (0.0, 0.0), rng.uniform(0, 2 * np.pi), length)
    points = points - points.mean(0) + centre
    alpha = _polyline_alpha(points, half_width, S)
    if rng.random() < 0.5:  # one thinner side branch
        k = rng.integers(3, len(points) - 3)
        step = points[k + 1] - points[k]
        heading = np.arctan2(step[0], step[1]) + rng.choice([-1, 1]) * rng.uniform(0.5, 1.2)
        branch = _random_walk(rng, points[k], heading, length * rng.uniform(0.25, 0.5), steps=6)
        alpha = np.maximum(alpha, _polyline_alpha(branch, 0.7 * half_width, S))
    return alpha, -_uniform(rng, CONTRAST["crack"], CONTRAST_SCALE) * np.ones(3)


def _hole(rng, centre, S):
    radius = _uniform(rng, RADIUS["hole"], SIZE_SCALE) * S
    rho = _blob_rho(rng, centre, radius, S)
    alpha = np.clip((1 - rho) * radius / max(1.0, 0.25 * radius) + 0.5, 0, 1)  # ~1 px soft rim
    return alpha, -_uniform(rng, CONTRAST["hole"], CONTRAST_SCALE) * np.ones(3)


def _stain(rng, centre, S):
    radius = _uniform(rng, RADIUS["stain"], SIZE_SCALE) * S
    rho = _blob_rho(rng, centre, radius, S)
    alpha = np.clip(1.2 * (1 - rho ** 2), 0, 1)  # soft edge: fades out over the outer part
    colour = rng.choice([-1.0, 1.0]) * rng.uniform(0.4, 1.0, 3)  # a discolouration, not just darker
    return alpha, _uniform(rng, CONTRAST["stain"], CONTRAST_SCALE) * colour / np.abs(colour).max()


DEFECTS = {"scratch": _scratch, "hole": _hole, "crack": _crack, "stain": _stain}


def _defect_centre(rng, foreground, S):
    """A random defect centre (pixels): on the foreground, away from the image border."""
    for _ in range(100):
        centre = rng.uniform(0.2, 0.8, 2) * S
        if foreground[int(centre[0]), int(centre[1])] > 0.99:
            return centre
    ys, xs = np.nonzero(foreground > 0.99)  # rare fallback: any fully covered pixel
    i = rng.integers(len(ys))
    return np.array([ys[i] + 0.5, xs[i] + 0.5])


def render(category: str, kind: str, size: int, rng: np.random.Generator):
    """One image: ``(image (S, S, 3) float32 in [0, 1], mask (S, S) bool, foreground (S, S) float32)``.

    ``kind`` is 'good' or one of DEFECT_KINDS. The foreground is where defects may appear.
    """
    image, foreground = SURFACES[category](rng, size)
    mask = np.zeros((size, size), bool)
    if kind != "good":
        min_pixels = max(2, MIN_MASK_FRACTION * size * size)
        for _ in range(20):  # redraw the rare defect that lands almost entirely off the object
            alpha, delta = DEFECTS[kind](rng, _defect_centre(rng, foreground, size), size)
            alpha = alpha * foreground
            mask = alpha > MASK_THRESHOLD
            if mask.sum() >= min_pixels:
                break
        image = image + alpha[..., None] * delta
    return np.clip(image, 0, 1).astype(np.float32), mask, foreground


def _stream(seed: int, split: str, category: str, i: int) -> np.random.Generator:
    """The random stream of image i: separate for every (seed, split, category, image)."""
    return np.random.default_rng([seed, ("train", "test").index(split), zlib.crc32(category.encode()), i])


def _test_kinds(n: int) -> list[str]:
    """Kinds of the n test images of one category: a third 'good', the rest evenly over defects."""
    n_good = int(round(n * TEST_GOOD_FRACTION))
    n_def, K = n - n_good, len(DEFECT_KINDS)
    kinds = ["good"] * n_good
    for j, kind in enumerate(DEFECT_KINDS):
        kinds += [kind] * (n_def // K + (j < n_def % K))
    return kinds


def make_synthetic(split: str, size: int = 64, categories=None, num_per_category: int | None = None,
                   seed: int = 0) -> ImageSet:
    """The synthetic dataset (chapter 1). ``split='train'``: normal images only; ``'test'``: a third
    normal and the rest spread over DEFECT_KINDS. Same arguments, same images; image i of a category
    depends only on (seed, split, category, i), so train and test never share a random stream.
    """
    check_split(split)
    categories = list(CATEGORIES if categories is None else [categories] if isinstance(categories, str)
                      else categories)
    for c in categories:
        if c not in SURFACES:
            raise DataError(f"unknown synthetic category {c!r}; known: {', '.join(SURFACES)}")
    if not isinstance(size, int) or size < 16:
        raise DataError(f"size must be an int >= 16, got {size!r}")
    if not isinstance(seed, int) or seed < 0:
        raise DataError(f"seed must be a non-negative int, got {seed!r}")
    n = num_per_category or (TRAIN_PER_CATEGORY if split == "train" else TEST_PER_CATEGORY)
    if n < 1:
        raise DataError(f"num_per_category must be >= 1, got {num_per_category!r}")

    images, masks, labels, cats, kinds, paths = [], [], [], [], [], []
    for c, category in enumerate(categories):
        for i, kind in enumerate(["good"] * n if split == "train" else _test_kinds(n)):
            image, mask, _ = render(category, kind, size, _stream(seed, split, category, i))
            images.append(image)
            masks.append(mask)
            labels.append(int(kind != "good"))
            cats.append(c)
            kinds.append(kind)
            paths.append(f"synthetic/{category}/{kind}/{i}")
    return ImageSet(
        images=torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(),  # (N, 3, S, S)
        masks=torch.from_numpy(np.stack(masks)).float().unsqueeze(1),  # (N, 1, S, S)
        labels=torch.tensor(labels, dtype=torch.long),
        categories=torch.tensor(cats, dtype=torch.long),
        kinds=kinds,
        paths=paths,
        category_names=categories,
    )
