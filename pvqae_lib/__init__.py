"""pvqae_lib: the library of the PVQAE book.

Patch-aware Vector Quantized AutoEncoder (Cheng, Qu & Lee, arXiv 2501.09187) for unsupervised
visual defect detection, with the lookup-free quantization and synthetic-anomaly ideas of LFQUIAD
(Lin & Lai). The chapters import it as ``import pvqae_lib as pv``.
"""
__version__ = "0.1.0"

from . import book, config, data, paths
from .book import viz, widgets
from .config import get_device, get_profile
from .data import anomaly
from .engine import features, fewshot, metrics, pipeline, scorers, scoring, segmentation, train
from .nn import backbones, budget, codebank, discriminator, model, patchcore, prior, quantize, routing, ssim

__all__ = [
    "anomaly", "backbones", "book", "budget", "codebank", "config", "data", "discriminator", "features", "fewshot",
    "metrics",
    "model", "patchcore", "paths", "pipeline", "prior", "quantize", "report", "results", "routing", "scorers",
    "scoring", "segmentation", "ssim", "train", "viz", "widgets", "get_device", "get_profile",
]


def __getattr__(name):
    """``pv.results`` and ``pv.report`` are imported on first use: ``python -m pvqae_lib.runs.results`` then
    runs the module without importing it twice."""
    if name in ("results", "report"):
        import importlib
        return importlib.import_module(f".runs.{name}", __name__)
    raise AttributeError(f"module 'pvqae_lib' has no attribute {name!r}")
