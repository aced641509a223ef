"""Widget callbacks for the book's interactive explorers.

Every explorer is split in two plain functions: a *callback* that takes numbers and arrays and
returns a dict of arrays (unit-tested without a browser), and a *plot* function that draws that
dict with matplotlib. A chapter wires them to ipywidgets with ``interact`` and also calls them for
a few fixed values at build time, so the rendered book shows a static figure without a kernel.

- :mod:`.tau`: the Gumbel-Softmax temperature τ of the routing (Chapter 3);
- :mod:`.budget`: the DWT-entropy cost of a resolution map (Chapter 4);
- ``lam`` and ``allocation`` (Chapter 5 and later) are imported on first use, so this package
  works whether or not they are present.
"""
from __future__ import annotations

import importlib

from . import budget, tau

_OPTIONAL = ("lam", "allocation")


def __getattr__(name: str):
    """Import the optional submodules (``lam``, ``allocation``) lazily, on first attribute access."""
    if name in _OPTIONAL:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise                       # the module exists but one of its imports is missing
            raise AttributeError(f"pvqae_lib.book.widgets has no submodule {name!r} (not written yet)") from None
        globals()[name] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["budget", "tau"]   # the optional ones are reached as attributes
