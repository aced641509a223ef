"""The one container every dataset in the book is loaded into, and the error for bad user data.

Why a plain container: synthetic data, MVTec AD, BTAD, MTSD and a user's own folder all end up as
the same five tensors/lists, so the models, the scores and the metrics never need to know where an
image came from. Everything is kept in memory (the book's datasets are small at 64-256 px).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch


class DataError(ValueError):
    """Bad user data or parameters. The message is one line naming the file, folder or parameter."""


@dataclass
class ImageSet(torch.utils.data.Dataset):
    """N images with their defect masks and labels, usable directly as a torch ``Dataset``.

    ``dataset[i]`` returns ``(image, mask, label, category)``; the per-image strings (``kinds``,
    ``paths``) stay on the container because a ``DataLoader`` cannot batch strings usefully.
    """

    images: torch.Tensor  # (N, 3, H, W) float32 in [0, 1]
    masks: torch.Tensor  # (N, 1, H, W) float32 in {0, 1}; all zero for normal images
    labels: torch.Tensor  # (N,) long, 0 normal, 1 defective
    categories: torch.Tensor  # (N,) long, index into category_names
    kinds: list[str]  # per image: 'good' or the defect kind, e.g. 'scratch', 'Blowhole'
    paths: list[str]  # per image: source file, or 'synthetic/<category>/<kind>/<i>'
    category_names: list[str]

    def __post_init__(self):
        N = len(self.images)
        if self.images.ndim != 4 or self.images.shape[1] != 3:
            raise ValueError(f"images must be (N, 3, H, W), got {tuple(self.images.shape)}")
        if self.masks.shape != (N, 1, *self.images.shape[2:]):
            raise ValueError(f"masks must be {(N, 1, *self.images.shape[2:])}, got {tuple(self.masks.shape)}")
        for name in ("labels", "categories", "kinds", "paths"):
            if len(getattr(self, name)) != N:
                raise ValueError(f"{name} has {len(getattr(self, name))} entries for {N} images")

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], self.masks[i], self.labels[i], self.categories[i]

    def subset(self, index) -> ImageSet:
        """A new ImageSet with the images at ``index`` (a list or 1-D tensor of ints), in that order."""
        index = torch.as_tensor(index, dtype=torch.long).reshape(-1)
        rows = index.tolist()
        return ImageSet(
            images=self.images[index],
            masks=self.masks[index],
            labels=self.labels[index],
            categories=self.categories[index],
            kinds=[self.kinds[i] for i in rows],
            paths=[self.paths[i] for i in rows],
            category_names=list(self.category_names),
        )

    def of_category(self, name: str) -> ImageSet:
        """The images of one category (by name), e.g. for per-category evaluation."""
        if name not in self.category_names:
            raise DataError(f"unknown category {name!r}; known: {', '.join(self.category_names)}")
        c = self.category_names.index(name)
        return self.subset(torch.nonzero(self.categories == c).flatten())

    @property
    def size(self) -> int:
        """Side length in pixels (images are square)."""
        return self.images.shape[-1]

    def summary(self) -> str:
        """Counts per category and kind, e.g. ``'tile: good 40, crack 20 | weave: ...'``."""
        counts = Counter((self.category_names[c], k) for c, k in zip(self.categories.tolist(), self.kinds))
        lines = [f"{len(self)} images, {self.size}x{self.size} px, {int(self.labels.sum())} defective"]
        for name in self.category_names:
            kinds = sorted({k for (cn, k) in counts if cn == name}, key=lambda k: (k != "good", k))
            parts = [f"{k} {counts[(name, k)]}" for k in kinds]
            lines.append(f"  {name}: " + (", ".join(parts) if parts else "(none)"))
        return "\n".join(lines)

    def __repr__(self) -> str:  # the dataclass default would print every tensor
        return f"ImageSet({len(self)} images, {self.size}px, categories={self.category_names})"


def concat(sets: list[ImageSet]) -> ImageSet:
    """Join ImageSets of the same image size; category indices are remapped to the joint name list."""
    names: list[str] = []
    for s in sets:
        names += [n for n in s.category_names if n not in names]
    remapped = [torch.tensor([names.index(s.category_names[c]) for c in s.categories.tolist()], dtype=torch.long)
                for s in sets]
    return ImageSet(
        images=torch.cat([s.images for s in sets]),
        masks=torch.cat([s.masks for s in sets]),
        labels=torch.cat([s.labels for s in sets]),
        categories=torch.cat(remapped) if remapped else torch.zeros(0, dtype=torch.long),
        kinds=[k for s in sets for k in s.kinds],
        paths=[p for s in sets for p in s.paths],
        category_names=names,
    )


def check_split(split: str) -> str:
    """Raise a DataError unless ``split`` is 'train' or 'test'."""
    if split not in ("train", "test"):
        raise DataError(f"split must be 'train' or 'test', got {split!r}")
    return split
