"""One entry point for every dataset: ``load_dataset(name, root, split, size)`` (used by the CLI)."""
from __future__ import annotations

from .files import check_masks
from .imageset import DataError, ImageSet, check_split
from .real import (
    MTSD_CATEGORY,
    _mtsd_index,
    _root,
    index_btad,
    index_mvtec,
    index_mvtec_category,
    load_btad,
    load_folder,
    load_mtsd,
    load_mvtec,
)
from .synthetic import make_synthetic

DATASET_NAMES = ("synthetic", "mvtec", "btad", "mtsd", "folder")


def load_dataset(name: str, root, split: str, size: int, category: str | None = None,
                 seed: int = 0, train_list: list[str] | None = None) -> ImageSet:
    """Load ``split`` ('train' or 'test') of a dataset at ``size x size`` pixels.

    name: 'synthetic' (root ignored, ``seed`` picks the images), 'mvtec', 'btad', 'mtsd' (``seed``
    picks the normal test images) or 'folder' (your own images in the MVTec layout).
    ``category=None`` means every category the dataset has. ``train_list`` (mtsd only): the names
    of the normal images to train on, the other normals being test (:func:`read_train_list`).
    """
    if train_list is not None and name != "mtsd":
        raise DataError(f"a train list applies to --dataset mtsd (its normals have no fixed split), not {name}")
    if name not in DATASET_NAMES:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")
    check_split(split)
    if name == "synthetic":
        return make_synthetic(split, size, categories=None if category is None else [category], seed=seed)
    if name == "mvtec":
        return load_mvtec(root, split, size, category)
    if name == "btad":
        return load_btad(root, split, size, category)
    if name == "mtsd":
        if category not in (None, MTSD_CATEGORY):
            raise DataError(f"unknown mtsd category {category!r}; known: {MTSD_CATEGORY}")
        return load_mtsd(root, split, size, seed=seed, train_list=train_list)
    return load_folder(root, split, size, category)


def check_dataset(name: str, root, category: str | None = None, seed: int = 0,
                  train_list: list[str] | None = None) -> int:
    """Check a dataset before training on it: index its TEST split and read every mask at full size.

    ``train`` loads only the train split, which has no masks, so a bad mask would otherwise surface
    only at evaluation, after training. This raises the first problem as a one-line ``DataError``
    naming the file: the layout errors of the loaders (a missing mask, an empty folder, ...), a mask
    whose size differs from its image's, a grey mask (more than two values that do not reach full
    white), a mask with no 0 pixel (see ``files.mask_array``); empty masks of defect images are
    accepted and named in one warning.
    The images are not decoded (only their headers are read for their size). Returns how many masks
    were checked (0 for 'synthetic', whose masks are generated). Arguments as for ``load_dataset``.
    """
    if name not in DATASET_NAMES:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")
    if train_list is not None and name != "mtsd":
        raise DataError(f"a train list applies to --dataset mtsd (its normals have no fixed split), not {name}")
    if name == "synthetic":
        return 0
    if name == "mvtec":
        rows = index_mvtec(root, "test", category)
    elif name == "btad":
        rows = index_btad(root, "test", category)
    elif name == "mtsd":
        if category not in (None, MTSD_CATEGORY):
            raise DataError(f"unknown mtsd category {category!r}; known: {MTSD_CATEGORY}")
        rows = _mtsd_index(_root(root, "mtsd"), seed, 0.2, train_list)[1]
    else:
        folder = _root(root, "folder")
        if not (folder / "train" / "good").is_dir():
            raise DataError(f"folder root {folder} has no train/good folder (expected the MVTec layout)")
        rows = index_mvtec_category(folder, "test", category or folder.resolve().name)
    return check_masks(rows)
