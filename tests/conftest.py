"""Fixtures and helpers shared by the test modules.

Fixtures (opt in per module with ``pytestmark = pytest.mark.usefixtures(...)``):

* ``one_thread``: torch on one intra-op thread for the module;
* ``cpu_quick``: PVQAE_PROFILE=quick and PVQAE_DEVICE=cpu for one test.

Plain helpers, imported with ``from conftest import ...`` (pytest puts this folder on sys.path, as
tests/ has no ``__init__.py``):

* ``TINY_TRAIN_ARGS``, ``run_cli``, ``assert_usage_error``: the command line in-process;
* ``tiny_model_config``, ``tiny_train_config``, ``tiny_prior_config``, ``tiny_profile``: tiny configs;
* ``tiny_train_set``, ``fit_tiny``: a tiny synthetic training set and a ``Trained`` fitted on it;
* ``load_tool``: a script of tools/ (not a package) as a module.
"""
import importlib.util
import sys
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from pvqae_lib.cli import main
from pvqae_lib.config import ModelConfig, PriorConfig, TrainConfig, quick_profile
from pvqae_lib.data import make_synthetic
from pvqae_lib.engine import pipeline

# ----------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest on one intra-op thread (and do not fight other jobs for cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def cpu_quick(monkeypatch):
    """The quick profile on the CPU, for the command line."""
    monkeypatch.setenv("PVQAE_PROFILE", "quick")
    monkeypatch.setenv("PVQAE_DEVICE", "cpu")


# ---------------------------------------------------------------------------------- command line

# a tiny ``train``: 1 epoch on 8 images per category at 32 px, 5 prior steps
TINY_TRAIN_ARGS = ["--epochs", "1", "--num-train", "8", "--image-size", "32", "--prior-steps", "5",
                   "--batch-size", "8", "--quiet"]


def run_cli(args, capsys):
    """main() in-process: (exit code, stdout, stderr); argparse errors exit through SystemExit."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_usage_error(result, *words):
    """``result`` of run_cli is exit code 2 with one stderr line (no traceback) holding every word; that line."""
    code, _, err = result
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


# ------------------------------------------------------------------------------- tiny configs/models

def tiny_model_config(**kw):
    """A 32 px ModelConfig with small widths and a 16-entry codebook; ``kw`` overrides any field."""
    return ModelConfig(**{**dict(image_size=32, width=8, code_dim=8, codebook_size=16, router_hidden=16), **kw})


def tiny_train_config(**kw):
    """One epoch, batches of 6, the discriminator from the start; ``kw`` overrides any field."""
    return TrainConfig(**{**dict(epochs=1, batch_size=6, disc_start=0.0), **kw})


def tiny_prior_config(**kw):
    """A 16-wide, 2-head prior trained for 5 steps of 8; ``kw`` overrides any field."""
    return PriorConfig(**{**dict(dim=16, heads=2, steps=5, batch_size=8), **kw})


def tiny_profile(model=None, train=None, prior=None):
    """quick_profile() with the given configs, by default tiny_model_config(), tiny_train_config() and
    tiny_prior_config()."""
    return replace(quick_profile(),
                   model=tiny_model_config() if model is None else model,
                   train=tiny_train_config() if train is None else train,
                   prior=tiny_prior_config() if prior is None else prior)


def tiny_train_set(size=32, num_per_category=4):
    """The synthetic training split: 3 categories x ``num_per_category`` images (12 by default)."""
    return make_synthetic("train", size, num_per_category=num_per_category)


def fit_tiny(profile, data=None, seed=None):
    """pipeline.fit(data, profile) without progress bars: a ``Trained``. With ``seed``, torch.manual_seed(seed)
    first; without ``data``, tiny_train_set() at the profile's image size (made after seeding)."""
    if seed is not None:
        torch.manual_seed(seed)
    if data is None:
        data = tiny_train_set(profile.model.image_size)
    return pipeline.fit(data, profile, progress=False)


# ---------------------------------------------------------------------------------------- tools/

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def load_tool(name):
    """tools/<name>.py as a module (under a name that cannot clash with an installed one), registered
    in sys.modules as an import would (a dataclass in the script looks its module up there)."""
    spec = importlib.util.spec_from_file_location(f"_tools_{name}", TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[spec.name]
        raise
    return module


def send_416(handler, size: int) -> None:
    """A test server's 'Range Not Satisfiable' for a file of ``size`` bytes."""
    handler.send_response(416)
    handler.send_header("Content-Range", f"bytes */{size}")
    handler.send_header("Content-Length", "0")
    handler.end_headers()


def answer_range(handler, data: bytes, range_header: str):
    """Answer 'Range: bytes=N-' as a real server does: 416 past the end (returns None), else a 206
    with its Content-Range (headers still open), returning the body to send."""
    start = int(range_header.removeprefix("bytes=").split("-")[0])
    if start >= len(data):
        send_416(handler, len(data))
        return None
    handler.send_response(206)
    handler.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
    return data[start:]


class QuietHandler(BaseHTTPRequestHandler):
    """A test server's request handler that logs nothing."""

    def log_message(self, *args):
        pass


def serve_locally(handler_class) -> tuple:
    """Serve ``handler_class`` on 127.0.0.1 at a free port in a daemon thread: (server, base URL ending in /).
    Stop it with ``server.shutdown(); server.server_close()``."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/"
