"""What one training step sees: a batch of inputs, its reconstruction target and the DWT entropy of
its coarse patches (the budget's H), for the one training loop (:mod:`pvqae_lib.engine.train`).

Two kinds of inputs, one interface (``steps``, ``order(epoch, g)``, ``batch(index, g, device)``,
``fingerprint``):

- :class:`ImageBatches`: images, for the pixel models. Each step may augment them and (LFQUIAD's
  restoration) paint synthetic anomalies into the input while the target stays normal, so the
  entropy is measured on the batch itself. The order is a ``DistributedSampler``'s, so every rank of
  a torchrun job sees its own share.
- :class:`PyramidBatches`: a frozen pyramid's cached maps. They are fixed (a feature map is not
  augmented), so the entropy of each training image is computed once; the order is a seeded
  permutation.
"""
from __future__ import annotations

import hashlib

import torch
from torch.utils.data.distributed import DistributedSampler

from ..config import TrainConfig
from ..data import augment
from ..data.anomaly import OBJECT_CATEGORIES, paint_anomalies
from ..nn.budget import patch_entropy
from ..nn.detector import batch_of, num_inputs


def data_fingerprint(tensor: torch.Tensor) -> str:
    """A short content hash of the training data (images, or a pyramid's coarsest maps): what a
    checkpoint records it was trained on, so that ``--resume`` cannot continue on other data."""
    return hashlib.sha256(tensor.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


def image_entropy(images: torch.Tensor, patch: int, batch_size: int = 256) -> torch.Tensor:
    """The DWT entropy of every coarse patch of every image, (N, h, w): the budget's H."""
    return torch.cat([patch_entropy(images[i:i + batch_size], patch) for i in range(0, len(images), batch_size)])


class ImageBatches:
    """Images of an ImageSet, augmented (``cfg.augment``) and, with ``cfg.restore_anomalies``, with
    synthetic anomalies painted into the input (:func:`pvqae_lib.data.anomaly.paint_anomalies`)."""

    def __init__(self, data, cfg: TrainConfig, patch: int, rank: int = 0, world: int = 1):
        self.data, self.cfg, self.patch = data, cfg, patch
        self.sampler = DistributedSampler(range(len(data)), num_replicas=world, rank=rank, shuffle=True,
                                          seed=cfg.seed, drop_last=True)
        self.steps = max(1, len(self.sampler) // cfg.batch_size)
        self.is_object = torch.tensor([data.category_names[c] in OBJECT_CATEGORIES for c in data.categories.tolist()])
        self.fingerprint = data_fingerprint(data.images)

    def order(self, epoch: int, g: torch.Generator) -> torch.Tensor:
        self.sampler.set_epoch(epoch)
        return torch.tensor(list(self.sampler))

    def batch(self, index, g: torch.Generator, device):
        """(input, target, entropy) of the images ``index``, on ``device``."""
        x = augment(self.data.images[index], g) if self.cfg.augment else self.data.images[index]
        x_in = paint_anomalies(x, g, self.is_object[index].tolist())[0] if self.cfg.restore_anomalies else x
        x, x_in = x.to(device, non_blocking=True), x_in.to(device, non_blocking=True)
        return x_in, x, patch_entropy(x_in, self.patch)


class PyramidBatches:
    """A frozen pyramid's maps of the training images (coarsest first), with the DWT entropy of the
    image patch under each coarse patch computed once from ``images``."""

    def __init__(self, levels: list, images: torch.Tensor, cfg: TrainConfig, patch: int):
        self.levels, self.cfg = levels, cfg
        self.entropy = image_entropy(images, patch)
        self.steps = max(1, num_inputs(levels) // cfg.batch_size)
        self.fingerprint = data_fingerprint(levels[0])

    def order(self, epoch: int, g: torch.Generator) -> torch.Tensor:
        return torch.randperm(num_inputs(self.levels), generator=g)

    def batch(self, index, g: torch.Generator, device):
        x = batch_of(self.levels, index, device)
        return x, x, self.entropy[index].to(device)


def training_batches(data, inputs, cfg: TrainConfig, patch: int, rank: int = 0, world: int = 1):
    """The batches of a detector's training ``inputs`` (``model.inputs(data.images)``): the images
    themselves, or a pyramid's maps (a list)."""
    if isinstance(inputs, (list, tuple)):
        return PyramidBatches(inputs, data.images, cfg, patch)
    return ImageBatches(data, cfg, patch, rank, world)
