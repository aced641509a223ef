"""The command line's grammar: every subcommand's options (``train``'s are the config dataclasses'
fields, :mod:`pvqae_lib.flags`) and which module of :mod:`pvqae_lib.commands` runs each one.
:func:`parse` is what :func:`pvqae_lib.cli.main` and ``demo`` (which runs train and evaluate as a user
types them) both call."""
from __future__ import annotations

import importlib

from ..config import BACKBONES
from ..flags import SCORE_SECTIONS, OneLineParser, add_config_flags, finite, positive, seed_number
from ..runs.folder import command_line
from .benchmark import PIXEL_SIZES

DATASETS = ("synthetic", "mvtec", "btad", "mtsd", "folder")
DEFAULT_DATASET = DATASETS[0]
PROFILES = ("quick", "full")


def add_train(sub) -> None:
    t = sub.add_parser("train", help="train PVQAE (with its priors) or the VQ-VAE baseline")
    t.add_argument("--dataset", choices=DATASETS, help=f"default: {DEFAULT_DATASET} (None until resolved: "
                                                        "--resume tells a given --dataset from the default)")
    t.add_argument("--root", help="dataset folder (not needed for synthetic)")
    t.add_argument("--category", help="one category only (default: all)")
    t.add_argument("--train-list", metavar="FILE",
                   help="mtsd: the normal images to train on, one name per line (e.g. DifferNet's "
                        "mtd_train_filenames.txt); the other normals are test (default: a seeded 80/20 split)")
    t.add_argument("--profile", choices=PROFILES, default=None, help="default: quick (or $PVQAE_PROFILE)")
    t.add_argument("--out", required=True, help="run directory (checkpoints, model, config)")
    t.add_argument("--resume", action="store_true", help="continue an interrupted run from its last epoch")
    t.add_argument("--force", action="store_true", help="overwrite an existing run")
    t.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when present)")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    add_config_flags(t)


def add_scoring(p, prior_help: str = "default: universal (none for a code bank: measured, chapter 8b)") -> None:
    """The scoring options evaluate and predict share: the prior, and ScoreConfig's fields."""
    p.add_argument("--prior", choices=("none", "universal", "per-class"), help=prior_help)
    p.add_argument("--device")
    add_config_flags(p, SCORE_SECTIONS)


def add_evaluate(sub) -> None:
    e = sub.add_parser("evaluate", help="score a trained run's test split and write JSON")
    e.add_argument("--run", required=True)
    e.add_argument("--json", required=True)
    e.add_argument("--force", action="store_true", help="overwrite an existing JSON file")
    add_scoring(e)


def add_predict(sub) -> None:
    pr = sub.add_parser("predict", help="score your own images with a finished run: scores, heat maps")
    pr.add_argument("--run", required=True, help="a run directory made by train")
    pr.add_argument("--images", required=True, nargs="+", help="image files and/or folders of images")
    pr.add_argument("--out", required=True, help="folder for predictions.csv, predictions.json and maps/")
    pr.add_argument("--category", help="the category the images show (needed when the run has several and "
                                       "--prior per-class or --standardize is used)")
    pr.add_argument("--threshold", type=finite, help="flag images whose score is above this value")
    pr.add_argument("--no-calibrate", action="store_true",
                    help="do not score the run's held-out normal images (no percentile column)")
    pr.add_argument("--force", action="store_true", help="overwrite existing predictions")
    add_scoring(pr)


def add_benchmark(sub) -> None:
    b = sub.add_parser("benchmark", help="training throughput, latency and memory: PVQAE vs VQ-VAE (pixel), "
                                         "PVQAE vs PatchCore (feature backbones)")
    b.add_argument("--backbones", nargs="+", choices=BACKBONES, default=["pixel", "efficientnet-lite0"],
                   help="pixel: PVQAE and the VQ-VAE at --sizes; a feature backbone: PVQAE and PatchCore at "
                        "--feature-size, extraction timed apart (default: pixel efficientnet-lite0)")
    b.add_argument("--sizes", type=positive(int), nargs="+", default=PIXEL_SIZES, help="pixel image sizes (default 64)")
    b.add_argument("--feature-size", type=positive(int),
                   help="feature backbones' image size, a multiple of 32 (default: the backbone's, 224)")
    b.add_argument("--fit-images", type=positive(int), default=160,
                   help="PatchCore's coreset is fitted on this many images (default 160: a synthetic category)")
    b.add_argument("--batch-size", type=positive(int), default=8)
    b.add_argument("--steps", type=positive(int), default=5)
    b.add_argument("--profile", choices=PROFILES, default="quick")
    b.add_argument("--json")
    b.add_argument("--force", action="store_true")
    b.add_argument("--device")


def add_fewshot(sub) -> None:
    f = sub.add_parser("fewshot", help="LFQUIAD's few-shot protocol: k shots per category, several seeds, one JSON")
    f.add_argument("--dataset", choices=DATASETS, default="synthetic")
    f.add_argument("--root", help="dataset folder (not needed for synthetic)")
    f.add_argument("--shots", type=positive(int), nargs="+", default=[1, 2, 4], help="k normal images per category")
    f.add_argument("--seeds", type=seed_number, nargs="+", default=[0, 1, 2], help="one draw of the shots per seed")
    f.add_argument("--head", action="store_true", help="also train and evaluate the segmentation head")
    f.add_argument("--prior", choices=("none", "universal"), default="universal")
    f.add_argument("--profile", choices=PROFILES, default=None, help="default: quick (or $PVQAE_PROFILE)")
    f.add_argument("--num-images", type=positive(int), help="the shots are repeated up to this many images")
    f.add_argument("--epochs", type=positive(int))
    f.add_argument("--prior-steps", type=positive(int))
    f.add_argument("--head-steps", type=positive(int))
    f.add_argument("--image-size", type=positive(int))
    f.add_argument("--json", required=True)
    f.add_argument("--force", action="store_true", help="overwrite an existing JSON file")
    f.add_argument("--device")
    f.add_argument("--quiet", action="store_true", help="no per-run lines")


def add_demo(sub) -> None:
    d = sub.add_parser("demo", help="train + evaluate PVQAE, the VQ-VAE and PatchCore on synthetic data; "
                                    "table and heat maps")
    d.add_argument("--backbone", choices=BACKBONES, default="efficientnet-lite0",
                   help="a frozen feature pyramid (PVQAE, VQ-VAE and PatchCore on it; default efficientnet-lite0) "
                        "or pixel (the paper's encoder: PVQAE and VQ-VAE)")
    d.add_argument("--out", default="runs/demo")
    d.add_argument("--profile", choices=PROFILES, default="quick")
    d.add_argument("--seed", type=seed_number, default=0)
    d.add_argument("--image-size", type=positive(int), help="train and score at this size (feature backbone: "
                                                             "a multiple of 32)")
    d.add_argument("--epochs", type=positive(int), help="training epochs of PVQAE and the VQ-VAE")
    d.add_argument("--num-train", type=positive(int), help="normal training images per category")
    d.add_argument("--prior-steps", type=positive(int), help="PVQAE's prior: training steps")
    d.add_argument("--no-standardize", dest="standardize", action="store_false",
                   help="skip the PVQAE row scored with --standardize")
    d.add_argument("--force", action="store_true", help="retrain even if the runs exist")
    d.add_argument("--quiet", action="store_true")


# each command: how its options are added, and the module of pvqae_lib.commands whose command(args) runs it
COMMANDS = {"train": add_train, "evaluate": add_evaluate, "benchmark": add_benchmark, "fewshot": add_fewshot,
            "predict": add_predict, "demo": add_demo}


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog="python -m pvqae_lib", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS.values():
        add(sub)
    return parser


def command_of(name: str):
    """The function that runs command ``name`` (imported on first use: ``--help`` stays quick)."""
    return importlib.import_module(f".{name}", __package__).command


def parse(argv: list[str]):
    """The parsed arguments of ``argv`` (one command and its options), with ``command_line`` (the
    command as a shell would take it, for provenance) and ``argv`` itself."""
    args = build_parser().parse_args(argv)
    args.command_line, args.argv = command_line(argv), argv
    return args
