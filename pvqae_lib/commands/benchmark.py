"""``benchmark``: training throughput, latency and memory: PVQAE against the VQ-VAE (pixel) and
against PatchCore (feature backbones)."""
from __future__ import annotations

from pathlib import Path

from ..config import get_profile, replace
from ..engine.benchmark import run_benchmark
from ..flags import UsageError
from ..runs.folder import check_writable_file, git_commit, machine
from ..storage import write_json
from .common import check_buildable, device_of

PIXEL_SIZES = [64]             # the pixel sizes when --sizes is not given (compared by identity)


def check_sizes(args) -> None:
    """--sizes and --feature-size: each fits the backbones it applies to (UsageError otherwise)."""
    if len(set(args.backbones)) != len(args.backbones):
        raise UsageError("--backbones must not repeat a name")
    base = get_profile(args.profile).model
    if "pixel" in args.backbones:
        for size in args.sizes:                # a size the models do not take fails here, not in a child
            for name in ("pvqae", "vqvae"):
                check_buildable(replace(base, model=name, image_size=size), f"--sizes {size}")
    elif args.sizes is not PIXEL_SIZES:
        raise UsageError("--sizes sets the pixel models' sizes: add pixel to --backbones, or use --feature-size")
    if args.feature_size is not None:
        if all(b == "pixel" for b in args.backbones):
            raise UsageError("--feature-size applies to a feature backbone in --backbones (e.g. efficientnet-lite0)")
        if args.feature_size % 32:
            raise UsageError(f"--feature-size must be a multiple of 32 (strides 8, 16, 32), got {args.feature_size}")


def command(args) -> int:
    out_json = Path(args.json) if args.json else None
    if out_json:
        check_writable_file(out_json, args.force)
    check_sizes(args)
    device = device_of(args)
    commit = git_commit()                      # the code that runs, even if HEAD moves meanwhile
    result = run_benchmark(args.sizes, args.batch_size, args.steps, device, args.profile, backbones=args.backbones,
                           feature_size=args.feature_size, fit_images=args.fit_images)
    result.update(git_commit=commit, command=args.command_line, machine=machine())
    if out_json:
        out_json.parent.mkdir(parents=True, exist_ok=True)
        write_json(result, out_json)
    return 0
