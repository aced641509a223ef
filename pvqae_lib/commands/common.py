"""What several commands share: the device, a model built once before anything is written, the
lock of a run folder a JSON is written into, a number as a table prints it."""
from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from ..config import get_device
from ..flags import UsageError
from ..runs import RunLock, is_run_dir, os_reason


def device_of(args) -> torch.device:
    """--device (or the default) as a torch.device; a name torch does not know is a usage error."""
    try:
        return get_device(args.device)
    except RuntimeError as e:
        raise UsageError(f"--device {args.device}: {os_reason(e)}") from None


def check_buildable(model_cfg, what: str | None = None) -> None:
    """Build the pixel model once and run one image through it: a size or width the architecture
    does not accept fails here, before anything is written (feature backbones check their sizes in
    ModelConfig). ``what``: the flags to blame (default ``--image-size N``)."""
    from ..model import build_model
    if getattr(model_cfg, "backbone", "pixel") != "pixel":
        try:
            build_model(model_cfg)            # a feature model: its sizes were checked by ModelConfig
        except Exception as e:
            raise UsageError(f"the {model_cfg.model} model on {model_cfg.backbone} cannot be built: "
                             f"{os_reason(e)}") from None
        return
    size = model_cfg.image_size
    try:
        with torch.no_grad():
            build_model(model_cfg).eval()(torch.zeros(1, 3, size, size))
    except Exception as e:
        raise UsageError(f"{what or f'--image-size {size}'} does not fit the {model_cfg.model} model: "
                         f"{os_reason(e)}") from None


def run_lock_if_run(folder: Path, args):
    """The lock of ``folder`` when it is a run folder (a JSON written into a run waits for no trainer),
    else nothing."""
    return RunLock(folder, args.command_line) if is_run_dir(folder) else contextlib.nullcontext()


def fmt(x) -> str:
    return "n/a" if x is None else f"{x:.4f}"
