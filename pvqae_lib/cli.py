"""``python -m pvqae_lib train | evaluate | benchmark | fewshot | predict | demo`` (DESIGN §3).

Bad input ends with one line on stderr and exit code 2, never a traceback; nothing a user made
is overwritten without ``--force``.
"""
from __future__ import annotations

import argparse
import csv
import io
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from .backbones import BACKBONES
from .config import Profile, get_device, get_profile, profile_from_dict, with_backbone
from .data import DataError, check_dataset, load_dataset, mtsd_split
from .quantize import LFQ_BITS, check_lfq_size, lfq_sizes
from .runs import (CONFIG, HISTORY, SPLIT, RunError, RunLock, check_train_out, check_writable_file,
                   command_line, git_commit, is_run_dir, machine, os_reason, read_json, remove_stale_temporaries,
                   write_json, write_text)
from .train import CHECKPOINT, CheckpointError, distributed_context, load_checkpoint

DATASETS = ("synthetic", "mvtec", "btad", "mtsd", "folder")
FEATURE_ONLY_MODELS = ("ae", "patchcore")     # models that exist on a feature backbone only


class UsageError(ValueError):
    """A command-line mistake (one line)."""


def device_of(args) -> torch.device:
    """--device (or the default) as a torch.device; a name torch does not know is a usage error."""
    try:
        return get_device(args.device)
    except RuntimeError as e:
        raise UsageError(f"--device {args.device}: {os_reason(e)}") from None


def check_buildable(model_cfg, flag: str = "--image-size") -> None:
    """Build the pixel model once and run one image through it: a size or width the architecture
    does not accept fails here, before anything is written (feature backbones check their sizes in
    ModelConfig)."""
    from .model import build_model
    if getattr(model_cfg, "backbone", "pixel") != "pixel":
        try:
            build_model(model_cfg)            # a feature model: its sizes were checked by ModelConfig
        except Exception as e:
            raise UsageError(f"the {model_cfg.model} model on {model_cfg.backbone} cannot be built: {os_reason(e)}") from None
        return
    size = model_cfg.image_size
    try:
        with torch.no_grad():
            build_model(model_cfg).eval()(torch.zeros(1, 3, size, size))
    except Exception as e:
        raise UsageError(f"{flag} {size} does not fit the {model_cfg.model} model: {os_reason(e)}") from None


def explicit_options(argv: list[str]) -> dict:
    """{dest: value} of the options the command line gave explicitly (defaults left out)."""
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                for a in sub._actions:
                    a.default = argparse.SUPPRESS
                sub._defaults.clear()
    given = vars(parser.parse_args(argv))
    return {k: v for k, v in given.items() if k != "command"}


RESUME_FREE = ("out", "resume", "force", "device", "quiet")


def check_resume_flags(argv: list[str], run: dict, out: Path) -> None:
    """``train --resume`` continues the saved configuration: every flag given with it must agree with
    it (UsageError naming each one that does not)."""
    prof, data = run["profile"], run["data"]
    special = {"dataset": data.get("dataset"), "category": data.get("category"), "seed": data.get("seed"),
               "profile": prof.get("name"), "num_train": prof.get("num_train"),
               "no_augment": not prof["train"].get("augment", True),
               "restore_anomalies": prof["train"].get("restore_anomalies", False),
               "prior_steps": prof["prior"].get("steps"), "head": prof["head"].get("enabled", False),
               "head_steps": prof["head"].get("steps"), "model": prof["model"].get("model")}
    conflicts = []
    for dest, value in explicit_options(argv).items():
        if dest in RESUME_FREE:
            continue
        flag = "--" + dest.replace("_", "-")
        if dest == "root":
            saved, value = data.get("root"), str(Path(value).resolve())
        elif dest in special:
            saved = special[dest]
        else:
            section = next((prof[k] for k in ("model", "train", "prior", "head") if dest in prof.get(k, {})), None)
            if section is None:
                conflicts.append(f"{flag} cannot change a saved run")
                continue
            saved = section[dest]
        same = (math.isclose(value, saved, rel_tol=1e-12) if isinstance(value, float) and isinstance(saved, (int, float))
                and not isinstance(saved, bool) else value == saved)
        if not same:
            conflicts.append(f"the saved run was made without {flag}" if isinstance(value, bool)
                             else f"{flag} {value} differs from its {saved}")
    if conflicts:
        raise UsageError(f"--resume continues the run saved in {out / CONFIG}: {'; '.join(conflicts)} "
                         f"(drop these flags, or train a new run)")


# ----------------------------------------------------------------------------------------- train

def profile_from_args(args) -> Profile:
    """The named profile with the command line's overrides applied (every one is recorded)."""
    if args.vq_level is not None and args.model not in ("vqvae", "ae"):
        raise UsageError("--vq-level applies to --model vqvae or ae only (PVQAE routes each patch to a level)")
    if args.model in FEATURE_ONLY_MODELS and args.backbone == "pixel":
        raise UsageError(f"--model {args.model} needs a pretrained feature backbone, e.g. --backbone efficientnet-lite0")
    if args.backbone == "pixel" and (args.feature_noise is not None or args.coreset_ratio is not None):
        raise UsageError("--feature-noise and --coreset-ratio apply with a feature --backbone only")
    if args.coreset_ratio is not None and args.model != "patchcore":
        raise UsageError("--coreset-ratio applies to --model patchcore only")
    unused = []
    if args.model == "patchcore":            # nothing is trained: these settings would do nothing
        unused = [flag for flag, value in (("--epochs", args.epochs), ("--batch-size", args.batch_size),
                                           ("--lr", args.lr), ("--lr-schedule", args.lr_schedule),
                                           ("--lambda-max", args.lambda_max), ("--schedule", args.schedule),
                                           ("--tau", args.tau), ("--code-dim", args.code_dim),
                                           ("--codebook-size", args.codebook_size),
                                           ("--feature-noise", args.feature_noise),
                                           ("--prior-steps", args.prior_steps)) if value is not None]
        unused += ["--quantizer"] if args.quantizer != "vq" else []
    if args.backbone != "pixel" and args.width is not None:
        unused.append("--width")
    if unused:
        what = "--model patchcore" if args.model == "patchcore" else f"--backbone {args.backbone}"
        raise UsageError(f"{', '.join(unused)} do nothing with {what}: drop them")
    if args.restore_anomalies and args.backbone != "pixel":
        raise UsageError("--restore-anomalies trains the pixel model only (features are extracted once, unpainted)")
    if args.head and args.backbone != "pixel":
        raise UsageError("--head sits on the pixel model only, not on a feature --backbone")
    p = with_backbone(get_profile(args.profile), args.backbone)
    m, t, pr = p.model, p.train, p.prior
    m = replace(m, model=args.model, quantizer=args.quantizer,
                **{k: v for k, v in {"tau": args.tau, "image_size": args.image_size, "width": args.width,
                                     "codebook_size": args.codebook_size, "vq_level": args.vq_level,
                                     "code_dim": args.code_dim, "coreset_ratio": args.coreset_ratio}.items()
                   if v is not None})
    if args.quantizer == "lfq":   # one code per sign pattern of the code_dim bits (2**16 by default)
        if args.codebook_size is None:
            m = replace(m, **lfq_sizes(args.code_dim or LFQ_BITS))
        check_lfq_size(m.codebook_size, m.code_dim)
    t = replace(t, seed=args.seed, **{k: v for k, v in {"lambda_max": args.lambda_max, "schedule": args.schedule,
                                                         "epochs": args.epochs, "batch_size": args.batch_size,
                                                         "lr": args.lr, "lr_schedule": args.lr_schedule,
                                                         "feature_noise": args.feature_noise}.items()
                                   if v is not None})
    if args.no_augment:
        t = replace(t, augment=False)
    if args.restore_anomalies:
        t = replace(t, restore_anomalies=True)
    if args.prior_steps is not None:
        pr = replace(pr, steps=args.prior_steps)
    if args.head_steps is not None and not args.head:
        raise UsageError("--head-steps applies with --head only")
    h = replace(p.head, enabled=args.head, **({"steps": args.head_steps} if args.head_steps is not None else {}))
    num_train = args.num_train if args.num_train is not None else p.num_train
    return replace(p, model=m, train=t, prior=pr, head=h, num_train=num_train)


def load_split(run: dict, split: str):
    """The train or test ImageSet a run was (or is) made on, from its recorded dataset settings."""
    d = run["data"]
    if d["dataset"] == "synthetic":
        from .data import make_synthetic
        n = d["num_train"] if split == "train" else d["num_test"]
        cats = [d["category"]] if d["category"] else None
        return make_synthetic(split, d["image_size"], categories=cats, num_per_category=n, seed=d["seed"])
    return load_dataset(d["dataset"], d["root"], split, d["image_size"], category=d["category"], seed=d["seed"])


def new_folders(path: Path) -> list[Path]:
    """``path`` and those of its parents that do not exist yet, innermost first."""
    missing = []
    for p in (path, *path.parents):
        if p.exists():
            break
        missing.append(p)
    return missing


def remove_new_folders(created: list[Path]) -> None:
    """Remove the (empty) folders a failed call made, innermost first; stop at one that is not empty."""
    for folder in created:
        try:
            folder.rmdir()
        except OSError:
            break


def check_not_started(out: Path, force: bool) -> None:
    from .pipeline import MODEL_FILE
    if out.exists() and any((out / f).exists() for f in (CHECKPOINT, MODEL_FILE, CONFIG)) and not force:
        raise UsageError(f"run directory {out} already holds a run: --resume to continue it, --force to overwrite")


def cmd_train(args) -> int:
    from .pipeline import MODEL_FILE, fit, save_trained
    out = Path(args.out)
    config_path = out / CONFIG
    check_train_out(out, args.force)
    if args.resume:
        if not (out / CHECKPOINT).is_file():
            raise CheckpointError(f"cannot resume: run directory {out} has no {CHECKPOINT}"
                                  + (" (no epoch finished: train it again with --force)" if config_path.is_file() else ""))
        if (out / MODEL_FILE).is_file() and not args.force:
            raise UsageError(f"run {out} is already finished ({MODEL_FILE} exists); evaluate it, or --force to retrain")
        run = read_json(config_path, "run configuration")
        try:
            profile = profile_from_dict(run["profile"])
            check_resume_flags(args.argv, run, out)
        except (KeyError, TypeError, AttributeError) as e:
            raise RunError(f"run configuration {config_path} is incomplete ({type(e).__name__}: {e})") from None
        load_checkpoint(out / CHECKPOINT, kind=profile.model.model)
    else:
        check_not_started(out, args.force)
        if args.dataset != "synthetic" and not args.root:
            raise UsageError(f"--dataset {args.dataset} needs --root DIR")
        profile = profile_from_args(args)
        check_buildable(profile.model)
        run = {"profile": profile.to_dict(), "command": args.command_line, "git_commit": git_commit(),
               "data": {"dataset": args.dataset, "root": str(Path(args.root).resolve()) if args.root else None,
                        "category": args.category, "image_size": profile.model.image_size, "seed": args.seed,
                        "num_train": profile.num_train, "num_test": profile.num_test}}
    device = device_of(args)
    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))   # torchrun: one GPU per process
        torch.cuda.set_device(device)
    d = run["data"]
    check_dataset(d["dataset"], d["root"], d["category"], d["seed"])   # masks of the test split, before training
    train_set = load_split(run, "train")
    if len(train_set) < profile.train.batch_size:
        raise UsageError(f"only {len(train_set)} training images, fewer than --batch-size {profile.train.batch_size}")
    is_main = int(os.environ.get("RANK", "0")) == 0
    if distributed_context(device)[1] > 1:
        torch.distributed.barrier()   # every rank has checked --out above before rank 0 writes into it
    lock, created, wrote = None, new_folders(out), []
    try:
        if is_main:
            out.mkdir(parents=True, exist_ok=True)
            lock = RunLock(out, args.command_line).acquire()     # one writer per run folder
            remove_stale_temporaries(out)                        # a write cut short by kill -9
            if not args.resume:
                check_not_started(out, args.force)               # again, now that no one else can start it
                for stale in (CHECKPOINT, MODEL_FILE):
                    (out / stale).unlink(missing_ok=True)
                write_json(run, config_path)
                wrote.append(config_path)
            if run["data"]["dataset"] == "mtsd":
                existed = (out / SPLIT).exists()
                write_json(mtsd_split(run["data"]["root"], seed=run["data"]["seed"]), out / SPLIT)
                if not existed:
                    wrote.append(out / SPLIT)
            print(f"profile={profile.name} device={device} model={profile.model.model} images={len(train_set)} "
                  f"({train_set.summary() if hasattr(train_set, 'summary') else ''})", flush=True)
        trained = fit(train_set, profile, out_dir=out, resume=args.resume, device=device, progress=not args.quiet)
        if is_main:
            save_trained(trained, out / MODEL_FILE, extra={"run": run})
            write_json({k: v for k, v in trained.history.items()}, out / HISTORY)
            print(f"trained in {trained.seconds:.1f} s -> {out / MODEL_FILE}", flush=True)
    except BaseException:
        if is_main and not args.resume and not (out / CHECKPOINT).exists():
            # a start that failed before its first epoch leaves nothing behind
            for path in wrote:
                path.unlink(missing_ok=True)
            if lock is not None:
                lock.release()
            remove_new_folders(created)
        raise
    finally:
        if lock is not None:
            lock.release()
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 0


# -------------------------------------------------------------------------------------- evaluate

def check_run(run_dir: Path) -> None:
    """A run directory that holds a finished model (else a one-line error, with a hint to resume)."""
    from .pipeline import MODEL_FILE
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"--run {run_dir} is a file, not a run directory")
    if not run_dir.is_dir():
        raise UsageError(f"run directory {run_dir} does not exist")
    if not (run_dir / MODEL_FILE).is_file():
        hint = f" (training was interrupted: train --resume --out {run_dir})" if (run_dir / CHECKPOINT).is_file() else ""
        raise CheckpointError(f"run directory {run_dir} has no finished model {MODEL_FILE}{hint}")


def open_run(run_dir: Path, device):
    """(the finished model of a run directory, its config.json as a dict)."""
    from .pipeline import MODEL_FILE, load_trained
    return load_trained(run_dir / MODEL_FILE, device), read_json(run_dir / CONFIG, "run configuration")


def scoring_of(args, trained, run, run_dir: Path):
    """(prior, ScoreConfig) that ``--prior``, ``--standardize`` and ``--scorer`` ask of a run."""
    if args.scorer == "head":
        if trained.head is None:
            raise UsageError(f"run {run_dir} has no segmentation head: train it with --head")
        if args.prior not in (None, "none"):
            raise UsageError("--scorer head scores the model's own reconstruction: it takes no --prior")
    feature_score = getattr(args, "feature_score", None) or "recon"
    if feature_score != "recon" and (trained.model_config.backbone == "pixel"
                                     or trained.model_config.model not in ("pvqae", "vqvae")
                                     or trained.model_config.quantizer != "vq"):
        raise UsageError("--feature-score code needs a VQ codebook model (pvqae or vqvae with --quantizer vq) on a "
                         "feature backbone (an LFQ code is sign(z): its distance is not a memory bank's)")
    if args.scorer == "head" or trained.model_config.model != "pvqae":
        prior = "none"
    else:
        prior = args.prior or "universal"
    return prior, replace(profile_from_dict(run["profile"]).score, standardize=args.standardize, scorer=args.scorer,
                          feature_score=feature_score)


def describe_scoring(prior: str, cfg) -> str:
    """'universal prior', 'segmentation head, standardized', ... for a printout."""
    return (("segmentation head" if cfg.scorer == "head" else f"{prior} prior")
            + (", code distance" if cfg.feature_score == "code" else "") + (", standardized" if cfg.standardize else ""))


def run_lock_if_run(folder: Path, args):
    """The lock of ``folder`` when it is a run folder (a JSON written into a run waits for no trainer),
    else nothing."""
    import contextlib
    return RunLock(folder, args.command_line) if is_run_dir(folder) else contextlib.nullcontext()


def cmd_evaluate(args) -> int:
    from .pipeline import evaluate
    run_dir = Path(args.run)
    check_run(run_dir)
    out_json = Path(args.json)
    check_writable_file(out_json, args.force)
    with run_lock_if_run(out_json.parent, args):   # a JSON written into a run folder: one writer at a time
        t0, commit = time.time(), git_commit()      # the code that runs, even if HEAD moves meanwhile
        device = device_of(args)
        trained, run = open_run(run_dir, device)
        prior, cfg = scoring_of(args, trained, run, run_dir)
        test_set = load_split(run, "test")
        normal_set = load_split(run, "train") if args.standardize else None
        result = evaluate(trained, test_set, prior, cfg, device=device, normal_set=normal_set)
        result.update(model=trained.model_config.model, dataset=run["data"]["dataset"], device=str(device),
                      profile=run["profile"]["name"], train_seconds=round(trained.seconds, 1),
                      seconds=round(time.time() - t0, 2), git_commit=commit, command=args.command_line,
                      train_command=run["command"], train_git_commit=run["git_commit"],
                      config={**run["profile"], "score": asdict(cfg)},     # the scoring this JSON measured
                      data=run["data"], machine=machine())
        out_json.parent.mkdir(parents=True, exist_ok=True)
        check_writable_file(out_json, args.force)
        write_json(result, out_json)
    print(f"{result['model']} ({describe_scoring(prior, cfg)}) on {result['dataset']}: image AUROC {fmt(result['image_auroc'])}, "
          f"pixel AUROC {fmt(result['pixel_auroc'])}, PRO {fmt(result['pro'])} -> {out_json}")
    return 0


# --------------------------------------------------------------------------------------- predict

PREDICTIONS = "predictions.csv"
PREDICTIONS_JSON = "predictions.json"


def previous_maps(out: Path) -> set[str]:
    """The heat-map pictures a previous ``predict`` into ``out`` wrote (from its predictions.json, or
    the map column of its predictions.csv): the only files in maps/ a --force rerun may remove."""
    names = []
    try:
        listed = read_json(out / PREDICTIONS_JSON).get("maps")
        if isinstance(listed, list):
            names = listed
    except RunError:
        pass
    if not names and (out / PREDICTIONS).is_file():
        try:
            names = [row.get("map", "") for row in csv.DictReader(io.StringIO((out / PREDICTIONS).read_text()))]
        except (OSError, UnicodeDecodeError, csv.Error):
            names = []
        names = [n[len("maps/"):] for n in names if isinstance(n, str) and n.startswith("maps/")]
    # a name only, inside maps/: never a path that leads elsewhere
    return {n for n in names if isinstance(n, str) and n and Path(n).name == n and n not in (".", "..")}


def cmd_predict(args) -> int:
    """Score a user's own images with a finished run: one row per image in predictions.csv (the
    image score, where it falls among the run's held-out normal images, the decision when a
    threshold is given), a heat-map picture per image in maps/, and predictions.json with what
    produced them."""
    import numpy as np

    from .data import image_files
    from .pipeline import normal_maps, normal_percentile, score, score_files
    run_dir, out = Path(args.run), Path(args.out)
    check_run(run_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder")
    previous = previous_maps(out)
    if ((out / PREDICTIONS).exists() or (out / PREDICTIONS_JSON).exists()) and not args.force:
        raise UsageError(f"{out} already holds predictions: --force to overwrite them")
    files = image_files(args.images)
    names = [f"{n:04d}_{Path(path).stem}.png" for n, path in enumerate(files)]
    theirs = [n for n in names if (out / "maps" / n).exists() and n not in previous]
    if theirs and not args.force:
        raise UsageError(f"{out / 'maps' / theirs[0]} exists and was not written by predict: "
                         f"--force to overwrite it, or another --out")
    t0, commit = time.time(), git_commit()
    device = device_of(args)
    trained, run = open_run(run_dir, device)
    categories = trained.category_names
    prior, cfg = scoring_of(args, trained, run, run_dir)
    category = args.category or (categories[0] if len(categories) == 1 else None)
    if category is not None:
        trained.check_category(category)
    if category is None and (prior == "per-class" or args.standardize):
        raise UsageError(f"the run was trained on {', '.join(categories)}: --category names the one these images show "
                         f"(needed with --prior per-class and --standardize)")
    reference = normal_maps(trained, load_split(run, "train"), prior, cfg, device) if args.standardize else None

    normal_scores, vmax = None, None       # without calibration each picture is scaled to its own peak
    if not args.no_calibrate:       # the run's held-out normal images of the same category(ies)
        test_set = load_split(run, "test")
        keep = test_set.labels.numpy() == 0
        if category is not None:
            keep &= test_set.categories.numpy() == test_set.category_names.index(category)
        normal_scores = score(trained, test_set.subset(np.flatnonzero(keep).tolist()), prior, cfg, device=device,
                              reference=reference)["image"]
        vmax = float(normal_scores.max())   # red: at least as high as any normal image's peak

    # the pictures go to a fresh .maps.*.partial/ first: an unreadable image half-way leaves no half output behind
    created = new_folders(out)
    out.mkdir(parents=True, exist_ok=True)
    lock = RunLock(out, args.command_line)
    try:
        lock.acquire()
    except BaseException:
        remove_new_folders(created)
        raise
    rows, scores, percentiles = ["image,score,normal_percentile,anomalous,map"], [], []
    partial = None
    try:
        partial = Path(tempfile.mkdtemp(dir=out, prefix=".maps.", suffix=".partial"))
        for images, result in score_files(trained, files, category or categories[0], prior, cfg, reference, device):
            if normal_scores is not None:
                percentiles += normal_percentile(result["image"], normal_scores).tolist()
            for i, path in enumerate(images.paths):
                n = len(scores)
                name = names[n]
                save_heat_picture(images.images[i], result["s"][i], vmax, partial / name)
                scores.append(float(result["image"][i]))
                rows.append(",".join([csv_field(str(files[n])), f"{scores[-1]:.6g}",
                                      f"{percentiles[n]:.1f}" if percentiles else "",
                                      "" if args.threshold is None else str(int(scores[-1] > args.threshold)),
                                      f"maps/{name}"]))
        (out / "maps").mkdir(exist_ok=True)
        for old in previous - set(names):    # a --force rerun's stale pictures: only those it listed
            (out / "maps" / old).unlink(missing_ok=True)
        for picture in partial.iterdir():
            picture.replace(out / "maps" / picture.name)
        partial.rmdir()
        write_text("\n".join(rows) + "\n", out / PREDICTIONS)
        write_json({"images": len(files), "maps": names, "prior": prior, "scorer": cfg.scorer, "category": category,
                "standardized": args.standardize,
                "calibrated_on_normal_test_images": normal_scores is not None, "threshold": args.threshold,
                "heat_map_vmax": vmax, "run": str(run_dir), "model": trained.model_config.model,
                "device": str(device), "seconds": round(time.time() - t0, 2), "git_commit": commit,
                "command": args.command_line, "train_command": run["command"], "machine": machine()},
                   out / PREDICTIONS_JSON)
    except BaseException:
        if partial is not None:
            shutil.rmtree(partial, ignore_errors=True)
        lock.release()
        if created:
            shutil.rmtree(out, ignore_errors=True)       # a folder this call made: all of it is ours
            remove_new_folders(created[1:])
        raise
    finally:
        lock.release()

    print(f"scored {len(files)} images with {run_dir} ({trained.model_config.model}, {describe_scoring(prior, cfg)}) "
          f"in {time.time() - t0:.1f} s -> {out / PREDICTIONS}, heat maps in {out / 'maps'}")
    for n in np.argsort(scores)[::-1][:5]:
        where = f"  above {percentiles[n]:.0f} % of normal test images" if percentiles else ""
        print(f"  {scores[n]:.4g}  {files[n]}{where}")
    return 0


def save_heat_picture(image, heat, vmax: float | None, path: Path) -> None:
    """The image beside its heat map (:func:`pvqae_lib.viz.heat_overlay`; ``vmax`` None: the map's
    own maximum), scaled up by whole pixels to at least 256 px high, as a PNG."""
    import numpy as np
    from PIL import Image

    from .viz import heat_overlay, to_numpy_image
    vmax = float(heat.max()) if vmax is None else vmax
    picture = np.concatenate([np.round(to_numpy_image(image) * 255).astype(np.uint8),
                              heat_overlay(image, heat, vmax)], axis=1)
    scale = max(1, 256 // picture.shape[0])
    Image.fromarray(picture).resize((picture.shape[1] * scale, picture.shape[0] * scale), Image.NEAREST).save(path)


def csv_field(text: str) -> str:
    """A CSV field: quoted when it holds a comma, a quote or a line break."""
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n') else text


def fmt(x) -> str:
    return "n/a" if x is None else f"{x:.4f}"


# ------------------------------------------------------------------------------------- benchmark

PIXEL_SIZES = [64]             # the pixel sizes when --sizes is not given (compared by identity)

def cmd_benchmark(args) -> int:
    from .benchmark import run_benchmark
    out_json = Path(args.json) if args.json else None
    if out_json:
        check_writable_file(out_json, args.force)
    if len(set(args.backbones)) != len(args.backbones):
        raise UsageError("--backbones must not repeat a name")
    device = device_of(args)
    base = get_profile(args.profile).model
    if "pixel" in args.backbones:
        for size in args.sizes:                # a size the models do not take fails here, not in a child
            for name in ("pvqae", "vqvae"):
                check_buildable(replace(base, model=name, image_size=size), "--sizes")
    elif args.sizes is not PIXEL_SIZES:
        raise UsageError("--sizes sets the pixel models' sizes: add pixel to --backbones, or use --feature-size")
    if args.feature_size is not None:
        if all(b == "pixel" for b in args.backbones):
            raise UsageError("--feature-size applies to a feature backbone in --backbones (e.g. efficientnet-lite0)")
        if args.feature_size % 32:
            raise UsageError(f"--feature-size must be a multiple of 32 (strides 8, 16, 32), got {args.feature_size}")
    commit = git_commit()                      # the code that runs, even if HEAD moves meanwhile
    result = run_benchmark(args.sizes, args.batch_size, args.steps, device, args.profile, backbones=args.backbones,
                           feature_size=args.feature_size, fit_images=args.fit_images)
    result.update(git_commit=commit, command=args.command_line, machine=machine())
    if out_json:
        out_json.parent.mkdir(parents=True, exist_ok=True)
        write_json(result, out_json)
    return 0


# --------------------------------------------------------------------------------------- fewshot

def cmd_fewshot(args) -> int:
    """LFQUIAD's few-shot protocol (Chapter 10): run_fewshot for every shot count and seed, one JSON."""
    from dataclasses import asdict
    from .fewshot import FewShotConfig, fewshot_table, format_fewshot_table, run_fewshot
    out_json = Path(args.json)
    check_writable_file(out_json, args.force)
    if args.dataset != "synthetic" and not args.root:
        raise UsageError(f"--dataset {args.dataset} needs --root DIR")
    if args.root and not Path(args.root).is_dir():
        raise UsageError(f"--root {args.root} is not a directory")
    if len(set(args.shots)) != len(args.shots) or len(set(args.seeds)) != len(args.seeds):
        raise UsageError("--shots and --seeds must not repeat a value")
    profile = get_profile(args.profile)
    device = device_of(args)
    cfg = FewShotConfig(head=args.head, prior=args.prior,
                        **{k: v for k, v in {"num_images": args.num_images, "epochs": args.epochs,
                                             "prior_steps": args.prior_steps, "head_steps": args.head_steps,
                                             "size": args.image_size}.items() if v is not None})
    root = str(Path(args.root).resolve()) if args.root else None
    t0, commit = time.time(), git_commit()
    rows = []
    for k in args.shots:
        rows += run_fewshot(args.dataset, k, seeds=tuple(args.seeds), cfg=cfg, root=root, profile=profile,
                            device=device, progress=False)
        if not args.quiet:
            for r in rows[-len(args.seeds) * (2 if args.head else 1):]:
                print(f"k={r['k']} seed={r['seed']} {r['method']:10s} image AUROC {fmt(r['image_auroc'])}, "
                      f"pixel AUROC {fmt(r['pixel_auroc'])}, PRO {fmt(r['pro'])} ({r['seconds']:.0f} s)", flush=True)
    table = fewshot_table(rows)
    result = {"dataset": args.dataset, "root": root, "shots": list(args.shots), "seeds": list(args.seeds),
              "table": table, "rows": rows, "device": str(device), "profile": profile.name,
              "seconds": round(time.time() - t0, 2), "git_commit": commit, "command": args.command_line,
              "machine": machine(), "torch_threads": torch.get_num_threads(),
              "fewshot_config": asdict(cfg), "config": profile.to_dict()}
    out_json.parent.mkdir(parents=True, exist_ok=True)
    write_json(result, out_json)
    print(format_fewshot_table(table))
    print(f"{len(rows)} runs in {result['seconds']:.0f} s -> {out_json}")
    return 0


# ------------------------------------------------------------------------------------------ demo

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
    from .pipeline import MODEL_FILE
    if not (run / MODEL_FILE).is_file() or not (run / CONFIG).is_file():
        return False
    try:
        saved = read_json(run / CONFIG, "run configuration")["command"].split()
    except (RunError, KeyError, TypeError, AttributeError):
        return False
    drop = {"--force", "--quiet"}
    return [w for w in saved if w not in drop] == [w for w in command_line(argv).split() if w not in drop]


def cmd_demo(args) -> int:
    """Train and evaluate PVQAE, the VQ-VAE baseline (and PatchCore, on a feature backbone) through
    the same ``train`` and ``evaluate`` commands a user types, then print the table (with each run's
    seconds) and draw heat maps of a few test images."""
    if args.backbone != "pixel" and args.image_size is not None and args.image_size % 32:
        raise UsageError(f"--image-size must be a multiple of 32 with the {args.backbone} backbone, got {args.image_size}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder")
    runs = out / args.backbone
    common = demo_train_args(args)
    names = demo_models(args.backbone)
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
    rows = []       # (label, evaluate JSON, train seconds or None when reused, evaluate seconds)
    for name in names:
        run = runs / name
        argv = ["train", "--model", name, "--out", str(run), *demo_train_args(args, name)]
        train_s = None
        if args.force or not same_train_command(run, argv):
            t0 = time.perf_counter()
            code = main(argv + ["--force"] + (["--quiet"] if args.quiet else []))
            if code:
                return code
            train_s = time.perf_counter() - t0
        variants = [("", [])] + ([(", standardized", ["--standardize"])] if name == "pvqae" and args.standardize else [])
        for suffix, flags in variants:
            result = runs / f"{name}{suffix.replace(', ', '_')}.json"
            t0 = time.perf_counter()
            code = main(["evaluate", "--run", str(run), *flags, "--json", str(result), "--force"])
            if code:
                return code
            rows.append((DEMO_LABELS[name] + suffix, read_json(result), None if suffix else train_s,
                         time.perf_counter() - t0))
    print(f"\n{'model':24s} {'image AUROC':>12s} {'pixel AUROC':>12s} {'PRO':>8s} {'train s':>8s} {'evaluate s':>11s}"
          f"   (synthetic, {args.backbone}, seed {args.seed}, means over categories)")
    for label, r, train_s, eval_s in rows:
        trained = ("" if train_s is None and label.endswith("standardized")
                   else f"{train_s:.0f}" if train_s is not None else f"{r['train_seconds']:.0f}*")
        print(f"{label:24s} {fmt(r['image_auroc']):>12s} {fmt(r['pixel_auroc']):>12s} {fmt(r['pro']):>8s} "
              f"{trained:>8s} {eval_s:11.0f}")
    if any(t is None and not label.endswith("standardized") for label, _, t, _ in rows):
        print("* reused: the run existed with the same train command (--force retrains); its recorded training seconds")
    print("train s: the whole train command (data, feature extraction, training, priors); evaluate s: the whole "
          "evaluate command; PVQAE is scored with its universal prior, 'standardized' against the training images' maps")
    t0 = time.perf_counter()
    figure = demo_figure(out, runs, names)
    print(f"heat maps -> {figure} ({time.perf_counter() - t0:.0f} s)")
    return 0


def demo_figure(out: Path, runs: Path | None = None, names=("pvqae", "vqvae"), per_kind: int = 1) -> Path:
    """Heat maps of each model in ``names`` (runs in ``runs``) on one test image of each category and
    defect kind (every other one), scored as ``evaluate`` scores them by default; each model's column
    shares one scale, 0 to the 99.5th percentile of its maps on these images, drawn as a colorbar."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from .pipeline import MODEL_FILE, load_trained, score
    from .viz import show_heat, show_image
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
        maps[DEMO_LABELS[name]] = score(trained, subset, "universal" if name == "pvqae" else "none")["s"]
    n, cols = len(subset), 1 + len(maps)
    fig, axes = plt.subplots(n, cols, figsize=(2.3 * cols, 2.1 * n + 0.8), squeeze=False, layout="constrained")
    masks = subset.masks[:, 0].numpy()
    for i in range(n):
        show_image(axes[i, 0], subset.images[i], f"{test_set.category_names[int(subset.categories[i])]}/{subset.kinds[i]}",
                   masks[i])
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

# ------------------------------------------------------------------------------------------ main

def finite(text):
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def positive(kind):
    def check(text):
        value = finite(text) if kind is float else kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value
    return check


def non_negative(text):
    value = finite(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad argument prints one line (not the whole usage block) and exits with 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m pvqae_lib", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train PVQAE (with its priors) or the VQ-VAE baseline")
    t.add_argument("--dataset", choices=DATASETS, default="synthetic")
    t.add_argument("--root", help="dataset folder (not needed for synthetic)")
    t.add_argument("--category", help="one category only (default: all)")
    t.add_argument("--profile", choices=("quick", "full"), default=None, help="default: full with CUDA, else quick")
    t.add_argument("--out", required=True, help="run directory (checkpoints, model, config)")
    t.add_argument("--resume", action="store_true", help="continue an interrupted run from its last epoch")
    t.add_argument("--force", action="store_true", help="overwrite an existing run")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--lambda-max", type=non_negative, help="terminal budget weight λmax (paper: 1.25)")
    t.add_argument("--tau", type=positive(float), help="Gumbel-Softmax temperature τ > 0")
    t.add_argument("--schedule", choices=("constant", "cosine", "linear"))
    t.add_argument("--backbone", choices=BACKBONES, default="pixel",
                   help="the encoder: pixel (the paper's, trained from scratch) or a frozen pretrained pyramid "
                        "(efficientnet-lite0 offline; wide-resnet50 downloads its weights)")
    t.add_argument("--model", choices=("pvqae", "vqvae") + FEATURE_ONLY_MODELS, default="pvqae",
                   help="ae (no quantization) and patchcore (memory bank) need a feature --backbone")
    t.add_argument("--quantizer", choices=("vq", "lfq"), default="vq")
    t.add_argument("--vq-level", type=int, choices=(0, 1, 2),
                   help="--model vqvae: the one level it quantizes, 0 coarsest .. 2 finest (default 2)")
    t.add_argument("--epochs", type=positive(int))
    t.add_argument("--batch-size", type=positive(int))
    t.add_argument("--lr", type=positive(float))
    t.add_argument("--lr-schedule", choices=("constant", "cosine"), help="learning rate over training (default cosine)")
    t.add_argument("--no-augment", action="store_true", help="train without random flips and colour jitter")
    t.add_argument("--restore-anomalies", action="store_true",
                   help="LFQUIAD/DRAEM: train on inputs with synthetic anomalies to rebuild the normal image")
    t.add_argument("--image-size", type=positive(int))
    t.add_argument("--width", type=positive(int))
    t.add_argument("--codebook-size", type=positive(int))
    t.add_argument("--code-dim", type=positive(int), help="channels of a code")
    t.add_argument("--feature-noise", type=non_negative,
                   help="feature backbone: Gaussian noise on the standardized input features while training")
    t.add_argument("--coreset-ratio", type=positive(float), help="patchcore: share of training patches kept")
    t.add_argument("--num-train", type=positive(int), help="synthetic: normal training images per category")
    t.add_argument("--prior-steps", type=positive(int))
    t.add_argument("--head", action="store_true",
                   help="then train LFQUIAD's segmentation head on synthetic anomalies (evaluate --scorer head)")
    t.add_argument("--head-steps", type=positive(int), help="--head: its training steps")
    t.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when present)")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="score a trained run's test split and write JSON")
    e.add_argument("--run", required=True)
    e.add_argument("--prior", choices=("none", "universal", "per-class"), help="default: universal")
    e.add_argument("--standardize", action="store_true",
                   help="score each pixel against the training images' maps at its position (a book choice, chapter 7)")
    e.add_argument("--feature-score", choices=("recon", "code"),
                   help="feature backbone: S_recon from the feature reconstruction error (default) or from each "
                        "code vector's distance to its codebook entry")
    e.add_argument("--scorer", choices=("pvqae", "head"), default="pvqae",
                   help="pvqae: S = S_prior x S_recon (the paper); head: LFQUIAD's segmentation head (train --head)")
    e.add_argument("--json", required=True)
    e.add_argument("--force", action="store_true", help="overwrite an existing JSON file")
    e.add_argument("--device")
    e.set_defaults(func=cmd_evaluate)

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
    b.add_argument("--profile", choices=("quick", "full"), default="quick")
    b.add_argument("--json")
    b.add_argument("--force", action="store_true")
    b.add_argument("--device")
    b.set_defaults(func=cmd_benchmark)

    f = sub.add_parser("fewshot", help="LFQUIAD's few-shot protocol: k shots per category, several seeds, one JSON")
    f.add_argument("--dataset", choices=DATASETS, default="synthetic")
    f.add_argument("--root", help="dataset folder (not needed for synthetic)")
    f.add_argument("--shots", type=positive(int), nargs="+", default=[1, 2, 4], help="k normal images per category")
    f.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one draw of the shots per seed")
    f.add_argument("--head", action="store_true", help="also train and evaluate the segmentation head")
    f.add_argument("--prior", choices=("none", "universal"), default="universal")
    f.add_argument("--profile", choices=("quick", "full"), default=None, help="default: full with CUDA, else quick")
    f.add_argument("--num-images", type=positive(int), help="the shots are repeated up to this many images")
    f.add_argument("--epochs", type=positive(int))
    f.add_argument("--prior-steps", type=positive(int))
    f.add_argument("--head-steps", type=positive(int))
    f.add_argument("--image-size", type=positive(int))
    f.add_argument("--json", required=True)
    f.add_argument("--force", action="store_true", help="overwrite an existing JSON file")
    f.add_argument("--device")
    f.add_argument("--quiet", action="store_true", help="no per-run lines")
    f.set_defaults(func=cmd_fewshot)

    pr = sub.add_parser("predict", help="score your own images with a finished run: scores, heat maps")
    pr.add_argument("--run", required=True, help="a run directory made by train")
    pr.add_argument("--images", required=True, nargs="+", help="image files and/or folders of images")
    pr.add_argument("--out", required=True, help="folder for predictions.csv, predictions.json and maps/")
    pr.add_argument("--prior", choices=("none", "universal", "per-class"), help="default: universal")
    pr.add_argument("--category", help="the category the images show (needed when the run has several and "
                                       "--prior per-class or --standardize is used)")
    pr.add_argument("--standardize", action="store_true",
                    help="standardize each pixel against the run's normal training images (as evaluate)")
    pr.add_argument("--scorer", choices=("pvqae", "head"), default="pvqae", help="as evaluate --scorer")
    pr.add_argument("--feature-score", choices=("recon", "code"), help="as evaluate --feature-score")
    pr.add_argument("--threshold", type=finite, help="flag images whose score is above this value")
    pr.add_argument("--no-calibrate", action="store_true",
                    help="do not score the run's held-out normal images (no percentile column)")
    pr.add_argument("--force", action="store_true", help="overwrite existing predictions")
    pr.add_argument("--device")
    pr.set_defaults(func=cmd_predict)

    d = sub.add_parser("demo", help="train + evaluate PVQAE, the VQ-VAE and PatchCore on synthetic data; table and heat maps")
    d.add_argument("--backbone", choices=BACKBONES, default="efficientnet-lite0",
                   help="a frozen feature pyramid (PVQAE, VQ-VAE and PatchCore on it; default efficientnet-lite0) "
                        "or pixel (the paper's encoder: PVQAE and VQ-VAE)")
    d.add_argument("--out", default="runs/demo")
    d.add_argument("--profile", choices=("quick", "full"), default="quick")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--image-size", type=positive(int), help="train and score at this size (feature backbone: "
                                                             "a multiple of 32)")
    d.add_argument("--epochs", type=positive(int), help="training epochs of PVQAE and the VQ-VAE")
    d.add_argument("--num-train", type=positive(int), help="normal training images per category")
    d.add_argument("--prior-steps", type=positive(int), help="PVQAE's prior: training steps")
    d.add_argument("--no-standardize", dest="standardize", action="store_false",
                   help="skip the PVQAE row scored with --standardize")
    d.add_argument("--force", action="store_true", help="retrain even if the runs exist")
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(func=cmd_demo)
    return parser


def one_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def describe_os_error(e: OSError) -> str:
    """'cannot use PATH: No space left on device' (both paths for a rename), or the message itself."""
    if e.filename is None:
        return one_line(e)
    where = str(e.filename) + (f" -> {e.filename2}" if e.filename2 else "")
    return f"cannot use {where}: {e.strerror or one_line(e)}"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    args = build_parser().parse_args(argv)
    args.command_line, args.argv = command_line(argv), argv
    if getattr(args, "quantizer", None) == "lfq":
        from .quantize import LFQ_AVAILABLE
        if not LFQ_AVAILABLE:
            print("error: --quantizer lfq is not available yet (chapter 9); use --quantizer vq", file=sys.stderr)
            return 2
    try:
        return args.func(args)
    except (DataError, CheckpointError, UsageError, RunError, ValueError) as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    except OSError as e:           # exists, is a folder, no space left, read-only ...: one line naming the path
        print(f"error: {describe_os_error(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        resume = ""
        if args.command == "train":
            resume = ("; the last finished epoch is saved, continue with --resume" if (Path(args.out) / CHECKPOINT).is_file()
                      else " before the first epoch finished: nothing was kept to --resume")
        print(f"interrupted{resume}", file=sys.stderr)
        return 130
