"""``demo``: train and evaluate PVQAE, the VQ-VAE baseline (and PatchCore, on a feature backbone)
through the same ``train`` and ``evaluate`` commands a user types, print the table and draw heat maps."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..book.viz import show_heat, show_image
from ..config import get_profile, with_backbone
from ..engine.pipeline import default_prior, load_trained, score
from ..flags import UsageError
from ..runs.folder import CONFIG, MODEL_FILE, command_line, load_split
from ..storage import StorageError, read_json
from .common import fraction
from .parser import command_of, parse

DEMO_LABELS = {"pvqae": "PVQAE", "vqvae": "VQ-VAE", "patchcore": "PatchCore"}
# Feature backbones: the demo trains at 128 px, not the profile's 224 px: at 224 px one PVQAE epoch alone
# took over two minutes here (2 cores shared with other jobs); at 128 px with the profile's 20 epochs the
# whole demo took about 3 minutes (one torch thread, same machine). None keeps the profile's value.
DEMO_FEATURE_SIZE = 128
DEMO_FEATURE_EPOCHS = None


def demo_models(backbone: str) -> tuple:
    """The models ``demo`` trains on ``backbone``: PatchCore exists on a feature backbone only."""
    return ("pvqae", "vqvae") if backbone == "pixel" else ("pvqae", "vqvae", "patchcore")


def demo_train_args(args, model: str = "pvqae") -> list[str]:
    """The options the demo's ``train --model model`` gets (besides --model, --out, --force, --quiet):
    PatchCore trains nothing (no --epochs, no prior), the VQ-VAE has no prior (no --prior-steps)."""
    feature = args.backbone != "pixel"
    extra = {"--image-size": args.image_size or (DEMO_FEATURE_SIZE if feature else None),
             "--epochs": None if model == "patchcore" else args.epochs or (DEMO_FEATURE_EPOCHS if feature else None),
             "--num-train": args.num_train, "--prior-steps": args.prior_steps if model == "pvqae" else None}
    return (["--dataset", "synthetic", "--profile", args.profile, "--seed", str(args.seed), "--backbone", args.backbone]
            + [str(x) for k, v in extra.items() if v is not None for x in (k, v)])


def same_train_command(run: Path, argv: list[str]) -> bool:
    """Whether the finished run in ``run`` was trained by ``argv`` (--force and --quiet aside): a demo
    rerun reuses it only then, so another --backbone or --epochs never reads a stale model."""
    if not (run / MODEL_FILE).is_file() or not (run / CONFIG).is_file():
        return False
    try:
        saved = read_json(run / CONFIG, "run configuration")["command"].split()
    except (StorageError, KeyError, TypeError, AttributeError):
        return False
    drop = {"--force", "--quiet"}
    return [w for w in saved if w not in drop] == [w for w in command_line(argv).split() if w not in drop]


def announce(args, runs: Path, names: tuple) -> None:
    """The demo's first line: what it trains, on what, at which sizes (and which of them it set itself)."""
    common = demo_train_args(args)
    given = dict(zip(common[::2], common[1::2]))
    profile = with_backbone(get_profile(args.profile), args.backbone)
    size = given.get("--image-size", profile.model.image_size)
    epochs = given.get("--epochs", profile.train.epochs)
    set_by_demo = [f"{what} {value} (the {args.backbone} default is {default})"
                   for what, value, default, ours in (("image size", f"{size} px", f"{profile.model.image_size} px",
                                                       args.image_size is None),
                                                      ("epochs", epochs, profile.train.epochs, args.epochs is None))
                   if str(value).split()[0] != str(default).split()[0] and ours]
    print(f"demo: {', '.join(DEMO_LABELS[n] for n in names)} on the {args.backbone} backbone, synthetic data "
          f"(3 categories, {args.num_train or profile.num_train} training and {profile.num_test} test images each), "
          f"{args.profile} profile, {size} px, {epochs} epochs, seed {args.seed}; runs in {runs}"
          + (f"\n  set by the demo to finish in about 5 minutes on 2 CPU cores: {'; '.join(set_by_demo)}"
             if set_by_demo else ""), flush=True)


def run_command(argv: list[str]) -> int:
    """One command as a user types it, in this process; its errors end the demo with their one line
    (:func:`pvqae_lib.cli.main` reports them)."""
    args = parse(argv)
    return command_of(args.command)(args)


def train_and_evaluate(args, runs: Path, name: str, rows: list) -> int:
    """``train`` (unless the same command made the run already) and ``evaluate`` one model, in-process;
    adds (label, evaluate JSON, train seconds or None when reused, evaluate seconds) to ``rows``."""
    run = runs / name
    argv = ["train", "--model", name, "--out", str(run), *demo_train_args(args, name)]
    train_s = None
    if args.force or not same_train_command(run, argv):
        t0 = time.perf_counter()
        code = run_command(argv + ["--force"] + (["--quiet"] if args.quiet else []))
        if code:
            return code
        train_s = time.perf_counter() - t0
    variants = [("", [])] + ([(", standardized", ["--standardize"])] if name == "pvqae" and args.standardize else [])
    for suffix, flags in variants:
        result = runs / f"{name}{suffix.replace(', ', '_')}.json"
        t0 = time.perf_counter()
        code = run_command(["evaluate", "--run", str(run), *flags, "--json", str(result), "--force"])
        if code:
            return code
        rows.append((DEMO_LABELS[name] + suffix, read_json(result), None if suffix else train_s,
                     time.perf_counter() - t0))
    return 0


def print_table(args, rows: list) -> None:
    print(f"\n{'model':24s} {'image AUROC':>12s} {'pixel AUROC':>12s} {'PRO':>8s} {'train s':>8s} {'evaluate s':>11s}"
          f"   (synthetic, {args.backbone}, seed {args.seed}, means over categories)")
    for label, r, train_s, eval_s in rows:
        trained = ("" if train_s is None and label.endswith("standardized")
                   else f"{train_s:.0f}" if train_s is not None else f"{r['train_seconds']:.0f}*")
        print(f"{label:24s} {fraction(r['image_auroc']):>12s} {fraction(r['pixel_auroc']):>12s} "
              f"{fraction(r['pro']):>8s} "
              f"{trained:>8s} {eval_s:11.0f}")
    if any(t is None and not label.endswith("standardized") for label, _, t, _ in rows):
        print("* reused: the run existed with the same train command (--force retrains); its recorded training seconds")
    print("train s: the whole train command (data, feature extraction, training, priors); evaluate s: the whole "
          "evaluate command; each model is scored as evaluate scores it by default (the pixel PVQAE with its universal "
          "prior, the code bank without: measured, chapter 8b), 'standardized' against the training images' maps")


def command(args) -> int:
    """Train and evaluate PVQAE, the VQ-VAE baseline (and PatchCore, on a feature backbone) through
    the same ``train`` and ``evaluate`` commands a user types, then print the table (with each run's
    seconds) and draw heat maps of a few test images."""
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder")
    runs, names = out / args.backbone, demo_models(args.backbone)
    announce(args, runs, names)
    rows = []
    for name in names:
        code = train_and_evaluate(args, runs, name, rows)
        if code:
            return code
    print_table(args, rows)
    t0 = time.perf_counter()
    figure = demo_figure(out, runs, names)
    print(f"heat maps -> {figure} ({time.perf_counter() - t0:.0f} s)")
    return 0


def demo_figure(out: Path, runs: Path | None = None, names=("pvqae", "vqvae"), per_kind: int = 1) -> Path:
    """Heat maps of each model in ``names`` (runs in ``runs``) on one test image of each category and
    defect kind (every other one), scored as ``evaluate`` scores them by default; each model's column
    shares one scale, 0 to the 99.5th percentile of its maps on these images, drawn as a colorbar."""
    import matplotlib
    matplotlib.use("Agg")                 # before pyplot: a file, never a window (why the import is here)
    import matplotlib.pyplot as plt

    runs = runs or out
    run = read_json(runs / names[0] / CONFIG, "run configuration")
    test_set = load_split(run, "test")
    kinds = np.array(test_set.kinds)
    pick = [int(np.flatnonzero((kinds == k) & (test_set.categories.numpy() == c))[0])
            for c in range(len(test_set.category_names)) for k in ("scratch", "hole", "crack", "stain")
            if ((kinds == k) & (test_set.categories.numpy() == c)).any()][::2]
    subset = test_set.subset(pick)
    maps = {}
    for name in names:
        trained = load_trained(runs / name / MODEL_FILE)
        maps[DEMO_LABELS[name]] = score(trained, subset, default_prior(trained.model_config))["s"]
    n, cols = len(subset), 1 + len(maps)
    fig, axes = plt.subplots(n, cols, figsize=(2.3 * cols, 2.1 * n + 0.8), squeeze=False, layout="constrained")
    masks = subset.masks[:, 0].numpy()
    for i in range(n):
        category = test_set.category_names[int(subset.categories[i])]
        show_image(axes[i, 0], subset.images[i], f"{category}/{subset.kinds[i]}", masks[i])
    for j, (label, m) in enumerate(maps.items(), start=1):
        vmax = max(float(np.percentile(m, 99.5)), 1e-12)
        for i in range(n):
            show_heat(axes[i, j], subset.images[i], m[i], label if i == 0 else None, masks[i], vmax)
        bar = fig.colorbar(plt.cm.ScalarMappable(norm=matplotlib.colors.Normalize(0, vmax), cmap="jet"),
                           ax=list(axes[:, j]), orientation="horizontal", fraction=0.03, pad=0.01, aspect=25)
        bar.ax.tick_params(labelsize=7)
        bar.set_label(f"{label} score", fontsize=7)
    fig.suptitle(f"{run['profile']['model'].get('backbone', 'pixel')} backbone: anomaly maps (white: true defect); "
                 "one scale per model column", fontsize=9)
    path = out / "heatmaps.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
