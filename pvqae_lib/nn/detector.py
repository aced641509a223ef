"""The detector contract: what every model of this book offers the engine, so one training loop and
one scoring path serve them all (as anomalib's models return one inference batch).

A :class:`Detector` is an ``nn.Module`` with

- a **backbone component** (:attr:`Detector.backbone`): what turns images into the model's inputs.
  :data:`IDENTITY` for the paper's pixel models (their encoder is part of the network), a
  :class:`FrozenPyramid` (a pretrained network's three stages, frozen, cached on disk) for the feature
  models. The factory (:func:`pvqae_lib.nn.factory.build_model`) sets it; it is not a submodule, so
  its weights are never saved with the model's.
- ``forward(inputs, route=None)``: an output whose ``scores`` (B, R, h, w) are the routing scores on
  the coarse grid (Gumbel-Softmax samples in training mode, one-hot in eval mode); ``route``
  (B, h, w), when given, sends each coarse patch to that level instead (the prior's B̂_norm).
- :meth:`Detector.evidence`: the per-position anomaly evidence of an output, (B, 1, h', w') on any
  grid (the scorer brings it to the image): the reconstruction error for an autoencoder, the
  distance to the nearest normal code or patch for a memory.
- :meth:`Detector.reroute`: an output with another routing (a decoder decodes again; a memory keeps
  the distances it has).
- ``routes`` (it has a Dynamic Routing Module, so a budget prior applies), ``used`` (the levels it
  codes), ``num_levels``, and ``fitted_by``: 'gradient' (the training loop,
  :func:`pvqae_lib.engine.train.train_autoencoder`) or 'memory' (``fit(inputs, seed)`` fills it).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..config import ScoreConfig
from .backbones import extract_features, load_backbone


class Identity:
    """The pixel models' backbone component: the images are the inputs."""

    name = "pixel"

    def __call__(self, images: torch.Tensor, device=None, progress: bool = False) -> torch.Tensor:
        return images


IDENTITY = Identity()


class FrozenPyramid:
    """A frozen pretrained network's three stages as the inputs (coarsest first), each image's maps
    cached on disk (:func:`pvqae_lib.nn.backbones.extract_features`), so an epoch or a second scoring
    pass costs no forward pass through the network."""

    def __init__(self, name: str):
        self.name = name

    def __call__(self, images: torch.Tensor, device=None, progress: bool = False) -> list[torch.Tensor]:
        return extract_features(load_backbone(self.name, device=device), images, progress=progress)


class Detector(nn.Module):
    """The base of every detector (this module's docstring): the defaults of the contract."""

    backbone = IDENTITY            # the factory gives feature models their pyramid
    routes = False                 # has a Dynamic Routing Module
    fitted_by = "gradient"         # or 'memory'
    adversarial = False            # a patch discriminator judges its output (the pixel models)
    budget_values_per_patch = None  # the budget's units (budget_loss); None: the pixel values of a patch
    resized_buffers: tuple = ()    # buffers whose size only a saved file knows (memories)

    def inputs(self, images: torch.Tensor, progress: bool = False):
        """What ``forward`` takes for these images (N, 3, H, W): the images, or their pyramid's maps."""
        return self.backbone(images, device=self.device, progress=progress)

    @property
    def device(self) -> torch.device:
        return next(iter(self.buffers()), next(iter(self.parameters()), torch.empty(0))).device

    def reroute(self, inputs, out, route: torch.Tensor):
        """The output with each coarse patch sent to the level ``route`` (B, h, w) names."""
        return self(inputs, route=route)

    def evidence(self, inputs, out, cfg: ScoreConfig) -> torch.Tensor:
        """The per-position anomaly evidence of ``out``, (B, 1, h', w')."""
        raise NotImplementedError

    def prepare(self, inputs) -> None:
        """What a gradient-trained detector takes from its training inputs before the first step
        (statistics, codebooks started from data); nothing by default."""

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in self.resized_buffers:          # a memory's size is known only from the file
            key = prefix + name
            if key in state_dict and state_dict[key].ndim == 2:
                setattr(self, name, torch.empty_like(state_dict[key], device=self.device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def batch_of(inputs, index, device=None):
    """The rows ``index`` of a detector's inputs on ``device``: images (N, 3, H, W), or a pyramid's
    maps (a list, stored in float16 by the cache) as float32."""
    if isinstance(inputs, (list, tuple)):
        return [f[index].to(device, torch.float32, non_blocking=True) for f in inputs]
    return inputs[index].to(device, non_blocking=True)


def num_inputs(inputs) -> int:
    """How many images ``inputs`` hold."""
    return len(inputs[0]) if isinstance(inputs, (list, tuple)) else len(inputs)
