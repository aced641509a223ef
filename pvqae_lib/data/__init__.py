"""Data for the book: the synthetic default, real-dataset loaders, downloads and augmentation.

Everything loads into one container, ``ImageSet`` (images, masks, labels, categories, kinds, paths).
Start with ``make_synthetic('train')`` or ``load_dataset('mtsd', root, 'test', size=128)``.
"""
from .archives import check_archive, extract
from .downloads import DATASETS, download, download_file
from .files import image_files, load_images
from .imageset import DataError, ImageSet, concat
from .load import DATASET_NAMES, check_dataset, load_dataset
from .real import load_btad, load_folder, load_mtsd, load_mvtec, mtsd_split, read_train_list
from .synthetic import CATEGORIES, DEFECT_KINDS, EXTRA_CATEGORIES, make_synthetic, render
from .transforms import augment

__all__ = [
    "DataError", "ImageSet", "concat",
    "make_synthetic", "render", "CATEGORIES", "EXTRA_CATEGORIES", "DEFECT_KINDS",
    "load_dataset", "check_dataset", "DATASET_NAMES", "load_mvtec", "load_btad", "load_mtsd", "load_folder",
    "mtsd_split", "read_train_list",
    "image_files", "load_images",
    "augment",
    "download", "download_file", "extract", "check_archive", "DATASETS",
]
