"""Record what every command makes from tiny models, to compare a refactor's before and after.

Runs the command line as a user types it (``python -m pvqae_lib ...`` in a subprocess, so the
package's inner layout does not matter): ``train`` of every detector on tiny synthetic data (pixel
PVQAE with the segmentation head and the VQ-VAE; on the frozen efficientnet-lite0 pyramid the AE, the decoder
PVQAE, the code bank, PatchCore and the memory bank), ``evaluate`` with each prior, ``predict`` on
a folder of images, ``fewshot``, and ``evaluate`` of a committed MTSD model on the first images of
its test split when MTSD is present. Writes one JSON: every number of every evaluation (seconds,
commits and paths left out), a hash of every trained weight tensor, the predictions' scores and a
hash of the generated pages (results page, README, status).

    python tools/compare_outputs.py --out before.json          # on the old commit
    python tools/compare_outputs.py --out after.json --compare before.json

With ``--compare``, prints each difference (numbers compared to 1e-6 relative) and exits 1 if there
is any. One torch thread: the numbers are then the same run to run on one machine.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--num-train", "8", "--quiet", "--seed", "3"]
LOOP = ["--epochs", "1", "--batch-size", "8"]               # the trained autoencoders' loop
PIXEL = ["--image-size", "32", "--width", "8", "--codebook-size", "16", *LOOP]
LITE0 = ["--backbone", "efficientnet-lite0", "--image-size", "64"]
# name: train flags. Every detector the command line builds, each on its smallest honest setting.
RUNS = {
    "pixel_pvqae_head": [*PIXEL, "--prior-steps", "5", "--head", "--head-steps", "5"],
    "pixel_vqvae": [*PIXEL, "--model", "vqvae"],
    "lite0_ae": [*LITE0, *LOOP, "--model", "ae"],
    "lite0_decoder": [*LITE0, *LOOP, "--prior-steps", "5", "--model", "pvqae", "--feature-model", "decoder"],
    "lite0_bank": [*LITE0, "--prior-steps", "5", "--model", "pvqae", "--feature-model", "bank", "--bank-size", "32",
                   "--painted-images", "8"],
    "lite0_patchcore": [*LITE0, "--model", "patchcore"],
    "lite0_membank": [*LITE0, "--model", "membank", "--bank-memory", "all"],
}
# the other ways a run can be scored (evaluate's options), each once
EXTRA_SCORING = {"pixel_pvqae_head": {"head": ["--scorer", "head"]},
                 "lite0_decoder": {"code": ["--feature-score", "code"]},
                 "lite0_bank": {"mean": ["--route", "mean"], "fine": ["--route", "fine"]}}
DROP = {"seconds", "eval_seconds", "git_commit", "command", "time", "date", "machine", "device", "run", "out",
        "path", "cwd", "python", "torch", "platform", "hostname", "started", "finished", "timestamp"}


def cli(*args, cwd=None) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PVQAE_DEVICE": "cpu", "PVQAE_PROFILE": "quick"}
    out = subprocess.run([sys.executable, "-m", "pvqae_lib", *map(str, args)], cwd=cwd, env=env,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"failed ({out.returncode}): pvqae_lib {' '.join(map(str, args))}\n{out.stderr[-2000:]}")


def provenance(key: str) -> bool:
    """A field that differs run to run by design: timings, commits, commands, paths."""
    return key in DROP or key.endswith(("seconds", "_command", "git_commit"))


def numbers(obj):
    """The JSON without the fields that differ run to run (seconds, commits, paths)."""
    if isinstance(obj, dict):
        return {k: numbers(v) for k, v in sorted(obj.items()) if not provenance(k)}
    if isinstance(obj, list):
        return [numbers(v) for v in obj]
    return obj


def weights(model_file: Path) -> dict:
    """A hash of every tensor in a saved model (its name -> sha256 of its bytes, 12 hex digits)."""
    import torch

    def walk(prefix, obj, out):
        if isinstance(obj, torch.Tensor):
            out[prefix] = hashlib.sha256(obj.detach().contiguous().cpu().numpy().tobytes()).hexdigest()[:12]
        elif isinstance(obj, dict):
            for k, v in obj.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v, out)
        return out

    ckpt = torch.load(model_file, map_location="cpu", weights_only=True)
    return walk("", {"model": ckpt["model"], "priors": ckpt.get("priors"), "head": ckpt.get("head")}, {})


def predictions(folder: Path) -> list:
    with open(folder / "predictions.csv", newline="") as f:
        return [{k: Path(v).name if k == "image" else v for k, v in row.items() if not provenance(k)}
                for row in csv.DictReader(f)]


def record(work: Path, mtsd: bool) -> dict:
    from PIL import Image

    import pvqae_lib as pv

    images = work / "images"
    images.mkdir()
    data = pv.data.make_synthetic("test", 64, ["tile"], 4, seed=5)
    for i, img in enumerate(data.images):
        Image.fromarray((img.permute(1, 2, 0).numpy() * 255).round().astype("uint8")).save(images / f"{i}.png")
    out: dict = {"runs": {}}
    for name, flags in RUNS.items():
        run = work / name
        cli("train", "--out", run, *TINY, *flags)
        entry = {"weights": weights(run / "model.pt")}
        routed = name in ("pixel_pvqae_head", "lite0_decoder", "lite0_bank")
        for prior in ("none", "universal", "per-class") if routed else ("none",):
            cli("evaluate", "--run", run, "--prior", prior, "--json", work / f"{name}_{prior}.json")
            entry[f"evaluate_{prior}"] = numbers(json.loads((work / f"{name}_{prior}.json").read_text()))
        for label, flags in EXTRA_SCORING.get(name, {}).items():
            cli("evaluate", "--run", run, "--prior", "none", *flags, "--json", work / f"{name}_{label}.json")
            entry[f"evaluate_{label}"] = numbers(json.loads((work / f"{name}_{label}.json").read_text()))
        cli("evaluate", "--run", run, "--prior", "none", "--standardize", "--json", work / f"{name}_std.json")
        entry["evaluate_standardized"] = numbers(json.loads((work / f"{name}_std.json").read_text()))
        cli("predict", "--run", run, "--images", images, "--out", work / f"{name}_pred", "--category", "tile",
            "--prior", "none")
        entry["predict"] = predictions(work / f"{name}_pred")
        out["runs"][name] = entry
    cli("fewshot", "--shots", "1", "--seeds", "0", "--num-images", "4", "--epochs", "1", "--prior-steps", "5",
        "--image-size", "32", "--json", work / "fewshot.json", "--quiet")
    out["fewshot"] = numbers(json.loads((work / "fewshot.json").read_text()))
    committed = ROOT / "book" / "_static" / "models" / "mtsd_lite0_pvqae_seed0"
    if mtsd and committed.is_dir():
        cli("evaluate", "--run", committed, "--prior", "none", "--json", work / "committed.json")
        out["committed_mtsd_seed0"] = numbers(json.loads((work / "committed.json").read_text()))
    out["pages"] = {p: hashlib.sha256((ROOT / p).read_bytes()).hexdigest()[:12]
                    for p in ("README.md", "book/results.md", "docs/status.md",
                              "book/_static/results/index.csv") if (ROOT / p).is_file()}
    return out


def normalized(record: dict) -> dict:
    """A recorded JSON without its provenance fields (also one recorded by an older version of this
    script, which kept some): what two runs of the same code must agree on."""
    record = numbers(record)
    for run in record.get("runs", {}).values():
        run["predict"] = [{k: Path(v).name if k == "image" else v for k, v in row.items()}
                          for row in run.get("predict", [])]
    return record


def differences(before, after, where="") -> list[str]:
    if isinstance(before, dict) and isinstance(after, dict):
        out = []
        for k in sorted(set(before) | set(after)):
            if k not in after or k not in before:
                out.append(f"{where}.{k}: only {'before' if k in before else 'after'}")
            else:
                out += differences(before[k], after[k], f"{where}.{k}")
        return out
    if isinstance(before, list) and isinstance(after, list):
        if len(before) != len(after):
            return [f"{where}: {len(before)} items before, {len(after)} after"]
        return [d for i, (b, a) in enumerate(zip(before, after)) for d in differences(b, a, f"{where}[{i}]")]
    if isinstance(before, float) and isinstance(after, float):
        same = math.isclose(before, after, rel_tol=1e-6, abs_tol=1e-9) or (math.isnan(before) and math.isnan(after))
        return [] if same else [f"{where}: {before!r} -> {after!r}"]
    return [] if before == after else [f"{where}: {before!r} -> {after!r}"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the JSON to write")
    parser.add_argument("--compare", type=Path, help="an earlier JSON: print the differences, exit 1 if any")
    parser.add_argument("--no-mtsd", action="store_true", help="skip the committed MTSD model")
    args = parser.parse_args(argv)
    mtsd = not args.no_mtsd and (ROOT.parent / "shared" / "data" / "mtsd").is_dir()
    with tempfile.TemporaryDirectory() as tmp:
        result = record(Path(tmp), mtsd)
    args.out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.out}: {len(result['runs'])} runs")
    if args.compare is None:
        return 0
    diff = differences(normalized(json.loads(args.compare.read_text())), normalized(result))
    for line in diff:
        print(line)
    print(f"{len(diff)} differences from {args.compare}")
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())
