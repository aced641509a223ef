"""pvqae_lib: the library of the PVQAE book.

Patch-aware Vector Quantized AutoEncoder (Cheng, Qu & Lee, arXiv 2501.09187) for unsupervised
visual defect detection, with the lookup-free quantization and synthetic-anomaly ideas of LFQUIAD
(Lin & Lai). The chapters import it as ``import pvqae_lib as pv``.
"""
__version__ = "0.1.0"

from . import (
    anomaly,
    backbones,
    book,
    budget,
    codebank,
    config,
    data,
    discriminator,
    features,
    fewshot,
    metrics,
    model,
    patchcore,
    paths,
    pipeline,
    prior,
    quantize,
    results,
    routing,
    scorers,
    scoring,
    segmentation,
    ssim,
    train,
    viz,
    widgets,
)
from .config import get_device, get_profile

__all__ = [
    "anomaly", "backbones", "book", "budget", "codebank", "config", "data", "discriminator", "features", "fewshot",
    "metrics",
    "model", "patchcore", "paths", "pipeline", "prior", "quantize", "results", "routing", "scorers",
    "scoring", "segmentation", "ssim", "train", "viz", "widgets", "get_device", "get_profile",
]

