"""Reading images and masks from disk into arrays, and an index of them into an ``ImageSet``.

The layouts of the real datasets (:mod:`pvqae_lib.data.real`) only say where the files are, as
``Row``s; everything about the files themselves is here: every PIL mode scaled to [0, 1] by its own
range (``read_image``), masks checked at full size before resizing (``mask_array``), masks of a whole
index checked without loading the images (``check_masks``), and ``load_rows``, which decodes in a
thread pool (PIL releases the GIL while decoding), resizes to ``size x size`` (bilinear with
antialiasing; masks nearest-neighbour) and packs everything into an ``ImageSet``.
"""
from __future__ import annotations

import glob
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image

from .imageset import DataError, ImageSet

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class Row(NamedTuple):
    """One image of an index: where it is, where its mask is (None for normal images), and what it is."""

    image: Path
    mask: Path | None
    kind: str  # 'good' or the defect kind
    category: str



def _open(path: Path) -> Image.Image:
    """Open and fully decode an image in its own mode (``load`` forces decoding, so truncated files
    fail here, not later)."""
    try:
        with Image.open(path) as im:
            im.load()
            return im
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"cannot read image {path}: {' '.join(str(e).split())}") from None


# Modes whose pixels are 8-bit and which PIL converts to RGB without losing range. Alpha is DROPPED
# (not composited): 'RGBA', 'LA', 'PA', 'RGBa', 'La' keep their colour channels as stored.
_EIGHT_BIT_MODES = {"1", "L", "P", "RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "LA", "La", "PA", "HSV"}


def _scaled(a: np.ndarray, mode: str, path: Path) -> np.ndarray:
    """A single-channel integer or float image as float32 in [0, 1], scaled by its mode's range.

    'I;16', 'I;16B', 'I;16L', 'I;16N' (16-bit): divided by 65535. 'I' (32-bit signed): divided by
    65535 when its values are in 0..65535 (how 16-bit files usually arrive), otherwise scaled from
    the image's own minimum to its maximum. 'F' (float): kept as is when its values are in [0, 1],
    otherwise scaled from the image's minimum to its maximum. A constant image outside the range
    becomes 0. Non-finite values (NaN, inf) are an error.
    """
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise DataError(f"image {path} (mode {mode}) has non-finite pixel values (NaN or inf)")
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if mode.startswith("I;16") or (mode == "I" and lo >= 0 and hi <= 65535):
        a = a / 65535.0
    elif mode == "F" and lo >= 0 and hi <= 1:
        pass
    else:
        a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    return a.astype(np.float32)


def read_image(path: Path, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """An image as a (size, size, 3) float32 array in [0, 1], and its original (width, height).

    Every mode PIL opens is scaled to [0, 1] by its own range, never clipped:
    * 8-bit modes ('L', '1', 'P', 'RGB', 'CMYK', 'YCbCr', ...) are converted to RGB by PIL and
      divided by 255; greyscale (MTSD) is replicated to three channels. Alpha ('RGBA', 'LA', 'PA')
      is dropped: the colour channels are used as stored, not composited on a background.
    * 16-bit ('I;16', 'I;16B', ...), 32-bit integer ('I') and float ('F') images are scaled as
      ``_scaled`` says (16-bit by 65535) and replicated to three channels.
    Resizing is PIL's bilinear, which antialiases (on the 8-bit values for 8-bit modes, on floats
    for the others, so 16-bit precision is kept).
    """
    im = _open(path)
    original = im.size
    try:
        if im.mode in ("I", "F") or im.mode.startswith("I;16"):
            a = _scaled(np.asarray(im), im.mode, path)
            small = np.asarray(Image.fromarray(a, "F").resize((size, size), Image.BILINEAR))
            out = np.repeat(np.clip(small, 0, 1)[:, :, None], 3, axis=2)
        else:
            if im.mode not in _EIGHT_BIT_MODES:
                raise ValueError(f"unsupported image mode {im.mode!r}")
            rgb = im.convert("RGB").resize((size, size), Image.BILINEAR)  # PIL's bilinear antialiases
            out = np.asarray(rgb, dtype=np.float32) / 255.0
    except (OSError, ValueError) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"cannot read image {path}: {' '.join(str(e).split())}") from None
    return out.astype(np.float32, copy=False), original


def mask_array(path: Path, image_path: Path, image_size: tuple[int, int]) -> np.ndarray:
    """The full-size boolean defect mask of defect image ``image_path``, checked.

    Accepted masks: binary ones, i.e. 0 and one other value (0/255, 0/1, mode '1', 16-bit
    0/65535, ...), where every nonzero pixel is defect; and anti-aliased ones (more than two values,
    as MTSD's masks are) that go from 0 to their mode's full white (255; 65535 for 16-bit; 1.0 or 255
    for float), thresholded at half of it (> 127 for 8-bit). Colour and alpha masks are read as
    greyscale ('L', alpha dropped). One-line ``DataError`` naming the mask for: a size different
    from its image's, a grey mask (more than two values that do not reach full white, e.g. a label
    map 0/1/2 or soft values that a threshold would silently drop), a mask with no background (0)
    pixel. An empty mask (all 0) is real data (the full MTSD download has four in MT_Uneven) and is
    returned as it is: :func:`load_rows` reports those files in one warning, and the metrics count
    such an image as defective for image AUROC and all its pixels as normal ones for pixel AUROC and
    PRO (it has no defect region), as anomalib and the MTD literature do.
    """
    im = _open(path)
    if im.size != image_size:
        raise DataError(f"mask {path} is {im.size[0]}x{im.size[1]} but its image {image_path} is "
                        f"{image_size[0]}x{image_size[1]}")
    if im.mode == "1":
        a = np.asarray(im).astype(np.uint8)
        full = 1.0
    elif im.mode in ("I", "F") or im.mode.startswith("I;16"):
        a = np.asarray(im)
        if not np.isfinite(a).all():
            raise DataError(f"mask {path} has non-finite values (NaN or inf)")
        hi = float(a.max()) if a.size else 0.0
        full = 65535.0 if im.mode != "F" else (1.0 if hi <= 1 else 255.0)
    else:
        try:
            a = np.asarray(im.convert("L"))
        except (OSError, ValueError) as e:
            raise DataError(f"cannot read mask {path}: {' '.join(str(e).split())}") from None
        full = 255.0
    values = np.unique(a)
    lo, hi = float(values[0]), float(values[-1])
    if len(values) > 1 and lo != 0:
        raise DataError(f"mask {path} has no background: its smallest value is {values[0]}, not 0")
    if lo < 0:
        raise DataError(f"mask {path} has negative values")
    if len(values) <= 2:
        mask = a != 0
    elif hi == full:
        mask = a > full / 2  # anti-aliased edges (MTSD): half of full white
    else:
        raise DataError(f"mask {path} is not binary: {len(values)} distinct values from {values[0]} to "
                        f"{values[-1]} (expected 0 and one other value, e.g. 0/255, 0/1 or mode '1', "
                        f"or anti-aliased edges reaching {full:g})")
    return mask


class EmptyMaskWarning(UserWarning):
    """Defect images whose masks mark no pixel (accepted; see :func:`mask_array`)."""


EMPTY_MASK_RULE = ("counted as defective in image AUROC; all their pixels count as normal in pixel AUROC and PRO")


def warn_empty_masks(paths: list) -> None:
    """One warning naming the defect images' masks that mark no pixel (at full size or after
    resizing) and how the metrics treat them (:data:`EMPTY_MASK_RULE`)."""
    if paths:
        names = ", ".join(str(p) for p in paths[:8]) + (f" and {len(paths) - 8} more" if len(paths) > 8 else "")
        warnings.warn(f"{len(paths)} defect image mask(s) are empty (all 0): {names}; {EMPTY_MASK_RULE}",
                      EmptyMaskWarning, stacklevel=2)


def read_mask(path: Path, size: int, image_path: Path, image_size: tuple[int, int]) -> np.ndarray:
    """A binary (size, size) mask (nearest-neighbour resizing of ``mask_array``, which checks it)."""
    mask = mask_array(path, image_path, image_size)
    small = Image.fromarray(mask.astype(np.uint8) * 255).resize((size, size), Image.NEAREST)
    return np.asarray(small) > 0


def image_size_of(path: Path) -> tuple[int, int]:
    """(width, height) of an image from its header, without decoding its pixels."""
    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"cannot read image {path}: {' '.join(str(e).split())}") from None


def check_masks(rows: list[Row], num_workers: int | None = None) -> int:
    """Check every mask of ``rows`` at full size as ``mask_array`` does (size against its image's
    header, binary; an empty one is named in one warning), without decoding the images; returns how
    many masks were checked.
    Raises the first problem found as a one-line ``DataError`` naming the file."""
    with_masks = [r for r in rows if r.mask is not None]

    def check(row: Row) -> bool:
        return bool(mask_array(row.mask, row.image, image_size_of(row.image)).any())

    workers = num_workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:
        marked = list(pool.map(check, with_masks))  # list() re-raises the first error
    warn_empty_masks([r.mask for r, m in zip(with_masks, marked) if not m])
    return len(with_masks)


def load_rows(rows: list[Row], size: int, category_names: list[str] | None = None,
              num_workers: int | None = None) -> ImageSet:
    """Decode and resize every row into an ImageSet (parallel over a thread pool)."""
    if not isinstance(size, int) or size < 8:
        raise DataError(f"size must be an int >= 8, got {size!r}")
    category_names = category_names or sorted({r.category for r in rows})
    N = len(rows)
    images = np.empty((N, size, size, 3), np.float32)  # in [0, 1], see read_image
    masks = np.zeros((N, size, size), bool)

    def load(i: int):
        row = rows[i]
        images[i], original = read_image(row.image, size)
        if row.mask is not None:
            masks[i] = read_mask(row.mask, size, row.image, original)

    workers = num_workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(load, range(N)))  # list() re-raises the first error
    warn_empty_masks([r.mask for i, r in enumerate(rows) if r.mask is not None and not masks[i].any()])
    return ImageSet(
        images=torch.from_numpy(images).permute(0, 3, 1, 2),  # (N, 3, S, S) float32 in [0, 1], no copy
        masks=torch.from_numpy(masks).float().unsqueeze(1),  # (N, 1, S, S)
        labels=torch.tensor([int(r.kind != "good") for r in rows], dtype=torch.long),
        categories=torch.tensor([category_names.index(r.category) for r in rows], dtype=torch.long),
        kinds=[r.kind for r in rows],
        paths=[str(r.image) for r in rows],
        category_names=list(category_names),
    )


def images_in(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted; an empty folder is an error."""
    if not folder.is_dir():
        raise DataError(f"missing folder {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise DataError(f"empty folder {folder}: no images ({', '.join(IMAGE_EXTENSIONS)})")
    return files


def image_files(paths) -> list[Path]:
    """The image files a user names: each path an image file, a folder of them (sorted, not
    recursive) or a quoted glob pattern such as ``'MT_Crack/Imgs/*.jpg'`` (sorted). A missing path,
    a pattern that matches nothing, a file that is not an image and an empty folder are errors."""
    files = []
    for path in (Path(p).expanduser() for p in paths):
        if not path.exists() and any(c in str(path) for c in "*?["):
            matches = sorted(Path(m) for m in glob.glob(str(path)))
            if not matches:
                raise DataError(f"no file matches {path}")
            files += image_files(matches)
        elif path.is_dir():
            files += images_in(path)
        elif not path.is_file():
            raise DataError(f"no such image or folder: {path}")
        elif path.suffix.lower() not in IMAGE_EXTENSIONS:
            raise DataError(f"{path} is not an image file ({', '.join(IMAGE_EXTENSIONS)})")
        else:
            files.append(path)
    return files


def load_images(paths: list[Path], size: int, category: str, category_names: list[str]) -> ImageSet:
    """Unlabelled images, all of ``category`` (one of ``category_names``), resized as the loaders do.

    For scoring new images with a trained run: the labels are 0 and the masks empty because nothing
    is known about them; ``kinds`` are 'unknown'.
    """
    images = load_rows([Row(Path(p), None, "unknown", category) for p in paths], size, category_names)
    images.labels.zero_()
    return images
