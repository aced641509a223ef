"""``train``: a run folder with its configuration, checkpoints every epoch, the finished model and
its history; ``--resume`` continues the saved configuration."""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict
from pathlib import Path

import torch

from ..config import Profile, get_profile, lfq_implied, profile_from_dict, replace, with_backbone
from ..data import check_dataset, mtsd_split, read_train_list
from ..engine.batches import data_fingerprint
from ..engine.pipeline import fit, save_trained
from ..engine.train import CheckpointError, distributed_context, load_checkpoint
from ..flags import UsageError, apply_settings, config_settings, given_settings, show
from ..runs.folder import (
    CHECKPOINT,
    CONFIG,
    HISTORY,
    MODEL_FILE,
    SPLIT,
    RunError,
    RunLock,
    check_not_started,
    check_outside_dataset,
    check_train_out,
    git_commit,
    load_split,
    new_folders,
    read_json,
    remove_new_folders,
    remove_stale_temporaries,
    write_json,
)
from .common import check_buildable, device_of, differing_settings
from .parser import DEFAULT_DATASET

# with --model patchcore nothing is trained: these model settings (and every train and prior one) do nothing
PATCHCORE_IDLE = ("tau", "code_dim", "codebook_size", "quantizer", "beta", "router_hidden", "feature_hidden")


# the code bank's settings, and the decoder's that do nothing on a bank
BANK_ONLY = ("bank_size", "coarse_bank_size", "bank_memory", "bank_samples", "kmeans_iters", "router_objective",
             "painted_images")
DECODER_ONLY = ("code_dim", "codebook_size", "quantizer", "beta", "feature_hidden", "feature_noise", "lr_schedule",
                "batch_size")

# ---------------------------------------------------------------------------------- the profile

def profile_from_args(args) -> Profile:
    """The named profile with the command line's config flags applied (every one is recorded)."""
    given = given_settings(args)
    p = with_backbone(get_profile(args.profile), args.backbone or "pixel")
    by_name = {s.name: v for s, v in given.items() if s.section == "model"}
    implied = {k: v for k, v in lfq_implied(by_name).items() if k not in by_name}     # LFQ: 2**code_dim codes
    if p.model.backbone != "pixel" and by_name.get("model", p.model.model) in ("pvqae", "membank") \
            and "feature_model" not in by_name:
        implied["feature_model"] = "bank"      # the measured best on a feature pyramid (chapter 8b)
    p = apply_settings(replace(p, model=replace(p.model, **implied)), given)
    check_flags_apply(given, p)
    return p


def check_flags_apply(given: dict, p: Profile) -> None:
    """UsageError for a flag that would do nothing with the model and backbone the run trains."""
    m, flags = p.model, {f"{s.section}.{s.name}": s.flag for s in given}
    if "model.vq_level" in flags and m.model not in ("vqvae", "ae", "membank"):
        raise UsageError("--vq-level applies to --model vqvae, ae or membank only (PVQAE routes each patch to a "
                         "level)")
    if m.backbone == "pixel" and ({"train.feature_noise", "model.coreset_ratio"} & set(flags)):
        raise UsageError("--feature-noise and --coreset-ratio apply with a feature --backbone only")
    if "model.coreset_ratio" in flags and m.model != "patchcore":
        raise UsageError("--coreset-ratio applies to --model patchcore only")
    bank_flags = [f for k, f in flags.items() if k.split(".")[1] in BANK_ONLY]
    if bank_flags and m.feature_model != "bank":
        raise UsageError(f"{', '.join(bank_flags)} apply to the code bank (--feature-model bank) only")
    unused = []
    if m.feature_model == "bank":
        unused = [f for k, f in flags.items() if k.split(".")[1] in DECODER_ONLY]
        if m.model == "membank":
            unused += [f for k, f in flags.items() if k.split(".")[0] == "prior"
                       or k.split(".")[1] in ("router_objective", "painted_images", "lambda_max", "schedule", "tau",
                                              "router_hidden", "epochs", "lr")]
    if m.model == "patchcore":
        unused = [f for k, f in flags.items() if k.split(".")[0] in ("train", "prior") and k != "train.seed"
                  or k.split(".")[1] in PATCHCORE_IDLE]
    if m.backbone != "pixel":
        unused += [f for k, f in flags.items() if k in ("model.width", "model.stem_mults", "model.level_mults")]
    if unused:
        what = ("--model patchcore" if m.model == "patchcore" else f"--model {m.model} --feature-model bank"
                if m.feature_model == "bank" else f"--backbone {m.backbone}")
        raise UsageError(f"{', '.join(unused)} do nothing with {what}: drop them")
    if p.train.restore_anomalies and m.backbone != "pixel":
        raise UsageError("--restore-anomalies trains the pixel model only (features are extracted once, unpainted)")
    if p.head.enabled and m.backbone != "pixel":
        raise UsageError("--head sits on the pixel model only, not on a feature --backbone")
    head_flags = [f for k, f in flags.items() if k.startswith("head.") and k != "head.enabled"]
    if head_flags and not p.head.enabled:
        raise UsageError(f"{', '.join(head_flags)} applies with --head only")


# ---------------------------------------------------------------------------------------- resume



DATA_OPTIONS = ("dataset", "root", "category", "train_list", "profile")   # None unless given


def explicit_options(args) -> dict:
    """{dest: value} of the options the command line gave explicitly: the config flags
    (:func:`pvqae_lib.flags.given_settings`) and the data options, all None unless given."""
    given = {s.dest: value for s, value in given_settings(args).items()}
    given.update({d: getattr(args, d) for d in DATA_OPTIONS if getattr(args, d, None) is not None})
    return given


def check_resume_flags(args, run: dict, out: Path) -> None:
    """``train --resume`` continues the saved configuration: every flag given with it must agree with
    it (UsageError naming each one that does not)."""
    prof, data = run["profile"], run["data"]
    settings = {s.dest: s for s in config_settings()}
    conflicts = []
    for dest, value in explicit_options(args).items():
        s = settings.get(dest)
        flag = s.flag if s else "--" + dest.replace("_", "-")
        if dest == "root":
            saved, value = data.get("root"), str(Path(value).resolve())
        elif dest in ("dataset", "category") or dest == "profile":
            saved = data.get(dest) if dest != "profile" else prof.get("name")
        elif s is not None:
            saved = (prof if s.section == "profile" else prof.get(s.section, {})).get(s.name)
            value = s.value(value)
            if isinstance(value, tuple) and saved is not None:
                saved, value = list(saved), list(value)
        else:
            conflicts.append(f"{flag} cannot change a saved run")
            continue
        number = isinstance(value, float) and isinstance(saved, (int, float)) and not isinstance(saved, bool)
        same = math.isclose(value, saved, rel_tol=1e-12) if number else value == saved
        if not same:
            conflicts.append(f"the saved run was made without {flag}" if isinstance(value, bool)
                             else f"{show(s, value) if s else f'{flag} {value}'} differs from its {saved}")
    if conflicts:
        raise UsageError(f"--resume continues the run saved in {out / CONFIG}: {'; '.join(conflicts)} "
                         f"(drop these flags, or train a new run)")


# ----------------------------------------------------------------------------------------- train

def saved_run(args, out: Path) -> tuple[dict, Profile]:
    """(config.json, its profile) of the run ``--resume`` continues, checked against the flags."""
    config_path = out / CONFIG
    if not (out / CHECKPOINT).is_file():
        raise CheckpointError(f"cannot resume: run directory {out} has no {CHECKPOINT}"
                              + (" (no epoch finished: train it again with --force)" if config_path.is_file() else ""))
    if (out / MODEL_FILE).is_file() and not args.force:
        raise UsageError(f"run {out} is already finished ({MODEL_FILE} exists); evaluate it, or --force to retrain")
    run = read_json(config_path, "run configuration")
    try:
        profile = profile_from_dict(run["profile"])
        check_resume_flags(args, run, out)
    except (KeyError, TypeError, AttributeError) as e:
        raise RunError(f"run configuration {config_path} is incomplete ({type(e).__name__}: {e})") from None
    ckpt = load_checkpoint(out / CHECKPOINT, kind=profile.model.model)
    check_checkpoint_is_the_runs(ckpt, profile, out)
    return run, profile


def check_checkpoint_is_the_runs(ckpt: dict, profile: Profile, out: Path) -> None:
    """``--resume``: the checkpoint's model and training settings must be config.json's (a checkpoint
    copied from another run would load weights of another width, or continue another schedule)."""
    saved = {"model": ckpt.get("model_config"), "train": ckpt.get("train_config")}
    recorded = {"model": asdict(profile.model), "train": asdict(profile.train)}
    diff = []
    for section in saved:
        if not isinstance(saved[section], dict):
            raise RunError(f"cannot resume: {out / CHECKPOINT} records no {section} settings")
        diff += [f"{section}.{k} {saved[section][k]!r} vs {recorded[section][k]!r}"
                 for k in differing_settings(saved[section], recorded[section]) if k in saved[section]]
    if diff:
        raise RunError(f"cannot resume: {out / CHECKPOINT} was trained with other settings than {out / CONFIG} "
                       f"({'; '.join(diff[:4])}): it belongs to another run; train again with --force")


def new_run(args, out: Path) -> tuple[dict, Profile]:
    """(config.json, profile) of a new run from the flags, checked before anything is written."""
    check_not_started(out, args.force)
    args.dataset = args.dataset or DEFAULT_DATASET
    if args.dataset != "synthetic" and not args.root:
        raise UsageError(f"--dataset {args.dataset} needs --root DIR")
    profile = profile_from_args(args)
    train_list = None
    if args.train_list is not None:
        if args.dataset != "mtsd":
            raise UsageError(f"--train-list applies to --dataset mtsd (its normals have no fixed split), "
                             f"not {args.dataset}")
        train_list = read_train_list(args.train_list)
    shape = [show(s, v) for s, v in given_settings(args).items()        # the model's size flags given, if any
             if s.section == "model" and isinstance(s.default, (int, tuple))]
    check_buildable(profile.model, ", ".join(shape) or None)
    try:
        root = str(Path(args.root).resolve()) if args.root else None
    except (RuntimeError, OSError) as e:          # a symbolic-link loop
        raise UsageError(f"--root {args.root}: {' '.join(str(e).split())}") from None
    run = {"profile": profile.to_dict(), "command": args.command_line, "git_commit": git_commit(),
           "data": {"dataset": args.dataset, "root": root,
                    "category": args.category, "image_size": profile.model.image_size, "seed": profile.train.seed,
                    "num_train": profile.num_train, "num_test": profile.num_test,
                    **({"train_list": train_list} if train_list is not None else {})}}
    return run, profile


def train_device(args) -> torch.device:
    device = device_of(args)
    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))   # torchrun: one GPU per process
        torch.cuda.set_device(device)
    return device


def training_images(run: dict, profile: Profile):
    """The run's training ImageSet, once its test split's masks are checked (before any training)."""
    d = run["data"]
    check_dataset(d["dataset"], d["root"], d["category"], d["seed"], d.get("train_list"))
    train_set = load_split(run, "train")
    trains_in_batches = profile.model.model != "patchcore" and profile.model.feature_model != "bank"
    if trains_in_batches and len(train_set) < profile.train.batch_size:
        raise UsageError(f"only {len(train_set)} training images, fewer than --batch-size {profile.train.batch_size}: "
                         f"give --batch-size {len(train_set)} or fewer")
    return train_set


def check_same_images(run: dict, train_set, out: Path, resume: bool) -> None:
    """A new run records its training images' fingerprint in config.json; ``--resume`` refuses to go
    on when the images it would now train on are not those (a dataset changed on disk)."""
    now = data_fingerprint(train_set.images)
    if not resume:
        run["data"]["fingerprint"] = now
        return
    saved = run["data"].get("fingerprint")
    if saved is not None and saved != now:
        raise RunError(f"cannot resume {out}: its training images changed since it started (fingerprint {now}, "
                       f"recorded {saved} in {out / CONFIG}); train a new run")


def start_writing(args, out: Path, run: dict, wrote: list) -> None:
    """Under the run's lock: a new run's config.json (and MTSD's split), each added to ``wrote``."""
    remove_stale_temporaries(out)                        # a write cut short by kill -9
    if not args.resume:
        check_not_started(out, args.force)               # again, now that no one else can start it
        for stale in (CHECKPOINT, MODEL_FILE):
            (out / stale).unlink(missing_ok=True)
        write_json(run, out / CONFIG)
        wrote.append(out / CONFIG)
    if run["data"]["dataset"] == "mtsd":
        existed = (out / SPLIT).exists()
        split = mtsd_split(run["data"]["root"], seed=run["data"]["seed"], train_list=run["data"].get("train_list"))
        try:
            same = existed and json.loads((out / SPLIT).read_text()) == split
        except (OSError, ValueError):
            same = False
        if not same:                                     # a resumed run's split is left as it was
            write_json(split, out / SPLIT)
        if not existed:
            wrote.append(out / SPLIT)


def command(args) -> int:
    out = Path(args.out)
    check_train_out(out, args.force)
    check_outside_dataset(out, args.root)
    run, profile = saved_run(args, out) if args.resume else new_run(args, out)
    device = train_device(args)
    train_set = training_images(run, profile)
    check_same_images(run, train_set, out, args.resume)
    is_main = int(os.environ.get("RANK", "0")) == 0
    if distributed_context(device)[1] > 1:
        torch.distributed.barrier()   # every rank has checked --out above before rank 0 writes into it
    lock, created, wrote = None, new_folders(out), []
    try:
        if is_main:
            out.mkdir(parents=True, exist_ok=True)
            lock = RunLock(out, args.command_line).acquire()     # one writer per run folder
            start_writing(args, out, run, wrote)
            print(f"profile={profile.name} device={device} model={profile.model.model} images={len(train_set)} "
                  f"({train_set.summary() if hasattr(train_set, 'summary') else ''})", flush=True)
        held_out = load_split(run, "test") if profile.train.eval_every else None    # --eval-every: a learning curve
        trained = fit(train_set, profile, out_dir=out, resume=args.resume, device=device, progress=not args.quiet,
                      eval_set=held_out)
        if is_main:
            save_trained(trained, out / MODEL_FILE, extra={"run": run})
            write_json({k: v for k, v in trained.history.items()}, out / HISTORY)
            print(f"trained in {trained.seconds:.1f} s -> {out / MODEL_FILE}", flush=True)
    except BaseException:
        if is_main and not args.resume and not (out / CHECKPOINT).exists():
            for path in wrote:          # a start that failed before its first epoch leaves nothing behind
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
