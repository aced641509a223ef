"""Loaders for the real datasets in their original layouts: MVTec AD, BTAD, MTSD, and a user's folder.

Each loader works in two steps, so that the file logic can be read (and tested) on its own:
1. an *index* function walks the folders and returns ``Row``s (image path, mask path or None, kind,
   category), raising a one-line ``DataError`` when the layout is not the expected one;
2. ``load_rows`` decodes the images in a thread pool (PIL releases the GIL while decoding), resizes
   them to ``size x size`` (bilinear with antialiasing; every PIL mode scaled to [0, 1] by its own
   range, see ``read_image``; masks checked at full size by ``mask_array``, then nearest-neighbour)
   and packs everything into an ``ImageSet``. ``check_masks`` checks the masks of an index without
   loading the images (``check_dataset`` in load.py uses it so that ``train`` fails before training).

Layouts (chapter 1 shows each of them)
    MVTec AD  root/<category>/train/good/*.png, root/<category>/test/<kind>/*.png,
              root/<category>/ground_truth/<kind>/<stem>_mask.png (no masks for 'good')
    BTAD      root/<NN>/train/ok/*, root/<NN>/test/{ok,ko}/*, root/<NN>/ground_truth/ko/<stem>.{png,bmp}
              ('ok' becomes kind 'good', 'ko' stays 'ko')
    MTSD      root/MT_Free/Imgs/*.jpg (normal), root/MT_<Defect>/Imgs/*.jpg with same-stem .png masks;
              no official split, see ``mtsd_split``
    folder    one category in the MVTec layout: root/train/good, root/test/<kind>, root/ground_truth/...
"""
from __future__ import annotations

import glob
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image

from .imageset import DataError, ImageSet, check_split

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MTSD_CATEGORY = "magnetic_tile"


class Row(NamedTuple):
    """One image of an index: where it is, where its mask is (None for normal images), and what it is."""

    image: Path
    mask: Path | None
    kind: str  # 'good' or the defect kind
    category: str


# ---------------------------------------------------------------------------------------------
# Reading one image or mask
# ---------------------------------------------------------------------------------------------

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
    pixel, and an empty mask (no defect pixel: a defect image must have its defect marked).
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
    if not mask.any():
        raise DataError(f"mask {path} of defect image {image_path} is empty (all 0): mark the defect "
                        f"or move the image to the normal ('good') images")
    return mask


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
    header, binary, not empty), without decoding the images; returns how many masks were checked.
    Raises the first problem found as a one-line ``DataError`` naming the file."""
    with_masks = [r for r in rows if r.mask is not None]

    def check(row: Row):
        mask_array(row.mask, row.image, image_size_of(row.image))

    workers = num_workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(check, with_masks))  # list() re-raises the first error
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
    return ImageSet(
        images=torch.from_numpy(images).permute(0, 3, 1, 2),  # (N, 3, S, S) float32 in [0, 1], no copy
        masks=torch.from_numpy(masks).float().unsqueeze(1),  # (N, 1, S, S)
        labels=torch.tensor([int(r.kind != "good") for r in rows], dtype=torch.long),
        categories=torch.tensor([category_names.index(r.category) for r in rows], dtype=torch.long),
        kinds=[r.kind for r in rows],
        paths=[str(r.image) for r in rows],
        category_names=list(category_names),
    )


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
            files += _images_in(path)
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


# ---------------------------------------------------------------------------------------------
# Folder helpers
# ---------------------------------------------------------------------------------------------

def _root(root, name: str) -> Path:
    if root is None:
        raise DataError(f"{name} needs a root folder (got None)")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{name} root {root} does not exist or is not a folder")
    return root


def _images_in(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted; an empty folder is an error."""
    if not folder.is_dir():
        raise DataError(f"missing folder {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise DataError(f"empty folder {folder}: no images ({', '.join(IMAGE_EXTENSIONS)})")
    return files


def _pick(found: list[str], category: str | None, name: str, root: Path) -> list[str]:
    if category is None:
        return found
    if category not in found:
        raise DataError(f"unknown {name} category {category!r} under {root}; known: {', '.join(found)}")
    return [category]


def _find_mask(folder: Path, stem: str) -> Path | None:
    for ext in IMAGE_EXTENSIONS:
        for candidate in (folder / (stem + ext), folder / (stem + ext.upper())):
            if candidate.is_file():
                return candidate
    return None


# ---------------------------------------------------------------------------------------------
# MVTec AD (and a user's folder in the same layout)
# ---------------------------------------------------------------------------------------------

def index_mvtec_category(folder: Path, split: str, category: str) -> list[Row]:
    """Rows of one MVTec-layout category folder; every defect image must have ``<stem>_mask.png``."""
    if split == "train":
        return [Row(p, None, "good", category) for p in _images_in(folder / "train" / "good")]
    test = folder / "test"
    if not test.is_dir():
        raise DataError(f"missing folder {test}")
    kind_folders = sorted(p for p in test.iterdir() if p.is_dir())
    if not kind_folders:
        raise DataError(f"empty folder {test}: no <kind> folders")
    rows = []
    for kind_folder in kind_folders:
        kind = kind_folder.name
        for image in _images_in(kind_folder):
            mask = None
            if kind != "good":
                mask = _find_mask(folder / "ground_truth" / kind, image.stem + "_mask")
                if mask is None:
                    raise DataError(f"no mask for defect image {image} "
                                    f"(expected {folder / 'ground_truth' / kind / (image.stem + '_mask.png')})")
            rows.append(Row(image, mask, kind, category))
    return rows


def index_mvtec(root, split: str, category: str | None = None) -> list[Row]:
    root = _root(root, "mvtec")
    check_split(split)
    found = sorted(p.name for p in root.iterdir() if (p / "train" / "good").is_dir())
    if not found:
        raise DataError(f"mvtec root {root} has no category folders with train/good")
    return [r for c in _pick(found, category, "mvtec", root) for r in index_mvtec_category(root / c, split, c)]


def load_mvtec(root, split: str, size: int, category: str | None = None) -> ImageSet:
    """MVTec AD (Bergmann et al., CVPR 2019); ``category=None`` loads every category under root."""
    rows = index_mvtec(root, split, category)
    return load_rows(rows, size, sorted({r.category for r in rows}))


def load_folder(root, split: str, size: int, category: str | None = None) -> ImageSet:
    """A user's own images in the MVTec layout (one category, named ``category`` or the folder's name)."""
    root = _root(root, "folder")
    check_split(split)
    if not (root / "train" / "good").is_dir():
        raise DataError(f"folder root {root} has no train/good folder (expected the MVTec layout)")
    name = category or root.resolve().name
    return load_rows(index_mvtec_category(root, split, name), size, [name])


# ---------------------------------------------------------------------------------------------
# BTAD
# ---------------------------------------------------------------------------------------------

def index_btad(root, split: str, category: str | None = None) -> list[Row]:
    root = _root(root, "btad")
    check_split(split)
    found = sorted(p.name for p in root.iterdir() if (p / "train" / "ok").is_dir())
    if not found:
        raise DataError(f"btad root {root} has no category folders with train/ok")
    rows = []
    for c in _pick(found, category, "btad", root):
        if split == "train":
            rows += [Row(p, None, "good", c) for p in _images_in(root / c / "train" / "ok")]
            continue
        rows += [Row(p, None, "good", c) for p in _images_in(root / c / "test" / "ok")]
        for image in _images_in(root / c / "test" / "ko"):
            mask = _find_mask(root / c / "ground_truth" / "ko", image.stem)
            if mask is None:
                raise DataError(f"no mask for defect image {image} (expected "
                                f"{root / c / 'ground_truth' / 'ko' / image.stem}.png or .bmp)")
            rows.append(Row(image, mask, "ko", c))
    return rows


def load_btad(root, split: str, size: int, category: str | None = None) -> ImageSet:
    """BTAD (Mishra et al., 2021): categories '01', '02', '03'; defect kind 'ko'."""
    rows = index_btad(root, split, category)
    return load_rows(rows, size, sorted({r.category for r in rows}))


# ---------------------------------------------------------------------------------------------
# MTSD (magnetic tile surface defects, Huang et al. 2020)
# ---------------------------------------------------------------------------------------------

def _mtsd_images(folder: Path) -> list[Path]:
    """The .jpg images of an MTSD ``Imgs`` folder (the .png files beside them are masks)."""
    if not folder.is_dir():
        raise DataError(f"missing folder {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    if not files:
        raise DataError(f"empty folder {folder}: no .jpg images")
    return files


def _mtsd_index(root: Path, seed: int, test_fraction: float):
    """(train rows, test rows) of MTSD: a seeded share of the normals is held out for testing."""
    if not (root / "MT_Free" / "Imgs").is_dir():
        raise DataError(f"mtsd root {root}: missing MT_Free/Imgs")
    if not 0 < test_fraction < 1:
        raise DataError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    normals = _mtsd_images(root / "MT_Free" / "Imgs")
    perm = np.random.default_rng(seed).permutation(len(normals))
    n_test = int(round(test_fraction * len(normals)))
    test_idx = set(perm[:n_test].tolist())
    train = [Row(p, None, "good", MTSD_CATEGORY) for i, p in enumerate(normals) if i not in test_idx]
    test = [Row(p, None, "good", MTSD_CATEGORY) for i, p in enumerate(normals) if i in test_idx]
    defect_folders = sorted(p for p in root.iterdir() if p.name.startswith("MT_") and p.name != "MT_Free")
    for folder in defect_folders:
        kind = folder.name[len("MT_"):]
        for image in _mtsd_images(folder / "Imgs"):
            mask = image.with_suffix(".png")
            if not mask.is_file():
                raise DataError(f"no mask for defect image {image} (expected {mask})")
            test.append(Row(image, mask, kind, MTSD_CATEGORY))
    return train, test


def mtsd_split(root, seed: int = 0, test_fraction: float = 0.2) -> dict[str, list[str]]:
    """The MTSD split as ``{'train': [...], 'test': [...]}``, paths relative to root (POSIX).

    MTSD has no official split: the normal images (MT_Free) are shuffled with ``seed`` and
    ``test_fraction`` of them go to test; every defective image is in test. Write this to a run
    directory to record exactly which images a model was trained on.
    """
    root = _root(root, "mtsd")
    train, test = _mtsd_index(root, seed, test_fraction)
    return {name: [r.image.relative_to(root).as_posix() for r in rows]
            for name, rows in (("train", train), ("test", test))}


def load_mtsd(root, split: str, size: int, seed: int = 0, test_fraction: float = 0.2) -> ImageSet:
    """MTSD: one category 'magnetic_tile'; kinds are the defect folders without 'MT_' (e.g. 'Blowhole')."""
    root = _root(root, "mtsd")
    check_split(split)
    train, test = _mtsd_index(root, seed, test_fraction)
    return load_rows(train if split == "train" else test, size, [MTSD_CATEGORY])
