"""``fewshot``: LFQUIAD's few-shot protocol (Chapter 10): k shots per category, several seeds, one JSON."""
from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import torch

from ..config import get_profile
from ..engine.fewshot import FewShotConfig, fewshot_table, format_fewshot_table, run_fewshot
from ..flags import UsageError
from ..runs.folder import check_writable_file, git_commit, machine
from ..storage import write_json
from .common import device_of, fraction


def check_args(args) -> None:
    if args.dataset != "synthetic" and not args.root:
        raise UsageError(f"--dataset {args.dataset} needs --root DIR")
    if args.root and not Path(args.root).is_dir():
        raise UsageError(f"--root {args.root} is not a directory")
    if len(set(args.shots)) != len(args.shots) or len(set(args.seeds)) != len(args.seeds):
        raise UsageError("--shots and --seeds must not repeat a value")


def command(args) -> int:
    """run_fewshot for every shot count and seed, one JSON."""
    out_json = Path(args.json)
    check_writable_file(out_json, args.force)
    check_args(args)
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
                print(f"k={r['k']} seed={r['seed']} {r['method']:10s} image AUROC {fraction(r['image_auroc'])}, "
                      f"pixel AUROC {fraction(r['pixel_auroc'])}, PRO {fraction(r['pro'])} "
                      f"({r['seconds']:.0f} s)", flush=True)
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
