"""One entry point for every dataset: ``load_dataset(name, root, split, size)`` (used by the CLI)."""
from __future__ import annotations

from .imageset import DataError, ImageSet, check_split
from .real import MTSD_CATEGORY, load_btad, load_folder, load_mtsd, load_mvtec
from .synthetic import make_synthetic

DATASET_NAMES = ("synthetic", "mvtec", "btad", "mtsd", "folder")


def load_dataset(name: str, root, split: str, size: int, category: str | None = None,
                 seed: int = 0) -> ImageSet:
    """Load ``split`` ('train' or 'test') of a dataset at ``size x size`` pixels.

    name: 'synthetic' (root ignored, ``seed`` picks the images), 'mvtec', 'btad', 'mtsd' (``seed``
    picks the normal test images) or 'folder' (your own images in the MVTec layout).
    ``category=None`` means every category the dataset has.
    """
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
        return load_mtsd(root, split, size, seed=seed)
    return load_folder(root, split, size, category)
