"""The factory: the one place that turns a ModelConfig into a detector, and the only place where the
backbone decides anything (the pixel encoder inside the model, or a frozen pyramid as its input)."""
from __future__ import annotations

from ..config import PIXEL, ModelConfig
from .backbones import backbone_channels
from .codebank import CodeBankPVQAE
from .detector import IDENTITY, Detector, FrozenPyramid, Identity
from .model import PVQAE, VQVAE, FeatureAutoencoder
from .patchcore import PatchCore, PatchCoreConfig


def backbone_of(cfg: ModelConfig) -> Identity | FrozenPyramid:
    """The backbone component of the detector ``cfg`` names: what turns images into its inputs."""
    return IDENTITY if cfg.backbone == PIXEL else FrozenPyramid(cfg.backbone)


def detector_class(cfg: ModelConfig) -> type[Detector]:
    """The class of the detector ``cfg`` names (what :func:`build_model` builds)."""
    if cfg.backbone == PIXEL:
        return PVQAE if cfg.model == "pvqae" else VQVAE
    if cfg.model == "patchcore":
        return PatchCore
    return CodeBankPVQAE if cfg.feature_model == "bank" else FeatureAutoencoder


def build_model(cfg: ModelConfig) -> Detector:
    """The detector ``cfg`` names. On pixels: ``PVQAE`` or the ``VQVAE`` baseline (their encoder is
    part of them). On a feature backbone (its frozen pyramid is their input): the
    :class:`FeatureAutoencoder` ('pvqae', 'vqvae', 'ae' with ``feature_model='decoder'``), PVQAE's
    codebooks as a memory bank (:class:`CodeBankPVQAE`: 'pvqae' with ``feature_model='bank'``, and
    'membank'), or :class:`PatchCore`."""
    cls = detector_class(cfg)
    if cls in (PVQAE, VQVAE):
        if cfg.image_size % cfg.coarse_stride:
            raise ValueError(f"image_size {cfg.image_size} must be a multiple of the coarse patch {cfg.coarse_stride}")
        return cls(cfg)
    if cls is PatchCore:
        model = PatchCore(PatchCoreConfig(coreset_ratio=cfg.coreset_ratio), num_levels=cfg.num_levels)
    else:
        model = cls(cfg, backbone_channels(cfg.backbone))
    model.backbone = backbone_of(cfg)
    return model
