"""pvqae_lib: the library of the PVQAE book.

Patch-aware Vector Quantized AutoEncoder (Cheng, Qu & Lee, arXiv 2501.09187) for unsupervised
visual defect detection, with the lookup-free quantization and synthetic-anomaly ideas of LFQUIAD
(Lin & Lai). The chapters import it as ``import pvqae_lib as pv``.

The package is layered; each layer imports only the ones below it (``import-linter`` contracts in
pyproject.toml, checked by tests/test_layers.py):

    commands/, cli, flags   the command line
    book/                   what the chapters share: model cache, glue/check helpers, plots, widgets
    runs/                   a run folder (provenance, locks) and the committed results index
    engine/                 one training loop, one scoring path, the metrics
    data/                   data sets, downloads, synthetic anomalies
    nn/                     the maths: quantizers, router, budget, prior, encoders, detectors
    config, paths, storage  leaves: configurations, where files live, safe reads and atomic writes

For the chapters, every module is also reachable by its short name: ``pv.quantize`` is
``pvqae_lib.nn.quantize``, ``pv.train`` is ``pvqae_lib.engine.train``, ``pv.viz`` is
``pvqae_lib.book.viz``.
"""
__version__ = "0.1.0"

from . import book, config, data, paths
from .book import viz, widgets
from .config import get_device, get_profile
from .data import anomaly
from .engine import fewshot, metrics, pipeline, scorers, scoring, segmentation, train
from .nn import (
    backbones,
    budget,
    codebank,
    detector,
    discriminator,
    factory,
    model,
    patchcore,
    prior,
    quantize,
    routing,
    ssim,
)
from .runs import results

__all__ = [
    "anomaly", "backbones", "book", "budget", "codebank", "config", "data", "detector", "discriminator", "factory",
    "fewshot",
    "metrics", "model", "patchcore", "paths", "pipeline", "prior", "quantize", "results", "routing", "scorers",
    "scoring", "segmentation", "ssim", "train", "viz", "widgets", "get_device", "get_profile",
]


def __getattr__(name):
    """``pv.inpaint`` (the optional diffusion extra, :mod:`pvqae_lib.data.inpaint`) is imported on first
    use: ``import pvqae_lib`` never needs ``diffusers``."""
    if name == "inpaint":
        import importlib
        return importlib.import_module(".data.inpaint", __name__)
    raise AttributeError(f"module 'pvqae_lib' has no attribute {name!r}")
