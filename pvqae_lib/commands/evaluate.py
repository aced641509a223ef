"""``evaluate``: score a finished run's test split and write JSON with the metrics and provenance."""
from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

from ..config import profile_from_dict
from ..engine.pipeline import default_prior, evaluate
from ..flags import SCORE_SECTIONS, UsageError, applied, given_settings
from ..runs.folder import check_run, check_writable_file, git_commit, load_split, machine
from ..storage import write_json
from .common import device_of, fraction, open_checked_run, run_lock_if_run


def scoring_of(args, trained, run, run_dir: Path):
    """(prior, ScoreConfig) that ``--prior`` and the ScoreConfig flags (--standardize, --scorer ...) ask of a run."""
    cfg = applied(profile_from_dict(run["profile"]).score, given_settings(args, SCORE_SECTIONS))
    if cfg.scorer == "head":
        if trained.head is None:
            raise UsageError(f"run {run_dir} has no segmentation head: train it with --head")
        if args.prior not in (None, "none"):
            raise UsageError("--scorer head scores the model's own reconstruction: it takes no --prior")
    if cfg.feature_score != "recon" and (trained.model_config.backbone == "pixel"
                                     or trained.model_config.model not in ("pvqae", "vqvae")
                                     or trained.model_config.quantizer != "vq"):
        raise UsageError("--feature-score code needs a VQ codebook model (pvqae or vqvae with --quantizer vq) on a "
                         "feature backbone (an LFQ code is sign(z): its distance is not a memory bank's)")
    bank = trained.model_config.feature_model == "bank"
    if cfg.route != "router" and not bank:
        raise UsageError("--route chooses among the code bank's levels: it applies to a --feature-model bank run")
    prior = ("none" if cfg.scorer == "head" or trained.model_config.model != "pvqae"
             else args.prior or default_prior(trained.model_config))
    if cfg.prior_power != 1 and prior == "none":
        raise UsageError("--prior-power weighs the prior's S_prior: give --prior universal or per-class")
    return prior, cfg


def describe_scoring(prior: str, cfg) -> str:
    """'universal prior', 'segmentation head, standardized', ... for a printout."""
    return (("segmentation head" if cfg.scorer == "head" else f"{prior} prior")
            + (f", S_prior^{cfg.prior_power:g}" if cfg.prior_power != 1 else "")
            + (f", {cfg.route} level" if cfg.route not in ("router", "mean") else ", mean of levels"
               if cfg.route == "mean" else "")
            + (", code distance" if cfg.feature_score == "code" else "")
            + (", standardized" if cfg.standardize else ""))


def command(args) -> int:
    run_dir = Path(args.run)
    check_run(run_dir)
    out_json = Path(args.json)
    check_writable_file(out_json, args.force)
    with run_lock_if_run(out_json.parent, args):   # a JSON written into a run folder: one writer at a time
        t0, commit = time.time(), git_commit()      # the code that runs, even if HEAD moves meanwhile
        device = device_of(args)
        trained, run = open_checked_run(run_dir, device)
        prior, cfg = scoring_of(args, trained, run, run_dir)
        test_set = load_split(run, "test")
        normal_set = load_split(run, "train") if cfg.standardize else None
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
    print(f"{result['model']} ({describe_scoring(prior, cfg)}) on {result['dataset']}: image AUROC "
          f"{fraction(result['image_auroc'])}, pixel AUROC {fraction(result['pixel_auroc'])}, "
          f"PRO {fraction(result['pro'])} "
          f"-> {out_json}")
    return 0
