"""Loaders for the real datasets in their original layouts: MVTec AD, BTAD, MTSD, and a user's folder.

Each loader works in two steps, so that the file logic can be read (and tested) on its own:
1. an *index* function walks the folders and returns ``Row``s (image path, mask path or None, kind,
   category), raising a one-line ``DataError`` when the layout is not the expected one;
2. ``load_rows`` (:mod:`pvqae_lib.data.files`, with everything else about reading the files) decodes
   and resizes them into an ``ImageSet``; ``check_masks`` checks the masks of an index without loading
   the images (``check_dataset`` in load.py uses it so that ``train`` fails before training).

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

from pathlib import Path

import numpy as np

from .files import IMAGE_EXTENSIONS, Row, images_in, load_rows
from .imageset import DataError, ImageSet, check_split

MTSD_CATEGORY = "magnetic_tile"


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
        return [Row(p, None, "good", category) for p in images_in(folder / "train" / "good")]
    test = folder / "test"
    if not test.is_dir():
        raise DataError(f"missing folder {test}")
    kind_folders = sorted(p for p in test.iterdir() if p.is_dir())
    if not kind_folders:
        raise DataError(f"empty folder {test}: no <kind> folders")
    rows = []
    for kind_folder in kind_folders:
        kind = kind_folder.name
        for image in images_in(kind_folder):
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
            rows += [Row(p, None, "good", c) for p in images_in(root / c / "train" / "ok")]
            continue
        rows += [Row(p, None, "good", c) for p in images_in(root / c / "test" / "ok")]
        for image in images_in(root / c / "test" / "ko"):
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


def read_train_list(path) -> list[str]:
    """The file names of a train list (``train --train-list``): one image name per line, with or
    without its extension (DifferNet's ``mtd_train_filenames.txt`` for MTD's published protocol),
    blank lines and lines starting with '#' ignored. One-line DataError naming the file for an
    unreadable, empty or non-text file or a name given twice."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"train list {path} is not UTF-8 text") from None
    except OSError as e:
        raise DataError(f"cannot read train list {path}: {e.strerror or e}") from None
    names = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    if not names:
        raise DataError(f"train list {path} names no image")
    stems = [Path(n).stem for n in names]
    seen = set()
    for n, stem in zip(names, stems):
        if "/" in n or "\\" in n or n in (".", ".."):
            raise DataError(f"train list {path}: {n!r} is not a file name (give names, not paths)")
        if stem in seen:
            raise DataError(f"train list {path} names {n!r} twice")
        seen.add(stem)
    return names


def _mtsd_index(root: Path, seed: int, test_fraction: float, train_list: list[str] | None = None):
    """(train rows, test rows) of MTSD: a seeded share of the normals is held out for testing, or,
    with ``train_list`` (image names), exactly the listed normals are trained on and the others
    tested (a published protocol, or a user's own split)."""
    if not (root / "MT_Free" / "Imgs").is_dir():
        raise DataError(f"mtsd root {root}: missing MT_Free/Imgs")
    if not 0 < test_fraction < 1:
        raise DataError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    normals = _mtsd_images(root / "MT_Free" / "Imgs")
    if train_list is not None:
        by_stem = {p.stem: i for i, p in enumerate(normals)}
        missing = [n for n in train_list if Path(n).stem not in by_stem]
        if missing:
            raise DataError(f"the train list names {len(missing)} image(s) not in {root / 'MT_Free' / 'Imgs'}, "
                            f"e.g. {missing[0]!r}")
        listed = {by_stem[Path(n).stem] for n in train_list}
        if len(listed) == len(normals):
            raise DataError("the train list names every normal image: none would be left for testing")
        test_idx = set(range(len(normals))) - listed
    else:
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


def mtsd_split(root, seed: int = 0, test_fraction: float = 0.2,
               train_list: list[str] | None = None) -> dict[str, list[str]]:
    """The MTSD split as ``{'train': [...], 'test': [...]}``, paths relative to root (POSIX).

    MTSD has no official split: the normal images (MT_Free) are shuffled with ``seed`` and
    ``test_fraction`` of them go to test; every defective image is in test. Write this to a run
    directory to record exactly which images a model was trained on. ``train_list``: see
    :func:`_mtsd_index`.
    """
    root = _root(root, "mtsd")
    train, test = _mtsd_index(root, seed, test_fraction, train_list)
    return {name: [r.image.relative_to(root).as_posix() for r in rows]
            for name, rows in (("train", train), ("test", test))}


def load_mtsd(root, split: str, size: int, seed: int = 0, test_fraction: float = 0.2,
              train_list: list[str] | None = None) -> ImageSet:
    """MTSD: one category 'magnetic_tile'; kinds are the defect folders without 'MT_' (e.g. 'Blowhole').
    ``train_list``: the normal images to train on, by name (the others are test)."""
    root = _root(root, "mtsd")
    check_split(split)
    train, test = _mtsd_index(root, seed, test_fraction, train_list)
    return load_rows(train if split == "train" else test, size, [MTSD_CATEGORY])
