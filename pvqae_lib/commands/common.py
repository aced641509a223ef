"""What several commands share: the device, a model built once before anything is written, the
lock of a run folder a JSON is written into, a number as a table prints it."""
from __future__ import annotations

import contextlib
import json
from dataclasses import asdict
from pathlib import Path

import torch

from ..config import get_device, profile_from_dict
from ..data import DATASET_NAMES
from ..engine.pipeline import load_trained
from ..flags import UsageError
from ..nn.factory import build_model
from ..runs.folder import CONFIG, MODEL_FILE, RunError, RunLock, is_run_dir
from ..storage import os_reason, read_json


def device_of(args) -> torch.device:
    """--device (or the default) as a torch.device; a name torch does not know is a usage error."""
    try:
        device = get_device(args.device)
    except RuntimeError as e:
        raise UsageError(f"--device {args.device}: {os_reason(e)}") from None
    return check_device(device, f"--device {args.device}" if args.device else "$PVQAE_DEVICE")


def check_device(device: torch.device, what: str) -> torch.device:
    """``device`` if this machine can run the book's models on it: the CPU, a CUDA GPU that exists
    (index included) or Apple's MPS; UsageError naming ``what`` otherwise (before anything is written)."""
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = "has no CUDA build" if torch.version.cuda is None else "finds no GPU"
            raise UsageError(f"{what}: no CUDA GPU here (this torch {why}); use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"{what}: there are {torch.cuda.device_count()} CUDA GPU(s) here (cuda:0 ...)")
        return device
    if device.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise UsageError(f"{what}: Apple's MPS is not available here; use --device cpu")
        return device
    raise UsageError(f"{what}: the book's models run on cpu, cuda or mps, not {device.type}")


def check_buildable(model_cfg, what: str | None = None) -> None:
    """Build the pixel model once and run one image through it: a size or width the architecture
    does not accept fails here, before anything is written (feature backbones check their sizes in
    ModelConfig). ``what``: the flags to blame (default ``--image-size N``)."""
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


MAX_IMAGE_SIZE = 4096        # a recorded image side above this is not one this library wrote


def check_run_config(run: dict, path: Path) -> None:
    """A run's config.json as ``train`` writes it, checked before anything is loaded or scored:
    RunError naming the file and the field otherwise (a hand-edited or damaged file)."""

    def bad(field, why):
        raise RunError(f"run configuration {path}: {field} {why}")

    for key, kind in (("profile", dict), ("data", dict), ("command", str)):
        if not isinstance(run.get(key), kind):
            bad(key, f"is missing or not a {'JSON object' if kind is dict else 'string'}")
    try:
        profile = profile_from_dict(run["profile"])
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        bad("profile", f"is not a valid configuration ({' '.join(str(e).split())[:160]})")
    d = run["data"]
    if d.get("dataset") not in DATASET_NAMES:
        bad("data.dataset", f"must be one of {', '.join(DATASET_NAMES)}, got {d.get('dataset')!r}")
    size = d.get("image_size")
    if not isinstance(size, int) or isinstance(size, bool) or not 8 <= size <= MAX_IMAGE_SIZE:
        bad("data.image_size", f"must be a whole number in [8, {MAX_IMAGE_SIZE}], got {size!r}")
    if size != profile.model.image_size:
        bad("data.image_size", f"{size} differs from the model's image_size {profile.model.image_size}")
    for key in ("seed", "num_train", "num_test"):
        if key in d and (not isinstance(d[key], int) or isinstance(d[key], bool) or d[key] < 0):
            bad(f"data.{key}", f"must be a whole number >= 0, got {d[key]!r}")
    for key in ("root", "category"):
        if d.get(key) is not None and not isinstance(d[key], str):
            bad(f"data.{key}", f"must be a string or null, got {type(d[key]).__name__}")
    if d["dataset"] != "synthetic" and not d.get("root"):
        bad("data.root", f"is needed for the {d['dataset']} dataset")
    listed = d.get("train_list")
    if listed is not None and (not isinstance(listed, list) or not all(isinstance(n, str) for n in listed)):
        bad("data.train_list", "must be a list of file names")


def differing_settings(saved: dict, recorded: dict, keys=None) -> list[str]:
    """The settings of ``keys`` (default: all ``recorded`` holds) that ``recorded`` gives and ``saved``
    does not hold alike, compared as JSON (tuples and lists alike): what tells a model.pt or a
    checkpoint of another run from the run's own (``evaluate`` / ``predict``, ``train --resume``)."""
    return [k for k in (keys or recorded) if k in recorded
            and json.dumps(saved.get(k), default=str) != json.dumps(recorded[k], default=str)]


def check_model_matches(trained, run: dict, run_dir: Path) -> None:
    """The finished model must be the one config.json describes (model, backbone, sizes): a model.pt
    copied from another run is refused, naming both."""
    saved = asdict(trained.model_config)
    recorded = run["profile"]["model"]
    diff = differing_settings(saved, recorded, ("model", "backbone", "quantizer", "image_size", "width", "code_dim",
                                                "codebook_size", "num_levels", "feature_model"))
    if diff:
        both = ", ".join(f"{k} {saved.get(k)!r} in model.pt vs {recorded[k]!r} in config.json" for k in diff)
        raise RunError(f"run {run_dir}: model.pt is not the model its config.json describes ({both}); "
                       f"train the run again")


def open_checked_run(run_dir: Path, device):
    """(the finished model, config.json) of a run, each checked (:func:`check_run_config`,
    :func:`check_model_matches`) before it is used."""
    run = read_json(run_dir / CONFIG, "run configuration")
    check_run_config(run, run_dir / CONFIG)
    trained = load_trained(run_dir / MODEL_FILE, device)
    check_model_matches(trained, run, run_dir)
    return trained, run


def run_lock_if_run(folder: Path, args):
    """The lock of ``folder`` when it is a run folder (a JSON written into a run waits for no trainer),
    else nothing."""
    return RunLock(folder, args.command_line) if is_run_dir(folder) else contextlib.nullcontext()


def fraction(x) -> str:
    """A metric as the commands print it: a fraction with four decimals, 'n/a' when missing."""
    return "n/a" if x is None else f"{x:.4f}"
